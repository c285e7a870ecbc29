// TUN writes for the receive path. Without a virtio header each packet is one write(2). With one (offload
// mode) the packets of a receive batch go through GRO: consecutive segments of a TCP flow become one
// super-packet and one write, which spares the kernel's stack most of its per-packet work (offload.ts).

import { GRO_MAX_PACKET, GroTable, VNET_HDR_LEN } from '../dataplane/offload.js';
import type { TunDevice } from './tun.js';

const GRO_SLOTS = 64;

export class TunWriter {
  private readonly gro: GroTable | null;
  private readonly lens = new Int32Array(GRO_SLOTS);
  private readonly slots: Buffer[];
  private pending = false;

  constructor(
    private readonly tun: TunDevice,
    private readonly onError: (errno: number) => void,
  ) {
    this.slots = tun.vnetHdr ? Array.from({ length: GRO_SLOTS }, () => Buffer.alloc(VNET_HDR_LEN + GRO_MAX_PACKET)) : [];
    // Everything written here was opened under an AEAD tag: like the kernel module (CHECKSUM_UNNECESSARY on
    // every decrypted packet), inner TCP checksums are not re-verified and single packets say DATA_VALID.
    this.gro = tun.vnetHdr ? new GroTable(this.slots, 0, 64, { verifyTcp: false, dataValid: true }) : null;
  }

  /** Queues (offload mode) or writes one IP packet. Call flush() at the end of the batch. */
  write(buf: Uint8Array, off: number, len: number): void {
    const gro = this.gro;
    if (!gro) {
      this.emit(buf, off, len);
      return;
    }
    this.pending = true;
    if (gro.push(buf, off, len)) return;
    this.flush();
    this.pending = true;
    gro.push(buf, off, len);
  }

  flush(): void {
    if (!this.gro || !this.pending) return;
    this.pending = false;
    const n = this.gro.flush(this.lens);
    for (let i = 0; i < n; i++) this.emit(this.slots[i], 0, this.lens[i]);
  }

  private emit(buf: Uint8Array, off: number, len: number): void {
    const r = this.tun.write(buf, off, len);
    if (r < 0) this.onError(-r);
  }
}
