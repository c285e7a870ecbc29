// Per-peer serial queues (the kernel's per-peer tx/rx queues drained by the serial workers): packets enter in
// the order their nonces were assigned (outbound) or they arrived (inbound), crypto batches finish in any
// order, and each peer's packets leave strictly in entry order, each once its batch is done.

import { MAX_QUEUED_PACKETS } from '../constants.js';

/** Completion flags of in-flight crypto batches, by batch sequence number. */
export class BatchBoard {
  private seq = 0;
  private readonly done = new Uint8Array(1 << 14);

  /** A new batch's number (in flight until finish()). */
  open(): number {
    const s = this.seq++;
    this.done[s & (this.done.length - 1)] = 0;
    return s;
  }

  /** The number the next open() will return, for entries queued before their batch is dispatched. */
  peek(): number {
    this.done[this.seq & (this.done.length - 1)] = 0;
    return this.seq;
  }

  finish(seq: number): void {
    this.done[seq & (this.done.length - 1)] = 1;
  }

  isDone(seq: number): boolean {
    return this.done[seq & (this.done.length - 1)] === 1;
  }
}

export class SerialQueue {
  private readonly slots: Int32Array;
  private readonly batches: Int32Array;
  private head = 0;
  private tail = 0;

  constructor(readonly capacity = MAX_QUEUED_PACKETS) {
    this.slots = new Int32Array(capacity);
    this.batches = new Int32Array(capacity);
  }

  get size(): number {
    return this.tail - this.head;
  }

  /** False when full: the caller drops the packet, as a full ptr_ring does. */
  push(batch: number, slot: number): boolean {
    if (this.tail - this.head >= this.capacity) return false;
    const i = this.tail % this.capacity;
    this.slots[i] = slot;
    this.batches[i] = batch;
    this.tail++;
    return true;
  }

  /** Hands every slot at the head whose batch is done to `release`, in order; returns how many. */
  drain(board: BatchBoard, release: (slot: number) => void): number {
    let n = 0;
    while (this.head < this.tail) {
      const i = this.head % this.capacity;
      if (!board.isDone(this.batches[i])) break;
      this.head++;
      n++;
      release(this.slots[i]);
    }
    return n;
  }

  /**
   * drain() for the packet paths: the slots go to out[at..] in order, and the count comes back. No callback,
   * so a lone packet's completion creates no closure. `out` must have room for every queued slot.
   */
  drainInto(board: BatchBoard, out: Int32Array, at: number): number {
    let n = 0;
    while (this.head < this.tail) {
      const i = this.head % this.capacity;
      if (!board.isDone(this.batches[i])) break;
      this.head++;
      out[at + n++] = this.slots[i];
    }
    return n;
  }
}

/** One serial queue per peer, made on first use and gone with the peer object (a removed peer's included). */
export class PeerQueues<P extends object> {
  private readonly queues = new WeakMap<P, SerialQueue>();

  get(peer: P): SerialQueue {
    let q = this.queues.get(peer);
    if (!q) {
      q = new SerialQueue();
      this.queues.set(peer, q);
    }
    return q;
  }
}
