// Sealing or opening one batch of slots in place: what a crypto worker does per task, and what the control
// thread does itself for a tiny batch when no worker is busy (a worker wake-up costs ~0.3 ms when idle here,
// a 1420-byte seal ~2 us: a lone ping should not pay for a thread hop).

import type { CipherSuite } from '../crypto/suite.js';
import { openPayload, sealPayload } from '../dataplane/transport.js';
import { META_KEY, META_LEN, META_RESULT, type SlotArena } from '../queues/slots.js';
import type { KeyTable } from './keytable.js';

export interface CryptTask {
  op: 'seal' | 'open';
  /** Slot numbers in the outbound (seal) or inbound (open) arena. */
  slots: Int32Array;
  count: number;
  mtu: number;
}

export function cryptBatch(task: CryptTask, suite: CipherSuite, arena: SlotArena, keys: KeyTable): number {
  const { slots, count } = task;
  if (task.op === 'seal') {
    for (let i = 0; i < count; i++) {
      const s = slots[i];
      arena.set(s, META_RESULT, sealPayload(suite, keys.sendKey(arena.get(s, META_KEY)), arena.slot(s), arena.get(s, META_LEN), task.mtu));
    }
  } else {
    for (let i = 0; i < count; i++) {
      const s = slots[i];
      arena.set(s, META_RESULT, openPayload(suite, keys.receiveKey(arena.get(s, META_KEY)), arena.slot(s), arena.get(s, META_LEN)));
    }
  }
  return count;
}

/**
 * Slot-number lists for tasks, reused: a batch's list is given back once its task completed. An Int32Array of
 * a whole batch lives outside the JS heap, so a fresh one per task (per packet, for a lone ping) costs a
 * malloc, a free and the collector's bookkeeping on every hop.
 */
export class SlotLists {
  private readonly spare: Int32Array[] = [];
  constructor(private readonly size: number) {}

  take(): Int32Array {
    return this.spare.pop() ?? new Int32Array(this.size);
  }

  give(list: Int32Array): void {
    this.spare.push(list);
  }
}
