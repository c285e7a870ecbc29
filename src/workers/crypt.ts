// The crypto worker (the kernel's per-CPU wg-crypt workers): a Piscina task seals or opens a whole batch of
// packet slots in place with sodium-native. One task per batch, never per packet: a task costs ~12 us here.
// Results go back in the slots' metadata; the control thread's serial queues release them in order.

import { workerData } from 'piscina';
import { defaultSuite } from '../crypto/index.js';
import { META_KEY, META_LEN, META_RESULT, SlotArena, type SlotArenaShape } from '../queues/slots.js';
import { openPayload, sealPayload } from '../dataplane/transport.js';
import { KeyTable } from './keytable.js';

export interface CryptWorkerData {
  outbound: SlotArenaShape;
  inbound: SlotArenaShape;
  keys: SharedArrayBuffer;
}

export interface CryptTask {
  op: 'seal' | 'open';
  /** Slot numbers in the outbound (seal) or inbound (open) arena. */
  slots: Int32Array;
  count: number;
  mtu: number;
}

const data = workerData as CryptWorkerData;
const suite = defaultSuite();
const outbound = SlotArena.attach(data.outbound);
const inbound = SlotArena.attach(data.inbound);
const keys = new KeyTable(data.keys);

export default function crypt(task: CryptTask): number {
  const { slots, count } = task;
  if (task.op === 'seal') {
    for (let i = 0; i < count; i++) {
      const s = slots[i];
      const n = sealPayload(suite, keys.sendKey(outbound.get(s, META_KEY)), outbound.slot(s), outbound.get(s, META_LEN), task.mtu);
      outbound.set(s, META_RESULT, n);
    }
  } else {
    for (let i = 0; i < count; i++) {
      const s = slots[i];
      const n = openPayload(suite, keys.receiveKey(inbound.get(s, META_KEY)), inbound.slot(s), inbound.get(s, META_LEN));
      inbound.set(s, META_RESULT, n);
    }
  }
  return count;
}
