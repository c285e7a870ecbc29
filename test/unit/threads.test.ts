// Unit tests for src/threads.ts: node's helper threads go to SCHED_BATCH, read back from the kernel
// (/proc/self/task/<tid>/stat, field 41 "policy"); the main thread and threads started later keep SCHED_OTHER.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { otherThreads, SCHED_BATCH, SCHED_OTHER, setPolicy } from '../../src/threads.js';
import { threadPolicy } from '../helpers/procstat.js';

const policyOf = (tid: number): number => threadPolicy('self', tid);

test('node has helper threads before any of ours start, and the main thread is not among them', () => {
  const helpers = otherThreads();
  assert.ok(helpers.length >= 4, `V8's platform workers at least: ${helpers.length}`); // node's default pool is 4
  assert.ok(!helpers.includes(process.pid));
});

test('setPolicy puts each helper under SCHED_BATCH and leaves the main thread and later threads alone', async () => {
  const helpers = otherThreads();
  try {
    assert.equal(setPolicy(helpers, SCHED_BATCH), helpers.length);
    for (const tid of helpers) assert.equal(policyOf(tid), SCHED_BATCH, `thread ${tid}`);
    assert.equal(policyOf(process.pid), SCHED_OTHER);
    // A thread the main thread starts afterwards inherits the main thread's policy, not the helpers'.
    const w = new Worker('setInterval(() => {}, 1000)', { eval: true });
    await new Promise<void>((resolve) => w.once('online', () => resolve()));
    const later = otherThreads().filter((tid) => !helpers.includes(tid));
    assert.ok(later.length >= 1, 'the worker has a thread of its own');
    for (const tid of later) assert.equal(policyOf(tid), SCHED_OTHER, `later thread ${tid}`);
    await w.terminate();
  } finally {
    assert.equal(setPolicy(helpers, SCHED_OTHER), helpers.length);
  }
  for (const tid of helpers) assert.equal(policyOf(tid), SCHED_OTHER);
});

test('a thread that has gone is skipped, not an error', () => {
  // Thread ids are below pid_max; one past the largest possible id never exists.
  const pidMax = Number(readFileSync('/proc/sys/kernel/pid_max', 'utf8'));
  assert.equal(setPolicy([pidMax + 1], SCHED_BATCH), 0);
});
