// Unit tests for the replay window (src/dataplane/replay.ts) and the kernel counter selftest
// (src/selftest/counter.ts; selftests.md "Counter"), plus u64 edge cases the selftest does not reach.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ReplayWindow } from '../../src/dataplane/replay.js';
import { runCounterSelftest } from '../../src/selftest/counter.js';
import { COUNTER_WINDOW_SIZE as W, REJECT_AFTER_MESSAGES as RAM } from '../../src/constants.js';

const TWO_32 = 1n << 32n;

test('kernel counter selftest: 48,813 checks, none failing', () => {
  const r = runCounterSelftest();
  assert.equal(r.suite, 'counter');
  assert.deepEqual(r.failures, []);
  assert.equal(r.failed, 0);
  assert.equal(r.checks, 48813);
  assert.equal(r.checks, 34 + 6 * W + 11);
});

test('a replayed nonce is rejected (the harness sees a wrong expectation)', () => {
  const win = new ReplayWindow();
  assert.equal(win.checkBig(42n), true);
  // If the window wrongly accepted replays, this assertion (and so this test) would fail.
  assert.throws(() => assert.equal(win.checkBig(42n), true), assert.AssertionError);
  assert.equal(win.checkBig(42n), false);
});

test('check(lo, hi) and checkBig agree: packet halves read with readUInt32LE', () => {
  const pkt = Buffer.alloc(16);
  const n = 0x1234_5678_9abc_def0n;
  pkt.writeBigUInt64LE(n, 8);
  const win = new ReplayWindow();
  assert.equal(win.check(pkt.readUInt32LE(8), pkt.readUInt32LE(12)), true);
  assert.equal(win.checkBig(n), false);
  assert.equal(win.checkBig(n - 1n), true);
  assert.equal(win.check(pkt.readUInt32LE(8) - 1, pkt.readUInt32LE(12)), false);
});

test('crossing the 2^32 boundary between the halves', () => {
  const win = new ReplayWindow();
  for (let n = TWO_32 - 100n; n < TWO_32 + 100n; n++) assert.equal(win.checkBig(n), true, `first ${n}`);
  for (let n = TWO_32 - 100n; n < TWO_32 + 100n; n++) assert.equal(win.checkBig(n), false, `replay ${n}`);
  // The window spans the boundary: W - 1 below the newest is still in, W and beyond are not.
  const top = TWO_32 + 99n;
  assert.equal(win.checkBig(top - BigInt(W) + 1n), true);
  assert.equal(win.checkBig(top - BigInt(W)), true);
  assert.equal(win.checkBig(top - BigInt(W) - 1n), false);
  // Same bit position, one 2^32 apart: distinct nonces, the older is far out of the window.
  assert.equal(win.checkBig(top + TWO_32), true);
  assert.equal(win.checkBig(top), false);
  assert.equal(win.checkBig(top + TWO_32 - 1n), true);
});

test('in order across 2^32 with every ring slot already used', () => {
  // Starting well below the boundary fills the whole ring first, so crossing it by one nonce at a time
  // only works if the small-step word clearing handles the carry into the high half.
  const win = new ReplayWindow();
  const start = TWO_32 - 20_000n;
  for (let n = start; n < TWO_32 + 20_000n; n++) {
    if (!win.checkBig(n)) assert.fail(`in-order nonce ${n} rejected`);
    if (n - 64n >= start && win.checkBig(n - 64n)) assert.fail(`replay of ${n - 64n} accepted`);
  }
});

test('descending across the boundary inside one window', () => {
  const win = new ReplayWindow();
  const hiStart = TWO_32 + BigInt(W) / 2n;
  for (let k = 0n; k <= BigInt(W); k++) assert.equal(win.checkBig(hiStart - k), true, `${hiStart - k}`);
  assert.equal(win.checkBig(hiStart - BigInt(W) - 1n), false);
  assert.equal(win.checkBig(TWO_32), false);
  assert.equal(win.checkBig(TWO_32 - 1n), false);
});

test('a jump of 127 words keeps the oldest word, which is still inside the window', () => {
  for (const base of [0n, TWO_32 - 64n * 64n, (1n << 63n) + 12345n * 64n]) {
    const win = new ReplayWindow();
    // Counter = base + 101 sits in word w; jumping to counter = (w + 127) * 64 must clear 127 words, not 128.
    assert.equal(win.checkBig(base + 100n), true);
    const w = (base + 101n) >> 6n;
    const m = (w + 127n) * 64n;
    assert.equal(win.checkBig(m - 1n), true);
    assert.equal(win.checkBig(base + 100n), false, `replay in the oldest word (base ${base})`);
    assert.equal(win.checkBig(base + 99n), true);
    assert.equal(win.checkBig(m - 1n - BigInt(W)), true, 'the window floor is exactly W below the top');
    assert.equal(win.checkBig(m - 2n - BigInt(W)), false);
  }
});

test('a jump of exactly 2^32 clears the whole ring (bit positions repeat)', () => {
  const win = new ReplayWindow();
  for (let n = 0n; n < 200n; n++) win.checkBig(n);
  // Bits for 0..199 sit in the same ring slots as 2^32 + 0..199; a stale bitmap would reject them.
  assert.equal(win.checkBig(TWO_32 + 199n), true);
  for (let n = TWO_32; n < TWO_32 + 199n; n++) assert.equal(win.checkBig(n), true, `${n}`);
  // Also across words of the high half: 2^38 apart is the same word index in a 58-bit index space mod 128.
  const far = TWO_32 * 64n + 199n;
  assert.equal(win.checkBig(far), true);
  for (let n = far - 199n; n < far; n++) assert.equal(win.checkBig(n), true, `${n}`);
});

test('values near 2^64 and the reject-after limit', () => {
  const win = new ReplayWindow();
  assert.equal(win.checkBig(RAM), false);
  assert.equal(win.checkBig(RAM + 1n), false);
  assert.equal(win.checkBig((1n << 64n) - 1n), false);
  assert.equal(win.check(0xffff_ffff, 0xffff_ffff), false);
  assert.equal(win.checkBig(1n << 64n), false, 'out of u64 range');
  assert.equal(win.checkBig(-1n), false, 'negative');
  assert.equal(win.checkBig(RAM - 1n), true);
  assert.equal(win.checkBig(RAM - 1n), false);
  assert.equal(win.checkBig(RAM - BigInt(W)), true);
  assert.equal(win.checkBig(RAM - BigInt(W) - 1n), true);
  assert.equal(win.checkBig(RAM - BigInt(W) - 2n), false);
  assert.equal(win.checkBig(RAM - 2n), true);
  // Nothing at or past the limit ever gets in, even once the window sits right below it.
  assert.equal(win.checkBig(RAM), false);
  assert.equal(win.checkBig(0n), false);
});

test('a rejected large value does not move the window', () => {
  const win = new ReplayWindow();
  assert.equal(win.checkBig(5n), true);
  assert.equal(win.checkBig(RAM), false);
  assert.equal(win.checkBig(RAM + 1000n), false);
  assert.equal(win.checkBig(1n << 64n), false);
  // Had the counter jumped towards 2^64, these low nonces would be out of the window.
  assert.equal(win.checkBig(0n), true);
  assert.equal(win.checkBig(4n), true);
  assert.equal(win.checkBig(5n), false);
  // A rejected too-old nonce does not move it either.
  assert.equal(win.checkBig(100_000n), true);
  assert.equal(win.checkBig(100_000n - BigInt(W) - 1n), false);
  assert.equal(win.checkBig(99_999n), true);
});

test('reset() returns to a fresh window', () => {
  const win = new ReplayWindow();
  assert.equal(win.checkBig(1_000_000n), true);
  assert.equal(win.checkBig(0n), false);
  win.reset();
  assert.equal(win.checkBig(0n), true);
  assert.equal(win.checkBig(1_000_000n), true);
  assert.equal(win.checkBig(1_000_000n), false);
});

test('agrees with a straightforward BigInt model on a random walk', () => {
  // The model is the algorithm from selftests.md in BigInt, with the ring as a set of seen nonces.
  let counter = 0n;
  let seen = new Set<bigint>();
  const model = (n: bigint): boolean => {
    if (counter >= RAM + 1n || n >= RAM) return false;
    const m = n + 1n;
    if (m + BigInt(W) < counter) return false;
    if (m > counter) {
      // Nonces that the ring can no longer hold are forgotten, as word-granular clearing does.
      const keepFromWord = (m >> 6n) - 127n;
      seen = new Set([...seen].filter((x) => x + 1n >= keepFromWord * 64n));
      counter = m;
    }
    if (seen.has(n)) return false;
    seen.add(n);
    return true;
  };
  let s = 0x2545f491;
  const rnd = (): number => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 0x1_0000_0000;
  };
  const win = new ReplayWindow();
  let base = TWO_32 - 20_000n;
  for (let i = 0; i < 20_000; i++) {
    const r = rnd();
    if (r < 0.02) base += BigInt(Math.floor(rnd() * 20_000));
    const n = base + BigInt(Math.floor(rnd() * 9000)) - 4500n;
    const want = model(n);
    assert.equal(win.checkBig(n), want, `step ${i} nonce ${n}`);
    if (rnd() < 0.3) base += 1n;
  }
});
