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
