// The per-peer staged queue: packets waiting for a usable keypair (protocol.md "Limits and timers",
// MAX_STAGED_PACKETS; the kernel's staged_packet_queue / wireguard-go's queue.staged). When full, the oldest
// packet is dropped: the newest traffic is the most likely to still matter once the handshake completes.

import { MAX_STAGED_PACKETS } from '../constants.js';

export class StagedQueue<T> {
  // A fixed ring, so push/drop-oldest stay O(1) under a flood of packets to an unreachable peer.
  private readonly ring: (T | undefined)[];
  private head = 0;
  private count = 0;
  private drops = 0;

  constructor(readonly capacity: number = MAX_STAGED_PACKETS) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`bad staged capacity ${capacity}`);
    this.ring = new Array<T | undefined>(capacity);
  }

  get size(): number {
    return this.count;
  }

  /**
   * Packets discarded without being sent: overflow drops plus everything removed by clear(). Both count
   * because the kernel adds both to the interface's tx_dropped.
   */
  get dropped(): number {
    return this.drops;
  }

  /** Appends a packet; returns the oldest packet it evicted to make room, if any. */
  push(pkt: T): T | undefined {
    let evicted: T | undefined;
    if (this.count === this.capacity) {
      evicted = this.shift();
      this.drops++;
    }
    this.ring[(this.head + this.count) % this.capacity] = pkt;
    this.count++;
    return evicted;
  }

  /** Takes every packet out, oldest first. */
  drain(): T[] {
    const out: T[] = new Array<T>(this.count);
    for (let i = 0; i < out.length; i++) out[i] = this.shift() as T;
    return out;
  }

  /**
   * Puts packets taken by drain() back in front of anything staged since (they are older), as the kernel does
   * when no valid key turned up after all. If that overfills the queue, the oldest are dropped as usual.
   */
  requeue(pkts: readonly T[]): void {
    const all = [...pkts, ...this.drain()];
    const excess = Math.max(0, all.length - this.capacity);
    this.drops += excess;
    for (let i = excess; i < all.length; i++) this.push(all[i]);
  }

  /** Discards everything (handshake gave up, keys zeroed, peer removed); returns how many were dropped. */
  clear(): number {
    const n = this.count;
    this.ring.fill(undefined);
    this.head = 0;
    this.count = 0;
    this.drops += n;
    return n;
  }

  private shift(): T | undefined {
    if (this.count === 0) return undefined;
    const v = this.ring[this.head];
    // Release the slot so a dropped packet's buffer can be collected.
    this.ring[this.head] = undefined;
    this.head = (this.head + 1) % this.capacity;
    this.count--;
    return v;
  }
}
