// The adaptive crypto pool samples the control thread's load only while batches run: an idle daemon must not
// wake four times a second to measure nothing (the kernel's crypt workers, too, only run when queued).

import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { SlotArena } from '../../src/queues/slots.js';
import { CryptPool } from '../../src/workers/pool.js';
import { KeyTable } from '../../src/workers/keytable.js';

const pool = new CryptPool(SlotArena.create(4, 2048), SlotArena.create(4, 2048), KeyTable.create(4), 1, 'adaptive');
after(() => pool.close());

/** An empty batch: it runs (inline, the pool being idle) and counts as traffic. */
function batch(): Promise<void> {
  return new Promise((resolve, reject) => pool.run({ op: 'seal', slots: new Int32Array(1), count: 0, mtu: 1420 }, (e) => (e ? reject(e) : resolve())));
}

test('the adaptive pool samples only while batches run: the first batch starts it, a period without any stops it', async () => {
  assert.equal(pool.sampling, false, 'a new pool has no timer');
  await batch();
  assert.equal(pool.sampling, true, 'the first batch starts sampling');
  // Batches every 50 ms: every 250 ms period has some, so sampling goes on.
  for (let i = 0; i < 16; i++) {
    await sleep(50);
    await batch();
  }
  assert.equal(pool.sampling, true, 'still sampling while batches run');
  // The baseline period, then one without batches: the timer is gone.
  await sleep(900);
  assert.equal(pool.sampling, false, 'an idle period stops sampling');
  await batch();
  assert.equal(pool.sampling, true, 'traffic starts it again');
});

test('the adaptive pool starts no worker for light traffic (workers start on load, as cmwq starts kworkers)', () => {
  // Runs after the sampling test above: 18 batches over ~2 s, all inline.
  assert.equal(pool.threads, 0, 'no worker thread was started');
  assert.equal(pool.stats.pooled, 0);
});

test('a saturated control thread with idle CPU elsewhere starts the workers, and batches then go to them', { timeout: 20_000 }, async () => {
  const busy = new CryptPool(SlotArena.create(64, 2048), SlotArena.create(64, 2048), KeyTable.create(4), 1, 'adaptive');
  try {
    const slots = new Int32Array(16); // 16 empty packets, more than INLINE_MAX: a batch the pool may take
    const until = performance.now() + 15_000;
    // Each turn spins 5 ms then runs a batch: the event loop is ~100% busy while the other core idles.
    while (busy.stats.pooled === 0 && performance.now() < until) {
      const end = performance.now() + 5;
      while (performance.now() < end);
      await new Promise<void>((resolve, reject) => busy.run({ op: 'seal', slots, count: 16, mtu: 1420 }, (e) => (e ? reject(e) : resolve())));
      await new Promise((r) => setImmediate(r));
    }
    assert.ok(busy.threads >= 1, `a worker was started (${busy.threads})`);
    assert.ok(busy.stats.pooled > 0, `batches went to it (${busy.stats.inline} inline before)`);
  } finally {
    await busy.close();
  }
});

test('policy pool starts its workers at once', async () => {
  const eager = new CryptPool(SlotArena.create(4, 2048), SlotArena.create(4, 2048), KeyTable.create(4), 2, 'pool');
  try {
    assert.equal(eager.threads, 2);
    await new Promise<void>((resolve, reject) => eager.run({ op: 'seal', slots: new Int32Array(8), count: 8, mtu: 1420 }, (e) => (e ? reject(e) : resolve())));
    assert.equal(eager.stats.pooled, 1, 'the batch ran in a worker');
  } finally {
    await eager.close();
  }
});
