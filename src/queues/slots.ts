// Packet slots in a SharedArrayBuffer: the memory behind the ptr_ring stand-ins (protocol.md MAX_QUEUED_PACKETS).
// A packet lives in one slot from the TUN read (or UDP receive) to the UDP send (or TUN write); the TUN
// reader, the control thread and the crypto workers all see the same bytes, so nothing is copied between them.

import { PacketBuffer } from '../dataplane/transport.js';

/** Per-slot metadata words. */
export const META_LEN = 0; // input length: plaintext (outbound) or whole message (inbound)
export const META_RESULT = 1; // output length after seal/open, or -1 when the AEAD failed
export const META_KEY = 2; // key table slot the workers use
const META_WORDS = 4;

export interface SlotArenaShape {
  sab: SharedArrayBuffer;
  count: number;
  slotSize: number;
}

export class SlotArena {
  readonly bytes: Buffer;
  readonly meta: Int32Array;
  private readonly buffers: PacketBuffer[] = [];

  private constructor(readonly shape: SlotArenaShape) {
    const { sab, count, slotSize } = shape;
    this.meta = new Int32Array(sab, 0, count * META_WORDS);
    // One slot more than the count: the control thread's scratch slot (see scratch), never queued.
    this.bytes = Buffer.from(sab, count * META_WORDS * 4, (count + 1) * slotSize);
  }

  /** A new arena of `count` slots of `slotSize` bytes. */
  static create(count: number, slotSize: number): SlotArena {
    const sab = new SharedArrayBuffer(count * META_WORDS * 4 + (count + 1) * slotSize);
    return new SlotArena({ sab, count, slotSize });
  }

  /** The same arena seen from another thread. */
  static attach(shape: SlotArenaShape): SlotArena {
    return new SlotArena(shape);
  }

  get count(): number {
    return this.shape.count;
  }

  get slotSize(): number {
    return this.shape.slotSize;
  }

  /** The slot's bytes, with its payload views cached (see PacketBuffer). */
  slot(i: number): PacketBuffer {
    let pb = this.buffers[i];
    if (!pb) {
      const size = this.shape.slotSize;
      pb = new PacketBuffer(this.bytes.subarray(i * size, (i + 1) * size));
      this.buffers[i] = pb;
    }
    return pb;
  }

  /**
   * The scratch slot's number (one past the last queued slot): a packet whose slot has no payload views of its
   * size yet is sealed or opened there and copied back (copyWithin, inside one buffer), so a lone packet makes
   * no views. Used by the control thread only; workers make views, whose cost a whole batch shares.
   */
  get scratch(): number {
    return this.shape.count;
  }

  offset(i: number): number {
    return i * this.shape.slotSize;
  }

  get(i: number, word: number): number {
    return this.meta[i * META_WORDS + word];
  }

  set(i: number, word: number, v: number): void {
    this.meta[i * META_WORDS + word] = v;
  }
}
