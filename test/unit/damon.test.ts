// The bench's record of the host's DAMON monitors (bench/damon.ts): read from a sysfs-shaped tree of real
// files, a missing tree, and this machine's own /sys when it has one.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DAMON_SYSFS, describeDamon, readDamon } from '../../bench/damon.js';

function put(root: string, rel: string, text: string): void {
  const p = join(root, rel);
  mkdirSync(join(p, '..'), { recursive: true });
  writeFileSync(p, `${text}\n`);
}

test('readDamon: states, address spaces, sampling intervals and scheme actions', () => {
  const root = mkdtempSync(join(tmpdir(), 'wgts-damon-'));
  try {
    put(root, 'nr_kdamonds', '2');
    put(root, '0/state', 'on');
    put(root, '0/contexts/nr_contexts', '1');
    put(root, '0/contexts/0/operations', 'paddr');
    put(root, '0/contexts/0/monitoring_attrs/intervals/sample_us', '500000');
    put(root, '0/contexts/0/schemes/0/action', 'pageout');
    put(root, '0/contexts/0/schemes/1/action', 'stat');
    put(root, '1/state', 'off');
    put(root, '1/contexts/0/operations', 'vaddr');
    put(root, '1/contexts/0/monitoring_attrs/intervals/sample_us', '5000');
    const m = readDamon(root);
    assert.deepEqual(m, [
      { index: 0, state: 'on', operations: ['paddr'], sampleUs: [500000], actions: [['pageout', 'stat']] },
      { index: 1, state: 'off', operations: ['vaddr'], sampleUs: [5000], actions: [[]] },
    ]);
    assert.equal(describeDamon(m), 'host memory monitor (DAMON): kdamond 0 (paddr sampled every 500 ms, schemes: pageout stat)');
    m[0].state = 'off';
    assert.equal(describeDamon(m), 'host memory monitor (DAMON): none running');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('readDamon: no sysfs tree means no monitors, and an unreadable interval is reported as unknown', () => {
  assert.deepEqual(readDamon('/nonexistent/wgts/damon'), []);
  const root = mkdtempSync(join(tmpdir(), 'wgts-damon-'));
  try {
    put(root, '0/state', 'on');
    put(root, '0/contexts/0/operations', 'paddr');
    const m = readDamon(root);
    assert.equal(m.length, 1);
    assert.ok(Number.isNaN(m[0].sampleUs[0]));
    assert.equal(describeDamon(m), 'host memory monitor (DAMON): kdamond 0 (paddr sampled every ? ms)');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('readDamon: this machine, one entry per kdamond directory', () => {
  const dirs = existsSync(DAMON_SYSFS) ? readdirSync(DAMON_SYSFS).filter((n) => /^\d+$/.test(n)) : [];
  const m = readDamon();
  assert.equal(m.length, dirs.length);
  for (const k of m) assert.ok(['on', 'off'].includes(k.state), `kdamond ${k.index} state ${k.state}`);
});
