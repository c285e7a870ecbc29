// Taking packets off the TUN into the outbound slot arena (the kernel's xmit entry): each packet lands in a
// free slot at the payload offset, so it can be sealed where it lies, and its slot number goes to the ready
// queue. In offload mode (IFF_VNET_HDR) one read is a super-packet of up to 64 KB that is split into
// MTU-sized segments straight into free slots, checksums completed, so the rest of the path is unchanged.
// The TUN reader thread (reader.ts) runs it on a blocking fd; the control thread runs it itself on a
// non-blocking one from libuv readiness (uvpoll.ts). Out of free slots it stops, which pushes back on the
// TUN's own queue instead of growing memory; a read already taken waits in the stage for slots.

import { AEAD_TAG_SIZE, DATA_HEADER_SIZE } from '../constants.js';
import { META_LEN, type SlotArena } from '../queues/slots.js';
import type { SpscQueue } from '../queues/spsc.js';
import { E } from './libc.js'; // constants only
import { addressOf, readAt } from './sys.js';
import { GRO_MAX_PACKET, parseVnetHdr, tsoSplit, VNET_HDR_GSO_NONE, VNET_HDR_LEN, type VnetHdr } from '../dataplane/offload.js';

/** read() results besides a fatal -errno: the TUN is empty, the read budget ran out, or no slot is free. */
export const EMPTY = 0;
export const BUDGET = 1;
export const NO_SLOTS = 2;

/** More segments than this from one read is refused (64 KB in 536-byte segments is 123). */
const MAX_SEGMENTS = 160;

export class TunIngest {
  private readonly stage: Buffer | null;
  private readonly stageAddr: number;
  private readonly arenaAddr: number;
  private readonly hdr: VnetHdr = { flags: 0, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 0, csumOffset: 0 };
  private readonly outs: Uint8Array[] = [];
  private readonly outLens = new Int32Array(MAX_SEGMENTS);
  private readonly taken: number[] = []; // slots popped from the free queue and not yet filled
  /** Offload mode: bytes of a read waiting in the stage for enough free slots (0: none). */
  private pending = 0;
  private readonly room: number;
  /** Successful reads so far (a super-packet counts once). */
  reads = 0;

  constructor(
    private readonly fd: number,
    vnetHdr: boolean,
    private readonly arena: SlotArena,
    private readonly ready: SpscQueue,
    private readonly free: SpscQueue,
  ) {
    this.stage = vnetHdr ? Buffer.alloc(VNET_HDR_LEN + GRO_MAX_PACKET) : null;
    this.stageAddr = this.stage ? addressOf(this.stage) : 0;
    this.arenaAddr = addressOf(arena.bytes);
    this.room = arena.slotSize - DATA_HEADER_SIZE - AEAD_TAG_SIZE - 16; // header, tag and padding
  }

  /** A read waits in the stage for free slots: its packets would be lost if this reader stopped now. */
  get holding(): boolean {
    return this.pending !== 0;
  }

  /**
   * Up to `maxReads` reads; every packet read is in the ready queue (and its consumer woken) on return.
   * Returns EMPTY (EAGAIN), BUDGET, NO_SLOTS, or a fatal -errno (-EBADFD: the interface was deleted).
   */
  read(maxReads: number): number {
    return this.stage ? this.readOffload(this.stage, maxReads) : this.readPlain(maxReads);
  }

  private readPlain(maxReads: number): number {
    const { arena, taken } = this;
    for (let i = 0; i < maxReads; i++) {
      if (taken.length === 0) {
        const s = this.free.pop();
        if (s < 0) return NO_SLOTS;
        taken.push(s);
      }
      const s = taken[0];
      const n = readAt(this.fd, this.arenaAddr + arena.offset(s) + DATA_HEADER_SIZE, this.room);
      if (n < 0) {
        if (n === -E.EINTR) continue;
        return n === -E.EAGAIN ? EMPTY : n;
      }
      taken.pop();
      this.reads++;
      arena.set(s, META_LEN, n);
      this.ready.push(s); // never full: it holds every slot there is
      this.ready.wake();
    }
    return BUDGET;
  }

  private readOffload(stage: Buffer, maxReads: number): number {
    for (let i = 0; i < maxReads; i++) {
      if (this.pending === 0) {
        const n = readAt(this.fd, this.stageAddr, stage.length);
        if (n < 0) {
          if (n === -E.EINTR) continue;
          return n === -E.EAGAIN ? EMPTY : n;
        }
        this.reads++;
        if (n <= VNET_HDR_LEN || !parseVnetHdr(stage, 0, this.hdr)) continue;
        this.pending = n - VNET_HDR_LEN;
      }
      if (!this.split(stage)) return NO_SLOTS;
    }
    return BUDGET;
  }

  /** Splits the pending read into free slots; false (and the read kept) while too few slots are free. */
  private split(stage: Buffer): boolean {
    const { hdr, taken, arena, outs } = this;
    const len = this.pending;
    const want = hdr.gsoType === VNET_HDR_GSO_NONE || hdr.gsoSize === 0 ? 1 : Math.ceil(len / hdr.gsoSize) + 1;
    if (want > MAX_SEGMENTS) {
      this.pending = 0;
      return true;
    }
    while (taken.length < want) {
      const s = this.free.pop();
      if (s < 0) return false;
      taken.push(s);
    }
    this.pending = 0;
    outs.length = want;
    for (let i = 0; i < want; i++) outs[i] = arena.slot(taken[i]).bytes;
    const segs = tsoSplit(stage, VNET_HDR_LEN, len, hdr, outs, DATA_HEADER_SIZE, this.outLens);
    if (segs <= 0) return true; // malformed: the slots stay taken for the next read
    for (let i = 0; i < segs; i++) {
      arena.set(taken[i], META_LEN, this.outLens[i]);
      this.ready.push(taken[i]); // never full: it holds every slot there is
    }
    taken.splice(0, segs);
    this.ready.wake();
    return true;
  }
}
