// Taking packets off the TUN into the outbound slot arena (the kernel's xmit entry): each packet lands in a
// free slot at the payload offset, so it can be sealed where it lies, and its slot number goes to the ready
// queue. In offload mode (IFF_VNET_HDR) one read is a TCP or UDP super-packet of up to 64 KB, split into
// MTU-sized segments straight into free slots, checksums completed, so the rest of the path is unchanged.
// While a TCP stream (or a UDP_SEGMENT sender) runs, reads are readv(2) straight into slots laid out for the
// last super-packet's header length and gso_size, so only headers are copied (copying every byte from a stage
// cost ~6% of a 2-core machine moving 1.6 Gbit/s); a packet of another shape is gathered into the stage and
// split from there. With no stream running, a read goes into one slot, and only a super-packet to the stage.
// The TUN reader thread (reader.ts) runs it on a blocking fd; the control thread runs it itself on a
// non-blocking one from libuv readiness (uvpoll.ts). Out of free slots it stops, which pushes back on the
// TUN's own queue instead of growing memory; a read already taken waits in the stage for slots.

import { AEAD_TAG_SIZE, DATA_HEADER_SIZE } from '../constants.js';
import { META_LEN, type SlotArena } from '../queues/slots.js';
import type { SpscQueue } from '../queues/spsc.js';
import { E } from './libc.js'; // constants only
import { addressOf, readAt, readvAt } from './sys.js';
import { CMemory, IOVEC_SIZE } from './msghdr.js';
import { GRO_MAX_PACKET, parseVnetHdr, VNET_HDR_GSO_NONE, VNET_HDR_LEN, type VnetHdr } from '../dataplane/offload.js';
import { lastSplit, TSO_LAYOUT_MISMATCH, tsoSplit, tsoSplitScattered } from '../dataplane/tso.js';

/** read() results besides a fatal -errno: the TUN is empty, the read budget ran out, or no slot is free. */
export const EMPTY = 0;
export const BUDGET = 1;
export const NO_SLOTS = 2;

/** More segments than this from one read is refused (64 KB in 536-byte segments is 123). */
const MAX_SEGMENTS = 160;
const NO_SLOT = new Uint8Array(0);
/** Consecutive reads of plain packets after which the stream's layout is forgotten (reads go to one slot). */
const LAYOUT_IDLE_READS = 8;

export class TunIngest {
  private readonly stage: Buffer | null;
  private readonly stageAddr: number;
  private readonly arenaAddr: number;
  private readonly hdr: VnetHdr = { flags: 0, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 0, csumOffset: 0 };
  /** tsoSplit's output slots; unused entries are empty, so a split can never write past the slots taken. */
  private readonly outs: Uint8Array[] = new Array<Uint8Array>(MAX_SEGMENTS).fill(NO_SLOT);
  private readonly outLens = new Int32Array(MAX_SEGMENTS);
  /** Slots popped from the free queue and not yet filled, in order: taken[0..nTaken). */
  private readonly taken = new Int32Array(MAX_SEGMENTS);
  private nTaken = 0;
  /** Offload mode: bytes of a read waiting in the stage for enough free slots (0: none). */
  private pending = 0;
  private readonly room: number;
  /** Scatter reads: the iovecs, and where each taken slot's packet starts in the arena. */
  private readonly iov = new CMemory((MAX_SEGMENTS + 1) * IOVEC_SIZE);
  private readonly at = new Int32Array(MAX_SEGMENTS);
  /** The last TSO super-packet's IP + TCP header length and gso_size (0: read into the stage). */
  private layoutHl = 0;
  private layoutGso = 0;
  private plainReads = 0;
  /** Successful reads so far (a super-packet counts once). */
  reads = 0;

  constructor(
    private readonly fd: number,
    vnetHdr: boolean,
    private readonly arena: SlotArena,
    private readonly ready: SpscQueue,
    private readonly free: SpscQueue,
    /** Take the newest free slot, not the oldest: only on the control thread, the free queue's producer (SpscQueue.takeNewest). */
    private readonly newestFirst = false,
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

  /** Pops free slots until `want` are taken; false when the free queue runs dry first. */
  private take(want: number): boolean {
    while (this.nTaken < want) {
      const s = this.newestFirst ? this.free.takeNewest() : this.free.pop();
      if (s < 0) return false;
      this.taken[this.nTaken++] = s;
    }
    return true;
  }

  /**
   * The TUN is empty. On the control thread the slots taken for the next read go back to the free queue, in
   * order, so the slot the send path frees next (the packet just read) is the first one taken again.
   */
  private empty(): number {
    if (this.newestFirst) while (this.nTaken > 0) this.free.push(this.taken[--this.nTaken]);
    return EMPTY;
  }

  private readPlain(maxReads: number): number {
    const { arena, taken } = this;
    for (let i = 0; i < maxReads; i++) {
      if (!this.take(1)) return NO_SLOTS;
      const s = taken[0];
      const n = readAt(this.fd, this.arenaAddr + arena.offset(s) + DATA_HEADER_SIZE, this.room);
      if (n < 0) {
        if (n === -E.EINTR) continue;
        return n === -E.EAGAIN ? this.empty() : n;
      }
      this.nTaken = 0;
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
        const pieces = this.layoutGso ? this.planScatter() : this.planSingle();
        const n = pieces ? readvAt(this.fd, this.iov.base, pieces + 1) : readAt(this.fd, this.stageAddr, stage.length);
        if (n < 0) {
          if (n === -E.EINTR) continue;
          return n === -E.EAGAIN ? this.empty() : n;
        }
        this.reads++;
        if (n <= VNET_HDR_LEN || !parseVnetHdr(stage, 0, this.hdr)) continue;
        if (pieces && (this.layoutGso ? this.finishScatter(stage, n - VNET_HDR_LEN) : this.finishSingle(stage, n - VNET_HDR_LEN))) continue;
        this.pending = n - VNET_HDR_LEN;
      }
      if (!this.split(stage)) return NO_SLOTS;
    }
    return BUDGET;
  }

  /**
   * Takes enough slots for a 64 KB super-packet of the current layout and points the iovecs at them: the
   * virtio header into the stage, headers and the first segment's payload into the first slot, each next
   * gso_size bytes into the next slot behind room for its headers. 0 (read into the stage) when short of slots.
   */
  private planScatter(): number {
    const { taken, arena, iov, at } = this;
    const hl = this.layoutHl;
    const gso = this.layoutGso;
    const pieces = Math.ceil((GRO_MAX_PACKET - hl) / gso);
    if (!this.take(pieces)) return 0;
    iov.put64(0, this.stageAddr);
    iov.put64(8, VNET_HDR_LEN);
    for (let k = 0; k < pieces; k++) {
      const off = arena.offset(taken[k]) + DATA_HEADER_SIZE;
      at[k] = off;
      iov.put64((k + 1) * IOVEC_SIZE, this.arenaAddr + (k === 0 ? off : off + hl));
      iov.put64((k + 1) * IOVEC_SIZE + 8, k === 0 ? hl + gso : gso);
    }
    return pieces;
  }

  /**
   * No layout to scatter for (no stream running): the packet goes straight into one slot, the virtio header
   * into the stage, and whatever does not fit the slot into the stage behind room for the slot's part. A lone
   * packet (a ping) is then neither copied nor given a fresh view; a super-packet is gathered into the stage.
   */
  private planSingle(): number {
    if (!this.take(1)) return 0;
    const { iov, at } = this;
    const off = this.arena.offset(this.taken[0]) + DATA_HEADER_SIZE;
    at[0] = off;
    iov.put64(0, this.stageAddr);
    iov.put64(8, VNET_HDR_LEN);
    iov.put64(IOVEC_SIZE, this.arenaAddr + off);
    iov.put64(IOVEC_SIZE + 8, this.room);
    iov.put64(2 * IOVEC_SIZE, this.stageAddr + VNET_HDR_LEN + this.room);
    iov.put64(2 * IOVEC_SIZE + 8, GRO_MAX_PACKET - this.room);
    return 2;
  }

  /** A planSingle read of `len` packet bytes: published from its slot, or false once gathered for split(). */
  private finishSingle(stage: Buffer, len: number): boolean {
    if (len <= this.room) {
      const segs = tsoSplitScattered(this.arena.bytes, this.at, len, this.hdr, 0, this.room, this.outLens);
      if (segs !== TSO_LAYOUT_MISMATCH) {
        this.learn();
        if (segs > 0) this.publish(segs);
        return true; // malformed (segs < 0): the slot stays taken for the next read
      }
    }
    const a0 = this.at[0];
    const part = Math.min(len, this.room);
    // Once per super-packet, not per packet: the subarray is the only way to copy across two buffers.
    stage.set(this.arena.bytes.subarray(a0, a0 + part), VNET_HDR_LEN);
    return false;
  }

  /** A scatter read of `len` packet bytes: split in place, or false once gathered into the stage for split(). */
  private finishScatter(stage: Buffer, len: number): boolean {
    const { hdr, at } = this;
    const hl = this.layoutHl;
    const gso = this.layoutGso;
    const segs = tsoSplitScattered(this.arena.bytes, at, len, hdr, hl, gso, this.outLens);
    if (segs === TSO_LAYOUT_MISMATCH) {
      const bytes = this.arena.bytes;
      let done = Math.min(len, hl + gso);
      stage.set(bytes.subarray(at[0], at[0] + done), VNET_HDR_LEN);
      for (let k = 1; done < len; k++) {
        const c = Math.min(gso, len - done);
        stage.set(bytes.subarray(at[k] + hl, at[k] + hl + c), VNET_HDR_LEN + done);
        done += c;
      }
      return false;
    }
    this.learn();
    if (segs <= 0) return true; // malformed: the slots stay taken for the next read
    this.publish(segs);
    return true;
  }

  /** Remembers the layout of the super-packet just split for the next read; forgets it after plain reads. */
  private learn(): void {
    const { hl, gso } = lastSplit;
    // The same stores whatever the read was: a path that a TCP stream never took would be a deoptimisation
    // in wait for the first ping after it.
    this.plainReads = gso === 0 ? this.plainReads + 1 : 0;
    const fits = gso !== 0 && hl + gso <= this.room && Math.ceil((GRO_MAX_PACKET - hl) / gso) <= MAX_SEGMENTS;
    const keep = gso === 0 && this.plainReads < LAYOUT_IDLE_READS;
    this.layoutHl = keep ? this.layoutHl : fits ? hl : 0;
    this.layoutGso = keep ? this.layoutGso : fits ? gso : 0;
  }

  /** The first `segs` taken slots hold packets: to the ready queue. */
  private publish(segs: number): void {
    const { taken, arena } = this;
    for (let i = 0; i < segs; i++) {
      arena.set(taken[i], META_LEN, this.outLens[i]);
      this.ready.push(taken[i]); // never full: it holds every slot there is
    }
    taken.copyWithin(0, segs, this.nTaken);
    this.nTaken -= segs;
    this.ready.wake();
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
    if (!this.take(want)) return false;
    this.pending = 0;
    for (let i = 0; i < want; i++) outs[i] = arena.slot(taken[i]).bytes;
    const segs = tsoSplit(stage, VNET_HDR_LEN, len, hdr, outs, DATA_HEADER_SIZE, this.outLens);
    for (let i = 0; i < want; i++) outs[i] = NO_SLOT;
    this.learn();
    if (segs <= 0) return true; // malformed: the slots stay taken for the next read
    this.publish(segs);
    return true;
  }
}
