// TUN writes for the receive path. Without a virtio header each packet is one write(2). With one (offload
// mode) the packets of a receive batch go through GRO: consecutive segments of a TCP flow become one
// super-packet and one write, which spares the kernel's stack most of its per-packet work (offload.ts).
// Packets opened in the inbound slot arena are not copied at all: each super-packet is one writev(2) of its
// first packet (virtio header in front, in the slot's spent WireGuard header) and its followers' payloads,
// where copying them into a 64 KB buffer first was ~4% of a 2-core machine moving 1.6 Gbit/s.

import { GRO_MAX_PACKET, GroTable, VNET_HDR_F_DATA_VALID, VNET_HDR_LEN } from '../dataplane/offload.js';
import { CMemory, IOVEC_SIZE } from './msghdr.js';
import { zeroRange } from '../crypto/suite.js';
import { addressOf } from './sys.js';
import type { TunDevice } from './tun.js';

const GRO_SLOTS = 64;
/** Payload pieces per batch in gather mode; one writev never passes IOV_MAX (1024) iovecs. */
const GATHER_PIECES = 512;

export class TunWriter {
  private readonly gro: GroTable | null;
  private readonly lens = new Int32Array(GRO_SLOTS);
  private readonly slots: Buffer[] = [];
  /** Gather mode: the arena whose packets are written in place, its address, and the iovecs. */
  private readonly arenaAddr: number = 0;
  private readonly iov: CMemory | null = null;
  /** A packet from outside the arena, with its virtio header, in gather mode. */
  private readonly single: Buffer | null = null;
  private pending = false;

  constructor(
    private readonly tun: TunDevice,
    private readonly onError: (errno: number) => void,
    /** Packets written from here (with 10 spare bytes before each) go out without a copy. */
    private readonly arena: Uint8Array | null = null,
  ) {
    // Everything written here was opened under an AEAD tag: like the kernel module (CHECKSUM_UNNECESSARY on
    // every decrypted packet), inner TCP checksums are not re-verified and single packets say DATA_VALID.
    const opts = { verifyTcp: false, dataValid: true };
    if (!tun.vnetHdr) {
      this.gro = null;
    } else if (arena && tun.writev) {
      this.arenaAddr = addressOf(arena);
      this.iov = new CMemory((GATHER_PIECES + 1) * IOVEC_SIZE);
      this.single = Buffer.alloc(VNET_HDR_LEN + GRO_MAX_PACKET);
      this.gro = new GroTable({ gather: GRO_SLOTS, pieces: GATHER_PIECES }, 0, 64, opts);
    } else {
      this.slots = Array.from({ length: GRO_SLOTS }, () => Buffer.alloc(VNET_HDR_LEN + GRO_MAX_PACKET));
      this.gro = new GroTable(this.slots, 0, 64, opts);
    }
  }

  /** Queues (offload mode) or writes one IP packet. Call flush() at the end of the batch. */
  write(buf: Uint8Array, off: number, len: number): void {
    const gro = this.gro;
    if (!gro) {
      this.emit(buf, off, len);
      return;
    }
    if (this.single && (buf !== this.arena || off < VNET_HDR_LEN)) {
      // Not in the arena: written on its own, after what is queued so the order holds.
      this.flush();
      const b = this.single;
      zeroRange(b, 0, VNET_HDR_LEN);
      b[0] = VNET_HDR_F_DATA_VALID;
      b.set(buf.subarray(off, off + len), VNET_HDR_LEN);
      this.emit(b, 0, VNET_HDR_LEN + len);
      return;
    }
    this.pending = true;
    if (gro.push(buf, off, len)) return;
    this.flush();
    this.pending = true;
    gro.push(buf, off, len);
  }

  flush(): void {
    const gro = this.gro;
    if (!gro || !this.pending) return;
    this.pending = false;
    const n = gro.flush(this.lens);
    const iov = this.iov;
    if (!iov) {
      for (let i = 0; i < n; i++) this.emit(this.slots[i], 0, this.lens[i]);
      return;
    }
    for (let s = 0; s < n; s++) {
      iov.put64(0, this.arenaAddr + gro.at[s] - VNET_HDR_LEN);
      iov.put64(8, VNET_HDR_LEN + gro.first[s]);
      let count = 1;
      for (let q = gro.pieceHead[s]; q >= 0; q = gro.pieceNext[q], count++) {
        iov.put64(count * IOVEC_SIZE, this.arenaAddr + gro.pieceOff[q]);
        iov.put64(count * IOVEC_SIZE + 8, gro.pieceLen[q]);
      }
      const r = this.tun.writev!(iov.base, count);
      if (r < 0) this.onError(-r);
    }
  }

  private emit(buf: Uint8Array, off: number, len: number): void {
    const r = this.tun.write(buf, off, len);
    if (r < 0) this.onError(-r);
  }
}
