// bin/wgts as a user runs it: --version, --selftest (the kernel's three selftests) and usage errors.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

const bin = new URL('../../../bin/wgts', import.meta.url).pathname;
const run = (...args: string[]) => spawnSync(bin, args, { encoding: 'utf8', timeout: 120_000 });

test('wgts --version prints a banner and exits 0', () => {
  const r = run('--version');
  assert.equal(r.status, 0);
  assert.match(r.stdout, /^wgts v\d+\.\d+\.\d+/);
});

test('wgts --selftest runs the counter, allowed-IPs and ratelimiter suites and passes', () => {
  const r = run('--selftest');
  assert.equal(r.status, 0, r.stdout + r.stderr);
  const lines = r.stdout.trim().split('\n');
  assert.equal(lines.length, 3);
  assert.match(lines[0], /^counter self-tests: 48813 checks, pass/);
  assert.match(lines[1], /^allowedips self-tests: \d{6,} checks, pass/);
  assert.match(lines[2], /^ratelimiter self-tests: \d+ checks, pass/);
});

test('usage errors exit 1 with the usage text', () => {
  for (const args of [[], ['-f'], ['a', 'b'], ['--bogus']]) {
    const r = run(...args);
    assert.equal(r.status, 1, `args ${JSON.stringify(args)}`);
    assert.match(r.stderr, /Usage: wgts/);
  }
});
