// The kernel's counter (replay window) selftest, run against ReplayWindow: selftests.md "Counter", Part 1
// (34 fixed checks on one window) and Part 2 (blocks A-F, each on a fresh window), 48,813 checks in all.

import { COUNTER_WINDOW_SIZE, REJECT_AFTER_MESSAGES } from '../constants.js';
import { ReplayWindow } from '../dataplane/replay.js';
import type { SelftestResult } from './result.js';

const W = COUNTER_WINDOW_SIZE;
const T_LIM = BigInt(W + 1);
const RAM = REJECT_AFTER_MESSAGES;
const MAX_FAILURES_REPORTED = 10;

const A = true;
const R = false;

// Part 1 in table order: [nonce, expect accept]. Kept as the table's own expressions so a reader can check
// it against selftests.md line by line.
const PART1: ReadonlyArray<readonly [bigint, boolean]> = [
  [0n, A],
  [1n, A],
  [1n, R],
  [9n, A],
  [8n, A],
  [7n, A],
  [7n, R],
  [T_LIM, A],
  [T_LIM - 1n, A],
  [T_LIM - 1n, R],
  [T_LIM - 2n, A],
  [2n, A],
  [2n, R],
  [T_LIM + 16n, A],
  [3n, R],
  [T_LIM + 16n, R],
  [4n * T_LIM, A],
  [4n * T_LIM - (T_LIM - 1n), A],
  [10n, R],
  [4n * T_LIM - T_LIM, R],
  [4n * T_LIM - (T_LIM + 1n), R],
  [4n * T_LIM - (T_LIM - 2n), A],
  [4n * T_LIM + 1n - T_LIM, R],
  [0n, R],
  [RAM, R],
  [RAM - 1n, A],
  [RAM, R],
  [RAM - 1n, R],
  [RAM - 2n, A],
  [RAM + 1n, R],
  [RAM + 2n, R],
  [RAM - 2n, R],
  [RAM - 3n, A],
  [0n, R],
];

class Tally {
  checks = 0;
  failed = 0;
  readonly failures: string[] = [];

  expect(win: ReplayWindow, label: string, n: number | bigint, accept: boolean): void {
    this.checks++;
    const got = typeof n === 'bigint' ? win.checkBig(n) : win.check(n, 0);
    if (got === accept) return;
    this.failed++;
    if (this.failures.length < MAX_FAILURES_REPORTED) {
      this.failures.push(`${label}: nonce ${n} ${accept ? 'rejected, expected accept' : 'accepted, expected reject'}`);
    }
  }
}

export function runCounterSelftest(): SelftestResult {
  const t = new Tally();
  let win = new ReplayWindow();

  PART1.forEach(([n, accept], i) => t.expect(win, `part 1 #${i + 1}`, n, accept));

  // Part 2 nonces all fit in a u32, so they go through the hot-path entry point directly.
  win = new ReplayWindow();
  for (let n = 1; n <= W; n++) t.expect(win, 'block A ascending', n, A);
  t.expect(win, 'block A first 0', 0, A);
  t.expect(win, 'block A replayed 0', 0, R);

  win = new ReplayWindow();
  for (let n = 2; n <= W + 1; n++) t.expect(win, 'block B ascending', n, A);
  t.expect(win, 'block B 1', 1, A);
  t.expect(win, 'block B 0', 0, R);

  win = new ReplayWindow();
  for (let n = W; n >= 0; n--) t.expect(win, 'block C descending', n, A);

  win = new ReplayWindow();
  for (let n = W + 1; n >= 1; n--) t.expect(win, 'block D descending', n, A);
  t.expect(win, 'block D 0', 0, R);

  win = new ReplayWindow();
  for (let n = W; n >= 1; n--) t.expect(win, 'block E descending', n, A);
  t.expect(win, 'block E W+1', W + 1, A);
  t.expect(win, 'block E 0', 0, R);

  win = new ReplayWindow();
  for (let n = W; n >= 1; n--) t.expect(win, 'block F descending', n, A);
  t.expect(win, 'block F 0', 0, A);
  t.expect(win, 'block F W+1', W + 1, A);

  return { suite: 'counter', checks: t.checks, failed: t.failed, failures: t.failures };
}
