// The kernel's ratelimiter selftest, run against Ratelimiter on a FakeClock: selftests.md "Ratelimiter"
// (the 11-step timing schedule with side sources, then the capacity check at the default table size).
// A fake clock makes the schedule exact, so unlike the kernel no retries for scheduler jitter are needed.

import { FakeClock } from '../clock.js';
import { RATELIMIT_DEFAULT_MAX_ENTRIES, RATELIMIT_IDLE_MS, Ratelimiter } from '../dataplane/ratelimiter.js';
import type { SelftestResult } from './result.js';

const MAX_FAILURES_REPORTED = 10;

// [sleep before in ms, expect allow] for indices 0..10.
const SCHEDULE: ReadonlyArray<readonly [number, boolean]> = [
  [0, true],
  [0, true],
  [0, true],
  [0, true],
  [0, true],
  [0, false],
  [50, true],
  [0, false],
  [100, true],
  [0, true],
  [0, false],
];

// Test-only source addresses (documentation ranges), never sent to.
const V4_BASE = 0xc000_0201; // 192.0.2.1
const V6_PREFIX = [0x2001, 0x0db8, 0x0000, 0x0001]; // 2001:db8:0:1::/64

function v4(n: number): Uint8Array {
  return new Uint8Array([n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff]);
}

// IPv6 address from four 16-bit prefix groups plus a 64-bit interface id given as two u32s.
function v6(prefix: readonly number[], idHi: number, idLo: number): Uint8Array {
  const b = new Uint8Array(16);
  const dv = new DataView(b.buffer);
  prefix.forEach((g, i) => dv.setUint16(i * 2, g));
  dv.setUint32(8, idHi >>> 0);
  dv.setUint32(12, idLo >>> 0);
  return b;
}

export function runRatelimiterSelftest(): SelftestResult {
  let checks = 0;
  let failed = 0;
  const failures: string[] = [];
  const expect = (label: string, got: boolean, want: boolean): void => {
    checks++;
    if (got === want) return;
    failed++;
    if (failures.length < MAX_FAILURES_REPORTED) failures.push(`${label}: got ${got}, expected ${want}`);
  };

  const clock = new FakeClock();
  const rl = new Ratelimiter(clock);
  const mainV4 = v4(V4_BASE);

  SCHEDULE.forEach(([sleep, want], i) => {
    clock.advance(sleep);
    expect(`index ${i} IPv4 source`, rl.allow(mainV4), want);
    // A source never seen before starts with a nearly full bucket whatever the others did.
    expect(`index ${i} other IPv4 source`, rl.allow(v4(V4_BASE + i + 1)), true);
    // Same /64, new lower half each time: one bucket, so it follows the same schedule as the IPv4 source.
    expect(`index ${i} IPv6 source in the same /64`, rl.allow(v6(V6_PREFIX, i, i)), want);
    const otherPrefix = [V6_PREFIX[0], V6_PREFIX[1], V6_PREFIX[2], V6_PREFIX[3] + i + 1];
    expect(`index ${i} IPv6 source in another /64`, rl.allow(v6(otherPrefix, i, i)), true);
  });

  clock.advance(RATELIMIT_IDLE_MS + 1);
  rl.gc();
  expect('table empty after gc', rl.size === 0, true);

  const max = RATELIMIT_DEFAULT_MAX_ENTRIES;
  for (let i = 0; i <= max; i++) expect(`capacity source ${i} of ${max}`, rl.allow(v4(i)), i !== max);

  return { suite: 'ratelimiter', checks, failed, failures };
}
