// The benchmark's GC probe (issue 4 item 3, "show GC time in the benchmark"): loaded with --import into a
// process that re-spawns itself like `wgts` in daemon mode, it must reach the re-spawned child, answer
// SIGUSR2 with a current snapshot, and write its final totals on SIGTERM only after the process's own
// SIGTERM handler has finished its (asynchronous) stop.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GC_PROBE, gcDelta, readGc, snapshotGc } from '../../bench/gc.js';

// Like cli.ts: the parent re-spawns itself with process.execArgv, detached, waits for a ready line on fd 3
// and exits; the child makes garbage until SIGTERM, then stops asynchronously and calls process.exit.
const FIXTURE = `
import { spawn } from 'node:child_process';
import { writeFileSync, writeSync, closeSync } from 'node:fs';
if (process.env.FIXTURE_ROLE !== 'child') {
  const c = spawn(process.execPath, [...process.execArgv, process.argv[1]], {
    env: { ...process.env, FIXTURE_ROLE: 'child' }, stdio: ['ignore', 'ignore', 'ignore', 'pipe'], detached: true,
  });
  c.stdio[3].once('data', () => { process.stdout.write('child ' + c.pid + '\\n'); c.unref(); process.exit(0); });
} else {
  let keep = [];
  const t = setInterval(() => { keep = []; for (let i = 0; i < 20000; i++) keep.push({ i, s: 'x' + i }); }, 2);
  process.once('SIGTERM', () => {
    clearInterval(t);
    setTimeout(() => { writeFileSync(process.env.FIXTURE_MARK, 'stopped ' + keep.length); process.exit(0); }, 150);
  });
  writeSync(3, 'ready\\n');
  closeSync(3);
}
`;

const gone = (pid: number) => {
  try {
    process.kill(pid, 0);
    return false;
  } catch {
    return true;
  }
};

test('the probe follows a self-re-spawning daemon, snapshots on SIGUSR2 and writes final totals after the SIGTERM stop', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'wgts-gcprobe-'));
  let child = 0;
  try {
    const script = join(dir, 'fixture.mjs');
    const mark = join(dir, 'stopped');
    writeFileSync(script, FIXTURE);
    const r = spawnSync(process.execPath, ['--import', GC_PROBE, script], {
      encoding: 'utf8',
      timeout: 20_000,
      env: { ...process.env, WGTS_GCPROBE_DIR: dir, FIXTURE_MARK: mark },
    });
    assert.equal(r.status, 0, r.stderr);
    const m = /^child (\d+)$/m.exec(r.stdout);
    assert.ok(m, r.stdout);
    child = Number(m[1]);
    // The parent had the probe too (it wrote on its own exit); the child has written nothing yet.
    assert.equal(readGc(dir, r.pid)?.final, true);
    assert.equal(readGc(dir, child), undefined);

    await new Promise((res) => setTimeout(res, 400));
    const snap = await snapshotGc(dir, child, 5000);
    assert.ok(snap, 'no snapshot after SIGUSR2');
    assert.equal(snap.pid, child);
    assert.equal(snap.seq, 1);
    assert.equal(snap.final, false);
    assert.ok(snap.count > 0 && snap.ms > 0, JSON.stringify(snap));
    assert.ok((snap.byKind.minor?.count ?? 0) > 0, JSON.stringify(snap.byKind));

    process.kill(child, 'SIGTERM');
    for (const end = Date.now() + 10_000; !gone(child) && Date.now() < end; ) await new Promise((res) => setTimeout(res, 20));
    assert.ok(gone(child), 'fixture did not exit on SIGTERM');
    // The fixture's own asynchronous stop ran to the end: the probe did not cut it short.
    assert.match(readFileSync(mark, 'utf8'), /^stopped 20000$/);
    const fin = readGc(dir, child);
    assert.ok(fin, 'no final file');
    assert.equal(fin.final, true);
    assert.equal(fin.seq, 2);
    const d = gcDelta(snap, fin);
    assert.ok(d.count >= 0 && d.ms >= 0, JSON.stringify(d));
    assert.equal(d.count, Object.values(d.byKind).reduce((n, k) => n + k.count, 0));
  } finally {
    if (child && !gone(child)) process.kill(child, 'SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the probe installs its handlers only with WGTS_GCPROBE_DIR set', () => {
  const listeners = (extra: Record<string, string>) => {
    const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
    if (!extra.WGTS_GCPROBE_DIR) delete env.WGTS_GCPROBE_DIR;
    const code = "process.stdout.write(process.listenerCount('SIGUSR2') + ' ' + process.listenerCount('exit'))";
    const r = spawnSync(process.execPath, ['--import', GC_PROBE, '-e', code], { encoding: 'utf8', timeout: 20_000, env });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout;
  };
  // node -e has exit listeners of its own: compare with and without the variable.
  const [sig0, exit0] = listeners({}).split(' ').map(Number);
  assert.equal(sig0, 0);
  const dir = mkdtempSync(join(tmpdir(), 'wgts-gcprobe-'));
  try {
    assert.equal(listeners({ WGTS_GCPROBE_DIR: dir }), `1 ${exit0 + 1}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
