// The outcome of one built-in selftest suite (counter, allowed IPs, ratelimiter), as reported by
// `wgts --selftest` and asserted by the unit tests. See /work/shared/reference/selftests.md.

export interface SelftestResult {
  suite: string;
  checks: number;
  failed: number;
  failures: string[] /* first few failure descriptions */;
}
