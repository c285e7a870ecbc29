// Unit tests for the handshake ratelimiter (src/dataplane/ratelimiter.ts) and its kernel selftest
// (src/selftest/ratelimiter.ts; selftests.md "Ratelimiter"): GC timing, /64 bucketing, table bounds.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../../src/clock.js';
import { Ratelimiter, RATELIMIT_DEFAULT_MAX_ENTRIES } from '../../src/dataplane/ratelimiter.js';
import { runRatelimiterSelftest } from '../../src/selftest/ratelimiter.js';

const v4 = (a: number, b: number, c: number, d: number): Uint8Array => new Uint8Array([a, b, c, d]);
const v4n = (n: number): Uint8Array => new Uint8Array([n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff]);
function v6(text: string): Uint8Array {
  // Full-form only (8 groups), enough for fixed test addresses.
  const groups = text.split(':');
  assert.equal(groups.length, 8);
  const b = new Uint8Array(16);
  groups.forEach((g, i) => {
    const x = parseInt(g, 16);
    b[i * 2] = x >> 8;
    b[i * 2 + 1] = x & 0xff;
  });
  return b;
}
const burst = (rl: Ratelimiter, addr: Uint8Array, n: number): boolean[] => Array.from({ length: n }, () => rl.allow(addr));

test('kernel ratelimiter selftest: 44 schedule + 1 gc + 8193 capacity checks, none failing', () => {
  const r = runRatelimiterSelftest();
  assert.equal(r.suite, 'ratelimiter');
  assert.deepEqual(r.failures, []);
  assert.equal(r.failed, 0);
  assert.equal(r.checks, 11 * 4 + 1 + (8192 + 1));
  assert.equal(r.checks, 8238);
});

test('burst of 5, then 20 per second', () => {
  const clock = new FakeClock();
  const rl = new Ratelimiter(clock);
  const a = v4(192, 0, 2, 7);
  assert.deepEqual(burst(rl, a, 7), [true, true, true, true, true, false, false]);
  clock.advance(49);
  assert.equal(rl.allow(a), false, '49 ms is less than one packet');
  clock.advance(1);
  assert.equal(rl.allow(a), true, '50 ms since the last refill buys one packet');
  assert.equal(rl.allow(a), false);
  // A long pause refills only up to the burst.
  clock.advance(10_000);
  assert.deepEqual(burst(rl, a, 6), [true, true, true, true, true, false]);
});

test('gc removes entries idle for more than 1 s, not before', () => {
  const clock = new FakeClock();
  const rl = new Ratelimiter(clock);
  rl.allow(v4(192, 0, 2, 1));
  rl.allow(v6('2001:db8:0:1:0:0:0:1'));
  clock.advance(500);
  rl.allow(v4(192, 0, 2, 2));
  assert.equal(rl.size, 3);
  clock.advance(500);
  rl.gc();
  assert.equal(rl.size, 3, 'exactly 1 s idle is kept');
  clock.advance(1);
  rl.gc();
  assert.equal(rl.size, 1, 'the two sources idle 1001 ms are gone, the one idle 501 ms stays');
  clock.advance(500);
  rl.gc();
  assert.equal(rl.size, 0);
});

test('a denied packet still counts as activity; a collected source starts over', () => {
  const clock = new FakeClock();
  const rl = new Ratelimiter(clock);
  const a = v4(192, 0, 2, 9);
  burst(rl, a, 5);
  clock.advance(40);
  assert.equal(rl.allow(a), false, 'only 40 ms of tokens');
  // 1040 ms after the last allowed packet but exactly 1000 ms after the denied one: still tracked.
  clock.advance(1000);
  rl.gc();
  assert.equal(rl.size, 1);
  // And the denied packet kept its partial refill: 40 + 1000 ms, capped at the burst.
  assert.deepEqual(burst(rl, a, 6), [true, true, true, true, true, false]);
  clock.advance(1001);
  rl.gc();
  assert.equal(rl.size, 0);
  assert.deepEqual(burst(rl, a, 6), [true, true, true, true, true, false]);
  assert.equal(rl.size, 1);
});

test('IPv6 is bucketed per /64; IPv4 per address', () => {
  const clock = new FakeClock();
  const rl = new Ratelimiter(clock);
  const hosts = ['1', '2', 'ffff', 'dead', 'beef'].map((h) => v6(`2001:db8:aa:bb:${h}:0:0:${h}`));
  assert.deepEqual(hosts.map((h) => rl.allow(h)), [true, true, true, true, true]);
  assert.equal(rl.allow(v6('2001:db8:aa:bb:ffff:ffff:ffff:ffff')), false, 'sixth packet of the same /64');
  assert.equal(rl.size, 1);
  // Neighbouring /64s differ in either u32 half of the upper 64 bits.
  assert.equal(rl.allow(v6('2001:db8:aa:bc:0:0:0:1')), true);
  assert.equal(rl.allow(v6('2001:db9:aa:bb:0:0:0:1')), true);
  assert.equal(rl.size, 3);
  // IPv4 addresses in one /24 are separate buckets.
  const clock4 = new FakeClock();
  const rl4 = new Ratelimiter(clock4);
  burst(rl4, v4(198, 51, 100, 1), 5);
  assert.equal(rl4.allow(v4(198, 51, 100, 1)), false);
  assert.equal(rl4.allow(v4(198, 51, 100, 2)), true);
});

test('an IPv4-mapped IPv6 address shares the IPv4 bucket', () => {
  const clock = new FakeClock();
  const rl = new Ratelimiter(clock);
  const mapped = (d: number): Uint8Array => new Uint8Array([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 203, 0, 113, d]);
  burst(rl, v4(203, 0, 113, 5), 5);
  assert.equal(rl.allow(mapped(5)), false);
  assert.equal(rl.allow(mapped(6)), true, 'another IPv4 client is not in the same bucket');
  assert.equal(rl.size, 2);
});

test('a full table denies new sources but serves known ones; gc makes room', () => {
  const clock = new FakeClock();
  const rl = new Ratelimiter(clock, { maxEntries: 3 });
  assert.equal(rl.allow(v4(10, 0, 0, 1)), true);
  clock.advance(600);
  assert.equal(rl.allow(v4(10, 0, 0, 2)), true);
  assert.equal(rl.allow(v6('2001:db8:0:0:0:0:0:1')), true);
  assert.equal(rl.size, 3);
  assert.equal(rl.allow(v4(10, 0, 0, 3)), false, 'new IPv4 source, table full');
  assert.equal(rl.allow(v6('2001:db8:0:1:0:0:0:1')), false, 'new /64, table full');
  assert.equal(rl.size, 3);
  assert.equal(rl.allow(v4(10, 0, 0, 1)), true, 'known source still served');
  assert.equal(rl.allow(v6('2001:db8:0:0:0:0:0:2')), true, 'known /64 still served');
  clock.advance(1001);
  assert.equal(rl.allow(v4(10, 0, 0, 1)), true);
  rl.gc();
  assert.equal(rl.size, 1);
  assert.equal(rl.allow(v4(10, 0, 0, 3)), true);
  assert.equal(rl.allow(v6('2001:db8:0:1:0:0:0:1')), true);
  assert.equal(rl.allow(v4(10, 0, 0, 4)), false);
  rl.clear();
  assert.equal(rl.size, 0);
  assert.equal(rl.allow(v4(10, 0, 0, 4)), true);
});

test('default maxEntries is 8192', () => {
  assert.equal(RATELIMIT_DEFAULT_MAX_ENTRIES, 8192);
  const rl = new Ratelimiter(new FakeClock());
  for (let i = 0; i < 8192; i++) assert.equal(rl.allow(v4n(0x0a00_0000 + i)), true);
  assert.equal(rl.size, 8192);
  assert.equal(rl.allow(v4n(0x0a00_0000 + 8192)), false);
  assert.equal(rl.allow(v6('2001:db8:0:0:0:0:0:1')), false);
  assert.equal(rl.size, 8192);
});

test('bad input: odd address lengths are denied, bad maxEntries throws', () => {
  const rl = new Ratelimiter(new FakeClock());
  assert.equal(rl.allow(new Uint8Array(5)), false);
  assert.equal(rl.allow(new Uint8Array(0)), false);
  assert.equal(rl.size, 0);
  assert.throws(() => new Ratelimiter(new FakeClock(), { maxEntries: 0 }), RangeError);
  assert.throws(() => new Ratelimiter(new FakeClock(), { maxEntries: 1.5 }), RangeError);
});

test('works on a view into a larger buffer (addresses read in place from a packet)', () => {
  const clock = new FakeClock();
  const rl = new Ratelimiter(clock);
  const pkt = new Uint8Array(40);
  pkt.set([192, 0, 2, 77], 12);
  const view = pkt.subarray(12, 16);
  burst(rl, view, 5);
  assert.equal(rl.allow(v4(192, 0, 2, 77)), false, 'the view and a copy are the same source');
});
