// Unit tests for the quiet-tunnel CPU yield (src/tun/cpuyield.ts): a lone datagram after a quiet spell
// yields once; bursts and back-to-back sends never do; and the real sched_yield(2) binding.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../../src/clock.js';
import { QUIET_MS, QuietYield } from '../../src/tun/cpuyield.js';
import { schedYield } from '../../src/tun/sys.js';

function setup(): { clock: FakeClock; q: QuietYield; calls: () => number } {
  const clock = new FakeClock();
  let n = 0;
  const q = new QuietYield(clock, () => n++);
  return { clock, q, calls: () => n };
}

test('a lone datagram on a quiet tunnel yields, once per send', () => {
  const { clock, q, calls } = setup();
  q.sent(1); // the first send ever finds the tunnel quiet
  assert.equal(calls(), 1);
  clock.advance(20); // a ping 20 ms later
  q.sent(1);
  assert.equal(calls(), 2);
  assert.equal(q.yields, 2);
});

test('a flush of several datagrams never yields, and counts as traffic', () => {
  const { clock, q, calls } = setup();
  q.sent(2);
  assert.equal(calls(), 0);
  clock.advance(QUIET_MS / 2);
  q.sent(1); // right behind the burst: under load
  assert.equal(calls(), 0);
  clock.advance(QUIET_MS);
  q.sent(64);
  assert.equal(calls(), 0);
});

test('back-to-back lone datagrams (a flood, TCP ACKs) yield only after a quiet spell', () => {
  const { clock, q, calls } = setup();
  q.sent(1);
  for (let i = 0; i < 100; i++) {
    clock.advance(QUIET_MS / 10);
    q.sent(1);
  }
  assert.equal(calls(), 1);
  clock.advance(QUIET_MS); // exactly QUIET_MS after the last one: quiet
  q.sent(1);
  assert.equal(calls(), 2);
});

test('an empty flush changes nothing', () => {
  const { clock, q, calls } = setup();
  q.sent(1);
  clock.advance(QUIET_MS / 2);
  q.sent(0); // nothing went out: it must not make the next lone send look like load
  clock.advance(QUIET_MS / 2);
  q.sent(1);
  assert.equal(calls(), 2);
});

test('sched_yield(2) is bound and returns', () => {
  const t0 = performance.now();
  for (let i = 0; i < 1000; i++) schedYield();
  assert.ok(performance.now() - t0 < 5_000);
});
