// `wgts --selftest`: the kernel module's load-time selftests (selftests.md) run against our implementations,
// one line per suite with its number of checks and the result.

import { runAllowedIpsSelftest } from './allowedips.js';
import { runCounterSelftest } from './counter.js';
import { runRatelimiterSelftest } from './ratelimiter.js';
import type { SelftestResult } from './result.js';

export function runSelftests(out: (line: string) => void): boolean {
  const suites: (() => SelftestResult)[] = [runCounterSelftest, runAllowedIpsSelftest, runRatelimiterSelftest];
  let allPassed = true;
  for (const run of suites) {
    const started = performance.now();
    const r = run();
    const ms = Math.round(performance.now() - started);
    const verdict = r.failed === 0 ? 'pass' : `FAIL (${r.failed} failed)`;
    out(`${r.suite} self-tests: ${r.checks} checks, ${verdict} (${ms} ms)`);
    for (const f of r.failures) out(`  ${r.suite}: ${f}`);
    if (r.failed !== 0 || r.checks === 0) allPassed = false;
  }
  return allPassed;
}
