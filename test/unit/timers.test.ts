// Unit tests for the per-peer timer state machine (src/dataplane/timers.ts): every rule of the kernel's
// timers.c / wireguard-go's timers.go, driven by a FakeClock with exact timing, plus the rekey predicates.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock, seededRandom, type RandomSource } from '../../src/clock.js';
import { REKEY_AFTER_MESSAGES } from '../../src/constants.js';
import { PeerTimers, shouldRekeyOnReceive, shouldRekeyOnSend, type TimerAction } from '../../src/dataplane/timers.js';

/** A random source whose every 4-byte draw is the little-endian value j, so the jitter is exactly j ms. */
function fixedJitter(j: number): RandomSource {
  return (out) => {
    for (let i = 0; i < out.length; i++) out[i] = (j >>> (8 * (i % 4))) & 0xff;
  };
}

function setup(jitter = 0, opts: { persistentKeepalive?: number; timerScale?: number } = {}) {
  const clock = new FakeClock();
  const timers = new PeerTimers(clock, fixedJitter(jitter), opts);
  return { clock, timers, t0: clock.now() };
}

/** Plays the endpoint's part for an initiation: ask, and if allowed "send" it. */
function initiate(timers: PeerTimers, isRetry: boolean): boolean {
  if (!timers.requestInitiation(isRetry)) return false;
  timers.handshakeInitiated();
  return true;
}

const kinds = (a: TimerAction[]) => a.map((x) => x.kind);

test('retransmit fires after REKEY_TIMEOUT + jitter: never before 5000 ms, at most 5333 ms', () => {
  for (const j of [0, 333]) {
    const { clock, timers, t0 } = setup(j);
    assert.equal(initiate(timers, false), true);
    assert.equal(timers.deadline('retransmitHandshake'), t0 + 5000 + j);
    clock.advance(5000 + j - 1);
    assert.deepEqual(timers.poll(), []);
    clock.advance(1);
    assert.deepEqual(timers.poll(), [{ kind: 'retransmit-initiation' }]);
    assert.equal(timers.handshakeAttempts, 1);
    assert.equal(timers.nextDeadline(), undefined, 'only a re-sent initiation re-arms the retransmit timer');
  }
  // With real randomness the jitter is whole ms, uniform over the full [0, 333] range.
  const clock = new FakeClock();
  const timers = new PeerTimers(clock, seededRandom(7));
  const seen = new Set<number>();
  for (let i = 0; i < 20_000; i++) {
    timers.handshakeInitiated();
    const j = timers.deadline('retransmitHandshake')! - clock.now() - 5000;
    assert.ok(Number.isInteger(j) && j >= 0 && j <= 333, `jitter ${j}`);
    seen.add(j);
  }
  assert.equal(seen.size, 334);
});

test('jitter draws come from a pool: one call into the random source per 64 jittered arms, whole 4-byte draws', () => {
  let calls = 0;
  const sizes = new Set<number>();
  const counting: RandomSource = (out) => {
    calls++;
    sizes.add(out.length);
    fixedJitter(200)(out);
  };
  const clock = new FakeClock();
  const timers = new PeerTimers(clock, counting);
  for (let i = 0; i < 640; i++) {
    timers.handshakeInitiated();
    assert.equal(timers.deadline('retransmitHandshake'), clock.now() + 5000 + 200);
  }
  assert.equal(calls, 10);
  assert.deepEqual([...sizes], [256]);
});

test('gives up on the 20th expiry (attempts > 18): 19 retries, 20 initiations, then drop and zero', () => {
  const { clock, timers, t0 } = setup(0);
  timers.dataReceived(); // a pending passive keepalive that give-up must cancel
  initiate(timers, false);
  for (let n = 1; n <= 19; n++) {
    clock.advance(4999);
    assert.deepEqual(kinds(timers.poll()).filter((k) => k !== 'send-keepalive'), []);
    clock.advance(1);
    assert.deepEqual(kinds(timers.poll()).filter((k) => k !== 'send-keepalive'), ['retransmit-initiation']);
    assert.equal(timers.handshakeAttempts, n);
    assert.equal(initiate(timers, true), true, `retry ${n} passes the rate limit`);
  }
  timers.dataReceived();
  assert.notEqual(timers.deadline('sendKeepalive'), undefined);
  clock.advance(4999);
  assert.deepEqual(timers.poll(), []);
  clock.advance(1);
  assert.equal(clock.now() - t0, 100_000);
  assert.deepEqual(timers.poll(), [{ kind: 'give-up' }]);
  assert.equal(timers.deadline('retransmitHandshake'), undefined, 'no more retries');
  assert.equal(timers.deadline('sendKeepalive'), undefined, 'pending keepalive cancelled');
  assert.equal(timers.deadline('zeroKeyMaterial'), clock.now() + 540_000);
  assert.equal(timers.nextDeadline(), clock.now() + 540_000);
  clock.advance(539_999);
  assert.deepEqual(timers.poll(), []);
  clock.advance(1);
  assert.deepEqual(timers.poll(), [{ kind: 'zero-keys' }]);
});

test('give-up leaves an already pending key-zeroing deadline alone', () => {
  const { clock, timers, t0 } = setup(0);
  timers.sessionDerived();
  initiate(timers, false);
  for (let n = 0; n < 19; n++) {
    clock.advance(5000);
    assert.deepEqual(timers.poll(), [{ kind: 'retransmit-initiation' }]);
    initiate(timers, true);
  }
  clock.advance(5000);
  assert.deepEqual(timers.poll(), [{ kind: 'give-up' }]);
  assert.equal(timers.deadline('zeroKeyMaterial'), t0 + 540_000);
});

test('a non-retry initiation request resets the attempt count, even when rate-limited', () => {
  const { clock, timers, t0 } = setup(0);
  initiate(timers, false);
  for (let n = 0; n < 10; n++) {
    clock.advance(5000);
    timers.poll();
    initiate(timers, true);
  }
  assert.equal(timers.handshakeAttempts, 10);
  clock.advance(1000);
  assert.equal(timers.requestInitiation(false), false, 'rate-limited: last initiation 1 s ago');
  assert.equal(timers.handshakeAttempts, 0);
  clock.advance(4000);
  assert.deepEqual(timers.poll(), [{ kind: 'retransmit-initiation' }]);
  assert.equal(timers.handshakeAttempts, 1);
  // Outgoing traffic keeps postponing give-up: 19 more retries are now possible.
  initiate(timers, true);
  let actions: string[] = [];
  while (!actions.includes('give-up')) {
    clock.advance(5000);
    actions = kinds(timers.poll());
    if (actions.includes('retransmit-initiation')) initiate(timers, true);
  }
  assert.equal(clock.now() - t0, 55_000 + 19 * 5000);
});

test('handshake complete cancels the retransmit, resets attempts and records the time', () => {
  const { clock, timers } = setup(100);
  assert.equal(timers.lastHandshakeAt, undefined);
  initiate(timers, false);
  clock.advance(5100);
  timers.poll();
  initiate(timers, true);
  assert.equal(timers.handshakeAttempts, 1);
  clock.advance(42);
  timers.handshakeComplete();
  assert.equal(timers.deadline('retransmitHandshake'), undefined);
  assert.equal(timers.handshakeAttempts, 0);
  assert.equal(timers.lastHandshakeAt, clock.now());
  assert.deepEqual(timers.lastHandshakeWall, clock.wall());
  clock.advance(60_000);
  assert.deepEqual(timers.poll(), []);
});

test('session derived arms key zeroing 540 s after the LAST derived session', () => {
  const { clock, timers, t0 } = setup();
  timers.sessionDerived();
  assert.equal(timers.deadline('zeroKeyMaterial'), t0 + 540_000);
  clock.advance(100_000);
  timers.sessionDerived();
  clock.advance(539_999);
  assert.deepEqual(timers.poll(), []);
  clock.advance(1);
  assert.equal(clock.now() - t0, 640_000);
  assert.deepEqual(timers.poll(), [{ kind: 'zero-keys' }]);
  assert.equal(timers.nextDeadline(), undefined);
});

test('data sent arms new-handshake at 15 s + jitter, not re-armed while pending, cancelled by any receive', () => {
  const { clock, timers, t0 } = setup(200);
  timers.dataSent();
  assert.equal(timers.deadline('newHandshake'), t0 + 15_200);
  clock.advance(3000);
  timers.dataSent();
  assert.equal(timers.deadline('newHandshake'), t0 + 15_200, 'counts from the first unanswered packet');
  clock.advance(12_199);
  assert.deepEqual(timers.poll(), []);
  clock.advance(1);
  assert.deepEqual(timers.poll(), [{ kind: 'new-handshake' }]);

  // Any authenticated packet from the peer (a keepalive suffices) cancels it.
  timers.dataSent();
  clock.advance(15_000);
  timers.authenticatedReceived();
  assert.equal(timers.deadline('newHandshake'), undefined);
  clock.advance(1000);
  assert.deepEqual(timers.poll(), []);
  // Jitter stays in range with real randomness too.
  const c2 = new FakeClock();
  const t2 = new PeerTimers(c2, seededRandom(99));
  for (let i = 0; i < 1000; i++) {
    t2.dataSent();
    const d = t2.deadline('newHandshake')! - c2.now();
    assert.ok(d >= 15_000 && d <= 15_333, `${d}`);
    t2.authenticatedReceived();
  }
});

test('data received arms the passive keepalive at 10 s, with one extra re-arm when more data came', () => {
  const { clock, timers, t0 } = setup();
  timers.dataReceived();
  assert.equal(timers.deadline('sendKeepalive'), t0 + 10_000);
  clock.advance(3000);
  timers.dataReceived(); // pending: remember another keepalive is needed, deadline unchanged
  timers.dataReceived();
  assert.equal(timers.deadline('sendKeepalive'), t0 + 10_000);
  clock.advance(6999);
  assert.deepEqual(timers.poll(), []);
  clock.advance(1);
  assert.deepEqual(timers.poll(), [{ kind: 'send-keepalive', reason: 'passive' }]);
  assert.equal(timers.deadline('sendKeepalive'), t0 + 20_000, 're-armed once');
  clock.advance(10_000);
  assert.deepEqual(timers.poll(), [{ kind: 'send-keepalive', reason: 'passive' }]);
  assert.equal(timers.deadline('sendKeepalive'), undefined, 'only once');

  // Sending anything authenticated cancels the passive keepalive.
  timers.dataReceived();
  clock.advance(9000);
  timers.authenticatedSent();
  clock.advance(5000);
  assert.deepEqual(timers.poll(), []);
});

test('persistent keepalive is (re)armed by every traversal and fires at the interval', () => {
  const { clock, timers, t0 } = setup(0, { persistentKeepalive: 25 });
  assert.equal(timers.persistentKeepalive, 25);
  assert.equal(timers.nextDeadline(), undefined, 'armed by traffic, not by configuration');
  timers.authenticatedTraversal();
  assert.equal(timers.deadline('persistentKeepalive'), t0 + 25_000);
  clock.advance(10_000);
  timers.authenticatedTraversal();
  clock.advance(15_000);
  assert.deepEqual(timers.poll(), [], 'the traversal pushed it to 35 s');
  clock.advance(10_000);
  assert.deepEqual(timers.poll(), [{ kind: 'send-keepalive', reason: 'persistent' }]);
  assert.equal(timers.deadline('persistentKeepalive'), undefined, 'the keepalive send re-arms it, not the expiry');
  // The endpoint sends the keepalive: that is a traversal, so the beat continues.
  timers.authenticatedTraversal();
  assert.equal(timers.deadline('persistentKeepalive'), clock.now() + 25_000);

  // Changing the interval.
  assert.equal(timers.setPersistentKeepalive(0), false);
  assert.equal(timers.deadline('persistentKeepalive'), undefined);
  timers.authenticatedTraversal();
  assert.equal(timers.nextDeadline(), undefined, 'disabled: traversal arms nothing');
  assert.equal(timers.setPersistentKeepalive(5), true, 'off -> on asks for an immediate keepalive');
  assert.equal(timers.setPersistentKeepalive(7), false, 'on -> on does not');
  timers.authenticatedTraversal();
  assert.equal(timers.deadline('persistentKeepalive'), clock.now() + 7000);
  assert.throws(() => timers.setPersistentKeepalive(70_000));
  assert.throws(() => timers.setPersistentKeepalive(-1));
});

test('initiation rate limit: no initiation within REKEY_TIMEOUT of the last handshake message sent', () => {
  const { clock, timers } = setup();
  assert.equal(timers.initiationAllowed(), true);
  assert.equal(timers.requestInitiation(false), true);
  timers.handshakeInitiated();
  assert.equal(timers.initiationAllowed(), false);
  assert.equal(timers.requestInitiation(false), false);
  clock.advance(4999);
  assert.equal(timers.requestInitiation(false), false);
  clock.advance(1);
  assert.equal(timers.initiationAllowed(), true);
  // A request that is allowed counts as sent even if building the message then fails.
  assert.equal(timers.requestInitiation(false), true);
  assert.equal(timers.requestInitiation(false), false);
  // Sending a handshake response rate-limits our own initiations too.
  clock.advance(5000);
  timers.handshakeResponseSent();
  assert.equal(timers.initiationAllowed(), false);
  clock.advance(5000);
  assert.equal(timers.initiationAllowed(), true);
});

test('shouldRekeyOnSend: 120 s for the initiator only, and more than 2^60 messages for anyone', () => {
  const t = 1_000_000;
  const init = { isInitiator: true, createdAt: t, sendCounter: 0n };
  const resp = { isInitiator: false, createdAt: t, sendCounter: 0n };
  assert.equal(shouldRekeyOnSend(undefined, t + 1e9), false);
  assert.equal(shouldRekeyOnSend(init, t + 120_000), false);
  assert.equal(shouldRekeyOnSend(init, t + 120_001), true);
  assert.equal(shouldRekeyOnSend(resp, t + 179_999), false);
  assert.equal(shouldRekeyOnSend({ ...resp, sendCounter: REKEY_AFTER_MESSAGES }, t), false);
  assert.equal(shouldRekeyOnSend({ ...resp, sendCounter: REKEY_AFTER_MESSAGES + 1n }, t), true);
  assert.equal(shouldRekeyOnSend({ ...init, sendCounter: 1n << 60n }, t), false);
  assert.equal(REKEY_AFTER_MESSAGES, 1n << 60n);
  // A keypair that keeps the counter as u32 halves is judged on those, without BigInts (the send path's case).
  const halves = (c: bigint) => ({ ...resp, sendCounter: -1n, sendHi: Number(c >> 32n), sendLo: Number(c & 0xffffffffn) });
  assert.equal(shouldRekeyOnSend(halves(REKEY_AFTER_MESSAGES), t), false);
  assert.equal(shouldRekeyOnSend(halves(REKEY_AFTER_MESSAGES + 1n), t), true);
  assert.equal(shouldRekeyOnSend(halves(REKEY_AFTER_MESSAGES - 1n), t), false);
  assert.equal(shouldRekeyOnSend(halves(REKEY_AFTER_MESSAGES + (1n << 32n)), t), true);
  // The class method uses the peer's clock.
  const { clock, timers } = setup();
  const kp = { isInitiator: true, createdAt: clock.now(), sendCounter: 5n };
  clock.advance(120_000);
  assert.equal(timers.rekeyOnSend(kp), false);
  clock.advance(1);
  assert.equal(timers.rekeyOnSend(kp), true);
});

test('shouldRekeyOnReceive: initiator past 165 s initiates once until the next completed handshake', () => {
  const t = 1_000_000;
  const init = { isInitiator: true, createdAt: t };
  assert.equal(shouldRekeyOnReceive(init, t + 165_000, false), false);
  assert.equal(shouldRekeyOnReceive(init, t + 165_001, false), true);
  assert.equal(shouldRekeyOnReceive(init, t + 165_001, true), false);
  assert.equal(shouldRekeyOnReceive({ isInitiator: false, createdAt: t }, t + 179_000, false), false);
  assert.equal(shouldRekeyOnReceive(undefined, t + 179_000, false), false);

  const { clock, timers } = setup();
  const kp = { isInitiator: true, createdAt: clock.now() };
  clock.advance(165_000);
  assert.equal(timers.rekeyOnReceive(kp), false);
  assert.equal(timers.sentLastMinuteHandshake, false);
  clock.advance(1);
  assert.equal(timers.rekeyOnReceive(kp), true);
  assert.equal(timers.sentLastMinuteHandshake, true);
  assert.equal(timers.rekeyOnReceive(kp), false, 'once');
  clock.advance(5000);
  assert.equal(timers.rekeyOnReceive(kp), false, 'still once');
  timers.handshakeComplete();
  assert.equal(timers.sentLastMinuteHandshake, false);
  assert.equal(timers.rekeyOnReceive(kp), true, 'reset by a completed handshake');
});

test('timer scale shrinks every protocol time constant (but not the configured keepalive interval)', () => {
  const { clock, timers, t0 } = setup(333, { timerScale: 0.01, persistentKeepalive: 1 });
  assert.equal(timers.timerScale, 0.01);
  initiate(timers, false);
  assert.ok(Math.abs(timers.deadline('retransmitHandshake')! - (t0 + 53.33)) < 1e-6);
  timers.dataSent();
  assert.ok(Math.abs(timers.deadline('newHandshake')! - (t0 + 153.33)) < 1e-6);
  timers.dataReceived();
  assert.equal(timers.deadline('sendKeepalive'), t0 + 100);
  timers.sessionDerived();
  assert.equal(timers.deadline('zeroKeyMaterial'), t0 + 5400);
  timers.authenticatedTraversal();
  assert.equal(timers.deadline('persistentKeepalive'), t0 + 1000);
  assert.equal(timers.initiationAllowed(), false);
  clock.advance(50);
  assert.equal(timers.initiationAllowed(), true);

  // Give-up after 20 scaled windows (~1.07 s instead of ~107 s).
  const s = setup(333, { timerScale: 0.01 });
  initiate(s.timers, false);
  let gaveUp = -1;
  for (let step = 0; step < 2000 && gaveUp < 0; step++) {
    s.clock.advance(1);
    for (const a of s.timers.poll()) {
      if (a.kind === 'retransmit-initiation') assert.equal(initiate(s.timers, true), true);
      if (a.kind === 'give-up') gaveUp = s.clock.now() - s.t0;
    }
  }
  assert.equal(gaveUp, 20 * 54, 'each 53.33 ms window is observed at the next whole ms');
  // Rekey predicates scale too.
  const kp = { isInitiator: true, createdAt: 0 };
  assert.equal(shouldRekeyOnSend({ ...kp, sendCounter: 0n }, 1200, 0.01), false);
  assert.equal(shouldRekeyOnSend({ ...kp, sendCounter: 0n }, 1201, 0.01), true);
  assert.equal(shouldRekeyOnReceive(kp, 1650, false, 0.01), false);
  assert.equal(shouldRekeyOnReceive(kp, 1651, false, 0.01), true);
  assert.throws(() => new PeerTimers(clock, fixedJitter(0), { timerScale: 0 }));
  assert.throws(() => new PeerTimers(clock, fixedJitter(0), { timerScale: NaN }));
});

test('stop cancels every timer and keeps events from arming until start', () => {
  const { clock, timers } = setup(0, { persistentKeepalive: 10 });
  initiate(timers, false);
  timers.dataSent();
  timers.dataReceived();
  timers.sessionDerived();
  timers.authenticatedTraversal();
  assert.notEqual(timers.nextDeadline(), undefined);
  timers.stop();
  assert.equal(timers.isRunning, false);
  assert.equal(timers.nextDeadline(), undefined);
  timers.handshakeInitiated();
  timers.dataSent();
  timers.dataReceived();
  timers.sessionDerived();
  timers.authenticatedTraversal();
  assert.equal(timers.nextDeadline(), undefined);
  clock.advance(1_000_000);
  assert.deepEqual(timers.poll(), []);
  timers.start();
  timers.dataReceived();
  assert.equal(timers.nextDeadline(), clock.now() + 10_000);
});

test('poll returns every due action in deadline order and nextDeadline is the earliest pending', () => {
  const { clock, timers, t0 } = setup(0, { persistentKeepalive: 3 });
  timers.dataSent(); // new-handshake at 15 s
  clock.advance(1000);
  timers.dataReceived(); // passive keepalive at 11 s
  timers.authenticatedTraversal(); // persistent at 4 s
  clock.advance(1000);
  initiate(timers, false); // retransmit at 7 s
  assert.equal(timers.nextDeadline(), t0 + 4000);
  clock.advance(20_000);
  assert.deepEqual(timers.poll(), [
    { kind: 'send-keepalive', reason: 'persistent' },
    { kind: 'retransmit-initiation' },
    { kind: 'send-keepalive', reason: 'passive' },
    { kind: 'new-handshake' },
  ]);
  assert.equal(timers.nextDeadline(), undefined);
});

test('onArm hears every armed deadline (the endpoint keeps one real timer at the earliest), nothing once stopped', () => {
  const { clock, timers, t0 } = setup(100);
  const heard: number[] = [];
  timers.onArm = (d) => heard.push(d - t0);
  timers.dataReceived(); // passive keepalive at 10 s
  timers.handshakeInitiated(); // retransmit at 5 s + 100 ms jitter
  assert.deepEqual(heard, [10_000, 5_100]);
  assert.equal(timers.nextDeadline(), t0 + 5_100, 'the earliest heard is the next deadline');
  clock.advance(5_100);
  assert.deepEqual(kinds(timers.poll()), ['retransmit-initiation']);
  timers.stop();
  timers.handshakeInitiated();
  timers.dataReceived();
  assert.equal(heard.length, 2, 'a stopped peer (device down) arms nothing, so nothing is heard');
});
