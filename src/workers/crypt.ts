// The crypto worker (the kernel's per-CPU wg-crypt workers): a Piscina task seals or opens a whole batch of
// packet slots in place with sodium-native. One task per batch, never per packet: a hand-off costs tens of
// microseconds here. Results go back in the slots' metadata; the control thread's serial queues release them.

import { workerData } from 'piscina';
import { defaultSuite } from '../crypto/index.js';
import { SlotArena, type SlotArenaShape } from '../queues/slots.js';
import { cryptBatch, type CryptTask } from './batch.js';
import { KeyTable } from './keytable.js';

export interface CryptWorkerData {
  outbound: SlotArenaShape;
  inbound: SlotArenaShape;
  keys: SharedArrayBuffer;
  /** Test-only (WGTS_TEST_CRASH_WORKER, see pool.ts): [batch N to die on, batches started, every Nth?]. */
  crash?: Int32Array;
}

const data = workerData as CryptWorkerData;
const suite = defaultSuite();
const outbound = SlotArena.attach(data.outbound);
const inbound = SlotArena.attach(data.inbound);
const keys = new KeyTable(data.keys);

export default function crypt(task: CryptTask): number {
  // process.exit in a worker thread ends that thread alone, abruptly, as a crash would: no reply, no cleanup.
  // The pool's start-up no-op (count 0) is not a batch.
  if (data.crash && task.count > 0) {
    const n = Atomics.add(data.crash, 1, 1) + 1;
    if (data.crash[2] ? n % data.crash[0] === 0 : n === data.crash[0]) process.exit(1);
  }
  return cryptBatch(task, suite, task.op === 'seal' ? outbound : inbound, keys);
}
