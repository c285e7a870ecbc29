// Sealing or opening one batch of slots in place: what a crypto worker does per task, and what the control
// thread does itself for a tiny batch when no worker is busy (a worker wake-up costs ~0.3 ms when idle here,
// a 1420-byte seal ~2 us: a lone ping should not pay for a thread hop).

import type { CipherSuite } from '../crypto/suite.js';
import { AEAD_TAG_SIZE, DATA_HEADER_SIZE } from '../constants.js';
import { openPayload, paddedLength, sealPayload } from '../dataplane/transport.js';
import { META_KEY, META_LEN, META_RESULT, type SlotArena } from '../queues/slots.js';
import type { KeyTable } from './keytable.js';

export interface CryptTask {
  op: 'seal' | 'open';
  /** Slot numbers in the outbound (seal) or inbound (open) arena. */
  slots: Int32Array;
  count: number;
  mtu: number;
}

/**
 * Seals or opens the task's slots in place. `scratch` (the control thread only): a slot without payload views
 * of its packet's size is done in the arena's scratch slot instead, so that no view is made; outbound slots
 * rotate through the whole arena, and a lone ping would otherwise make two views in every slot it visits.
 */
export function cryptBatch(task: CryptTask, suite: CipherSuite, arena: SlotArena, keys: KeyTable, scratch = false): number {
  const { slots, count } = task;
  if (task.op === 'seal') {
    for (let i = 0; i < count; i++) {
      const s = slots[i];
      const len = arena.get(s, META_LEN);
      const key = keys.sendKey(arena.get(s, META_KEY));
      const pb = arena.slot(s);
      const padded = paddedLength(len, task.mtu);
      let out: number;
      if (!scratch || (pb.has(padded) && pb.has(padded + AEAD_TAG_SIZE))) out = sealPayload(suite, key, pb, len, task.mtu);
      else {
        const at = arena.offset(s);
        const tmp = arena.offset(arena.scratch);
        arena.bytes.copyWithin(tmp, at, at + DATA_HEADER_SIZE + len);
        out = sealPayload(suite, key, arena.slot(arena.scratch), len, task.mtu);
        arena.bytes.copyWithin(at, tmp, tmp + out);
      }
      arena.set(s, META_RESULT, out);
    }
  } else {
    for (let i = 0; i < count; i++) {
      const s = slots[i];
      const len = arena.get(s, META_LEN);
      const key = keys.receiveKey(arena.get(s, META_KEY));
      const pb = arena.slot(s);
      const n = len - DATA_HEADER_SIZE - AEAD_TAG_SIZE;
      let out: number;
      if (!scratch || (pb.has(n) && pb.has(n + AEAD_TAG_SIZE))) out = openPayload(suite, key, pb, len);
      else {
        const at = arena.offset(s);
        const tmp = arena.offset(arena.scratch);
        arena.bytes.copyWithin(tmp, at, at + len);
        out = openPayload(suite, key, arena.slot(arena.scratch), len);
        if (out > 0) arena.bytes.copyWithin(at + DATA_HEADER_SIZE, tmp + DATA_HEADER_SIZE, tmp + DATA_HEADER_SIZE + out);
      }
      arena.set(s, META_RESULT, out);
    }
  }
  return count;
}

/**
 * One crypto batch: the task itself, the peers its completion drains (each with what that completion needs of
 * it, such as the keypair its packets were sealed under) and the completion callback, made once per job so that
 * handing a batch to the pool creates no closure. Jobs are reused through Spares.
 */
export class CryptJob<P, V> implements CryptTask {
  readonly slots: Int32Array;
  count = 0;
  mtu = 0;
  seq = 0;
  readonly peers: P[] = [];
  readonly values: V[] = [];
  npeers = 0;
  readonly done: (err?: unknown) => void;

  constructor(
    readonly op: 'seal' | 'open',
    size: number,
    finish: (job: CryptJob<P, V>, err?: unknown) => void,
  ) {
    this.slots = new Int32Array(size);
    this.done = (err) => finish(this, err);
  }

  /** Adds a peer (and its value) unless it is in the batch already. */
  addPeer(peer: P, value: V): void {
    for (let i = 0; i < this.npeers; i++) if (this.peers[i] === peer) return;
    this.peers[this.npeers] = peer;
    this.values[this.npeers++] = value;
  }

  /** Empties the job and drops its references, so a removed peer is not kept alive by a spare job. */
  clear(): void {
    for (let i = 0; i < this.npeers; i++) {
      this.peers[i] = undefined as P;
      this.values[i] = undefined as V;
    }
    this.npeers = 0;
    this.count = 0;
  }
}

/**
 * Batch jobs, reused: a job (its slot list, its completion callback and what that callback needs) goes back
 * once its task completed. Made fresh per batch, they were garbage on every hop of a lone ping (a task object,
 * an Int32Array outside the JS heap, closures and arrays): ~1 KB a packet, a page fault every few packets.
 */
export class Spares<J> {
  /** A stack that only grows: push and pop on a JS array reallocate its store when its length crosses 0. */
  private readonly spare: (J | undefined)[] = [];
  private top = 0;
  constructor(private readonly make: () => J) {}

  take(): J {
    if (this.top === 0) return this.make();
    const job = this.spare[--this.top]!;
    this.spare[this.top] = undefined;
    return job;
  }

  give(job: J): void {
    if (this.top === this.spare.length) this.spare.push(job);
    else this.spare[this.top] = job;
    this.top++;
  }
}
