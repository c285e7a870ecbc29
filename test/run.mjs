// Runs the whole suite with node's test runner: unit tests (pure, no root) and root tests (namespaces,
// TUN, wireguard-go). Root tests never skip silently: without root they fail, unless WGTS_SKIP_ROOT=1 is
// set, which prints a loud notice and leaves them out.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

const root = new URL('../dist/test/', import.meta.url).pathname;
const find = (dir) =>
  readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return find(p);
    return name.endsWith('.test.js') ? [p] : [];
  });

const only = process.argv.slice(2);
let files = find(root).sort();
if (only.length) files = files.filter((f) => only.some((o) => f.includes(o)));
if (process.env.WGTS_SKIP_ROOT === '1') {
  const skipped = files.filter((f) => f.includes('/root/'));
  files = files.filter((f) => !f.includes('/root/'));
  console.log(`\n*** WGTS_SKIP_ROOT=1: NOT running ${skipped.length} root test files (${skipped.map((f) => f.slice(root.length)).join(', ')}) ***\n`);
}
const r = spawnSync(process.execPath, ['--test', '--test-reporter=spec', '--test-concurrency=1', ...files], { stdio: 'inherit' });
process.exit(r.status ?? 1);
