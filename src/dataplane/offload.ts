// TUN offload packet logic (no I/O): the virtio-net header (virtio 1.2 spec 5.1.6, struct virtio_net_hdr as
// Linux TUN uses it with IFF_VNET_HDR) and receive-side coalescing (GRO) of TCP segments into super-packets
// for one TUN write (segmentation of what we read is tso.ts). TCP per RFC 9293, IPv4 RFC 791, IPv6 RFC 8200;
// the model is the kernel's tcp_gro_receive and wireguard-go's tun/offload.

import { finish, fold, ipv4HeaderChecksum, sum16 } from './checksum.js';
import { zeroRange } from '../crypto/suite.js';

/** Size of struct virtio_net_hdr (without num_buffers): the TUN default for IFF_VNET_HDR. */
export const VNET_HDR_LEN = 10;

export const VNET_HDR_F_NEEDS_CSUM = 1;
export const VNET_HDR_F_DATA_VALID = 2;

export const VNET_HDR_GSO_NONE = 0;
export const VNET_HDR_GSO_TCPV4 = 1;
export const VNET_HDR_GSO_UDP = 3;
export const VNET_HDR_GSO_TCPV6 = 4;
/** UDP_SEGMENT super-packets (USO): one UDP header per gso_size of payload, IPv4 or IPv6 by the packet. */
export const VNET_HDR_GSO_UDP_L4 = 5;
export const VNET_HDR_GSO_ECN = 0x80;

/** Largest IP packet a coalesced super-packet may become (IPv4 total length / what a TUN write takes). */
export const GRO_MAX_PACKET = 65535;

const TCP_PSH = 0x08;
const TCP_ACK = 0x10;
/** A constant, not `TCP_ACK | TCP_PSH` in classify(): that operation ran only for flags other than a bare ACK,
 * which a sender's receive path first met at its transfer's end, and it deoptimised classify() there (traced). */
const TCP_ACK_PSH = TCP_ACK | TCP_PSH;
const PROTO_TCP = 6;

/** struct virtio_net_hdr, decoded. gsoType keeps the ECN bit (0x80) as read. */
export interface VnetHdr {
  flags: number;
  gsoType: number;
  hdrLen: number;
  gsoSize: number;
  csumStart: number;
  csumOffset: number;
}

const rd16 = (b: Uint8Array, i: number): number => (b[i] << 8) | b[i + 1];
const rd32 = (b: Uint8Array, i: number): number => ((b[i] << 24) | (b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3]) >>> 0;
function wr16(b: Uint8Array, i: number, v: number): void {
  b[i] = v >>> 8;
  b[i + 1] = v;
}

/**
 * Reads the virtio-net header at buf[off..off+10) (little-endian, as on the host). Returns null when it is
 * truncated or not something this code can handle: flag bits other than NEEDS_CSUM/DATA_VALID, a GSO type other
 * than NONE/TCPV4/UDP/TCPV6/UDP_L4, or ECN on NONE or UDP_L4. Pass `into` to reuse an object on the per-packet path.
 */
export function parseVnetHdr(buf: Uint8Array, off: number, into?: VnetHdr): VnetHdr | null {
  if (off < 0 || off + VNET_HDR_LEN > buf.length) return null;
  const flags = buf[off];
  const gsoType = buf[off + 1];
  if ((flags & ~(VNET_HDR_F_NEEDS_CSUM | VNET_HDR_F_DATA_VALID)) !== 0) return null;
  const base = gsoType & ~VNET_HDR_GSO_ECN;
  if (base !== VNET_HDR_GSO_NONE && base !== VNET_HDR_GSO_TCPV4 && base !== VNET_HDR_GSO_UDP && base !== VNET_HDR_GSO_TCPV6 && base !== VNET_HDR_GSO_UDP_L4) return null;
  if ((base === VNET_HDR_GSO_NONE || base === VNET_HDR_GSO_UDP_L4) && gsoType !== base) return null; // ECN is TCP's
  const h = into ?? { flags: 0, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 0, csumOffset: 0 };
  h.flags = flags;
  h.gsoType = gsoType;
  h.hdrLen = buf[off + 2] | (buf[off + 3] << 8);
  h.gsoSize = buf[off + 4] | (buf[off + 5] << 8);
  h.csumStart = buf[off + 6] | (buf[off + 7] << 8);
  h.csumOffset = buf[off + 8] | (buf[off + 9] << 8);
  return h;
}

/** Writes `h` as a virtio-net header at buf[off..off+10) (little-endian). */
export function writeVnetHdr(buf: Uint8Array, off: number, h: VnetHdr): void {
  buf[off] = h.flags;
  buf[off + 1] = h.gsoType;
  buf[off + 2] = h.hdrLen;
  buf[off + 3] = h.hdrLen >>> 8;
  buf[off + 4] = h.gsoSize;
  buf[off + 5] = h.gsoSize >>> 8;
  buf[off + 6] = h.csumStart;
  buf[off + 7] = h.csumStart >>> 8;
  buf[off + 8] = h.csumOffset;
  buf[off + 9] = h.csumOffset >>> 8;
}

/**
 * Finishes a partial checksum in place (the NEEDS_CSUM contract): the field at csumStart+csumOffset holds the
 * pseudo-header sum, and the one's-complement sum of everything from csumStart to the end, that field included,
 * complemented, is the checksum. Offsets are relative to the packet at buf[off]. False if they are out of range.
 */
export function completeChecksum(buf: Uint8Array, off: number, len: number, csumStart: number, csumOffset: number): boolean {
  const at = csumStart + csumOffset;
  if (csumStart >= len || at + 2 > len || off + len > buf.length) return false;
  // Summing with the field in place adds the pseudo-header sum it holds; same as zeroing it and adding it back.
  const c = finish(sum16(buf, off + csumStart, len - csumStart));
  // 0 and 0xffff are the same one's-complement value, but 0 means "no checksum" for UDP (as skb_checksum_help).
  wr16(buf, off + at, c === 0 ? 0xffff : c);
  return true;
}

/**
 * Receive-side coalescing (GRO) for packets about to be written to a TUN with IFF_VNET_HDR.
 *
 * Feed decrypted IP packets in arrival order with push(); at the end of a batch call flush(). Every packet is
 * copied once into a caller-provided slot: slot i holds, at out[i][outOff..outOff+outLens[i]), a virtio-net
 * header followed by the IP packet, i.e. exactly the bytes for one TUN write. A packet either extends the open
 * super-packet of its flow (only its payload is appended) or takes a new slot. Slots are used in arrival order
 * and a flow's packets are never reordered: any packet of a flow that cannot join its open super-packet closes
 * it, so everything after it lands in later slots.
 *
 * Coalescing rules (those of Linux tcp_gro_receive, slightly stricter so a re-split gives the original bytes):
 * IPv4 without options or fragmentation, or IPv6 whose next header is TCP; same addresses and ports; same
 * TOS/TTL/DF (IPv4) or first 4 bytes (traffic class, flow label) and hop limit (IPv6); same TCP header length
 * and option bytes (timestamps included: segments of one sender burst share TSval/TSecr, a changed value starts
 * a new super-packet), same ACK number, window and urgent pointer; flags exactly ACK or ACK|PSH (PSH closes
 * the super-packet: it must be last); seq == previous seq + previous payload; payload > 0 and <= the first
 * segment's (gso_size), a shorter one is last; IP total length <= 65535 and within the slot. Each packet's
 * IPv4 header checksum and TCP checksum are verified before it may coalesce: once merged, NEEDS_CSUM makes the
 * kernel compute a new checksum, which would hide a corrupt segment. Everything else passes through unchanged
 * with a zero virtio header.
 *
 * A coalesced packet is emitted with NEEDS_CSUM (csum_start = IP header length, csum_offset = 16, checksum
 * field = folded pseudo-header sum over the new TCP length), not DATA_VALID: it is the CHECKSUM_PARTIAL form
 * the kernel's own GSO path (and wireguard-go) uses, so if the stack forwards or re-segments the packet each
 * segment gets a correct checksum, while DATA_VALID would leave a stale checksum in the header. The header is
 * the first segment's, with PSH if the last had it and the IPv4 ID of the first.
 *
 * Gather mode (`out` null) copies nothing: a super-packet stays where its first packet lies, its virtio
 * header is written into the 10 bytes before that packet (which the caller must own), and appended payloads
 * are recorded as pieces (offset, length) in the pushed buffer, which must be the same one for every push; the
 * caller writes each super-packet with writev(2) from `at`/`first` and its pieces, before touching those bytes.
 */
export class GroTable {
  private readonly out: Uint8Array[] | null;
  private readonly outOff: number;
  /** Where each super-packet's IP packet starts, and in what buffer (the slot, or the pushed packet). */
  readonly at: Int32Array;
  private readonly base: Uint8Array[];
  /**
   * Gather mode: the first packet's own length, and the pieces appended to it in order, a list from
   * pieceHead[s] through pieceNext (-1 ends it): flows interleave, so one super-packet's pieces need not be
   * adjacent.
   */
  readonly first: Int32Array;
  readonly pieceHead: Int32Array;
  private readonly pieceTail: Int32Array;
  readonly pieceNext: Int32Array;
  readonly pieceOff: Int32Array;
  readonly pieceLen: Int32Array;
  private pieces = 0;
  private readonly pktLen: Int32Array; // IP packet length in each slot
  private readonly segs: Int32Array; // segments in the slot (0: a pass-through packet)
  private readonly gso: Int32Array; // first segment's payload length
  private readonly nextSeq: Float64Array; // seq the next segment must carry (u32 in a double)
  private readonly open: Int32Array; // slots whose super-packets can still grow
  private nOpen = 0;
  private used = 0;
  // Scratch results of classify(), kept on the instance so the per-packet path allocates nothing.
  private ipHl = 0;
  private thl = 0;

  /**
   * @param out slots; each needs outOff + VNET_HDR_LEN + the largest packet pushed, and up to
   *   outOff + VNET_HDR_LEN + GRO_MAX_PACKET for full coalescing (smaller slots just coalesce less).
   * @param outOff headroom before the virtio header in each slot.
   * @param maxOpen how many flows can be open at once; beyond that the oldest-listed is closed.
   */
  private readonly verifyTcp: boolean;
  private readonly passFlags: number;

  /**
   * opts.verifyTcp (default true): check each segment's TCP checksum before it may join. A WireGuard receive
   * path turns it off: the kernel module marks every decrypted packet CHECKSUM_UNNECESSARY because its
   * Poly1305 tag already proves the bytes are what the peer sealed, so the payload pass buys nothing there.
   * The IPv4 header checksum is always checked: the stack verifies it whatever the virtio header says.
   * opts.dataValid: pass-through packets get VIRTIO_NET_HDR_F_DATA_VALID (CHECKSUM_UNNECESSARY) for the
   * same reason.
   */
  constructor(out: Uint8Array[] | { gather: number; pieces: number }, outOff = 0, maxOpen = 64, opts: { verifyTcp?: boolean; dataValid?: boolean } = {}) {
    if (maxOpen < 1) throw new RangeError('maxOpen must be >= 1');
    this.verifyTcp = opts.verifyTcp ?? true;
    this.passFlags = opts.dataValid ? VNET_HDR_F_DATA_VALID : 0;
    const n = Array.isArray(out) ? out.length : out.gather;
    this.out = Array.isArray(out) ? out : null;
    this.outOff = outOff;
    this.base = Array.isArray(out) ? out : new Array<Uint8Array>(n);
    this.at = new Int32Array(n).fill(outOff + VNET_HDR_LEN);
    this.first = new Int32Array(n);
    this.pieceHead = new Int32Array(n);
    this.pieceTail = new Int32Array(n);
    const pieces = Array.isArray(out) ? 0 : out.pieces;
    this.pieceNext = new Int32Array(pieces);
    this.pieceOff = new Int32Array(pieces);
    this.pieceLen = new Int32Array(pieces);
    this.pktLen = new Int32Array(n);
    this.segs = new Int32Array(n);
    this.gso = new Int32Array(n);
    this.nextSeq = new Float64Array(n);
    this.open = new Int32Array(maxOpen);
  }

  /** Slots in use since the last flush. */
  get count(): number {
    return this.used;
  }

  /**
   * Adds the packet pkt[off..off+len). Returns false, consuming nothing, when it needs a new slot and none is
   * free: flush() and push it again. Throws RangeError if it cannot fit even an empty slot.
   */
  push(pkt: Uint8Array, off: number, len: number): boolean {
    const c = this.classify(pkt, off, len);
    if (c >= 0) {
      const k = this.findOpen(pkt, off);
      if (k >= 0 && c === 1 && this.tryAppend(k, pkt, off, len)) return true;
      // Same flow but it cannot join: later segments must not overtake this one. Called for k = -1 (no flow, a
      // no-op) too: a call that a stream makes only now and then deoptimised push(), on every packet's path.
      this.close(k);
    }
    if (this.used >= this.at.length) return false;
    const s = this.used;
    if (s === 0) this.pieces = 0;
    if (this.out) {
      const b = this.out[s];
      const p = this.outOff + VNET_HDR_LEN;
      if (b.length < p + len) throw new RangeError(`GRO slot ${s} too small for a ${len}-byte packet`);
      b.set(pkt.subarray(off, off + len), p);
    } else {
      if (off < VNET_HDR_LEN) throw new RangeError('GRO gather mode needs 10 bytes before each packet');
      this.base[s] = pkt;
      this.at[s] = off;
      this.first[s] = len;
      this.pieceHead[s] = this.pieceTail[s] = -1;
    }
    this.used++;
    const b = this.base[s];
    const h = this.at[s] - VNET_HDR_LEN;
    zeroRange(b, h, h + VNET_HDR_LEN);
    b[h] = this.passFlags; // a slot that coalesces gets its real header at flush
    this.pktLen[s] = len;
    this.segs[s] = c === 1 ? 1 : 0;
    if (c === 1 && (pkt[off + this.ipHl + 13] & TCP_PSH) === 0) {
      const pay = len - this.ipHl - this.thl;
      this.gso[s] = pay;
      this.nextSeq[s] = (rd32(pkt, off + this.ipHl + 4) + pay) >>> 0;
      if (this.nOpen === this.open.length) this.close(0);
      this.open[this.nOpen++] = s;
    }
    return true;
  }

  /**
   * Finishes every slot (lengths, IPv4 header checksum, pseudo-header checksum and virtio header of coalesced
   * ones), sets outLens[i] to the bytes to write from out[i][outOff], resets the table and returns the number
   * of slots to write.
   */
  flush(outLens: Int32Array): number {
    const n = this.used;
    if (outLens.length < n) throw new RangeError('outLens shorter than the slots in use');
    for (let s = 0; s < n; s++) {
      const len = this.pktLen[s];
      outLens[s] = VNET_HDR_LEN + len;
      if (this.segs[s] < 2) continue; // its pass-through header was written at push, packet unchanged
      const b = this.base[s];
      const p = this.at[s];
      const h = p - VNET_HDR_LEN;
      const v4 = b[p] >> 4 === 4;
      const ipHl = v4 ? 20 : 40;
      if (v4) {
        wr16(b, p + 2, len);
        wr16(b, p + 10, ipv4HeaderChecksum(b, p));
      } else {
        wr16(b, p + 4, len - 40);
      }
      const t = p + ipHl;
      const tcpLen = len - ipHl;
      wr16(b, t + 16, fold(sum16(b, v4 ? p + 12 : p + 8, v4 ? 8 : 32, PROTO_TCP + tcpLen)));
      b[h] = VNET_HDR_F_NEEDS_CSUM;
      b[h + 1] = v4 ? VNET_HDR_GSO_TCPV4 : VNET_HDR_GSO_TCPV6;
      const hdrLen = ipHl + (b[t + 12] >> 4) * 4;
      b[h + 2] = hdrLen;
      b[h + 3] = hdrLen >>> 8;
      b[h + 4] = this.gso[s];
      b[h + 5] = this.gso[s] >>> 8;
      b[h + 6] = ipHl;
      b[h + 7] = 0;
      b[h + 8] = 16;
      b[h + 9] = 0;
    }
    this.used = 0;
    this.nOpen = 0;
    return n;
  }

  /**
   * -1: not a TCP packet this table tracks (leaves flows alone); 0: TCP with a visible flow but not
   * coalescable; 1: may coalesce. Sets ipHl/thl for 0 and 1.
   */
  private classify(pkt: Uint8Array, off: number, len: number): number {
    if (len < 1 || off + len > pkt.length) return -1;
    const v = pkt[off] >> 4;
    let ok = true;
    let ipHl: number;
    if (v === 4) {
      if (len < 20) return -1;
      ipHl = (pkt[off] & 0x0f) * 4;
      if (ipHl < 20 || pkt[off + 9] !== PROTO_TCP || rd16(pkt, off + 2) !== len) return -1;
      const frag = rd16(pkt, off + 6);
      if ((frag & 0x1fff) !== 0) return -1; // a later fragment: no TCP header to see
      if ((frag & 0x2000) !== 0 || ipHl !== 20 || ipv4HeaderChecksum(pkt, off) !== rd16(pkt, off + 10)) ok = false;
    } else if (v === 6) {
      // Extension headers are not walked: such packets pass through as untracked.
      if (len < 40 || pkt[off + 6] !== PROTO_TCP || rd16(pkt, off + 4) + 40 !== len) return -1;
      ipHl = 40;
    } else {
      return -1;
    }
    if (len < ipHl + 20) return -1;
    const t = off + ipHl;
    const thl = (pkt[t + 12] >> 4) * 4;
    if (thl < 20 || ipHl + thl > len) return -1;
    this.ipHl = ipHl;
    this.thl = thl;
    if (!ok) return 0;
    const f = pkt[t + 13];
    if ((f !== TCP_ACK && f !== TCP_ACK_PSH) || len === ipHl + thl) return 0;
    if (!this.verifyTcp) return 1;
    const tcpLen = len - ipHl;
    const sum = sum16(pkt, v === 4 ? off + 12 : off + 8, v === 4 ? 8 : 32, PROTO_TCP + tcpLen);
    return fold(sum16(pkt, t, tcpLen, sum)) === 0xffff ? 1 : 0;
  }

  /** Index in `open` of the open super-packet with the packet's addresses and ports, or -1. */
  private findOpen(pkt: Uint8Array, off: number): number {
    const v4 = pkt[off] >> 4 === 4;
    const aOff = v4 ? 12 : 8;
    const aEnd = v4 ? 20 : 40;
    const pt = off + this.ipHl;
    next: for (let k = 0; k < this.nOpen; k++) {
      const b = this.base[this.open[k]];
      const p = this.at[this.open[k]];
      if (b[p] >> 4 !== pkt[off] >> 4) continue;
      for (let i = aOff; i < aEnd; i++) if (b[p + i] !== pkt[off + i]) continue next;
      const bt = p + aEnd; // open super-packets never have IP options, so TCP follows the fixed header
      if (b[bt] !== pkt[pt] || b[bt + 1] !== pkt[pt + 1] || b[bt + 2] !== pkt[pt + 2] || b[bt + 3] !== pkt[pt + 3]) continue;
      return k;
    }
    return -1;
  }

  /** Appends the (coalescable, same-flow) packet to open[k] if every rule holds; closes it when it must end. */
  private tryAppend(k: number, pkt: Uint8Array, off: number, len: number): boolean {
    const s = this.open[k];
    const b = this.base[s];
    const p = this.at[s];
    const ipHl = this.ipHl;
    const thl = this.thl;
    if (ipHl === 20) {
      // version/IHL, TOS, DF (flags byte: MF and offset are already known zero), TTL
      if (b[p] !== pkt[off] || b[p + 1] !== pkt[off + 1] || b[p + 6] !== pkt[off + 6] || b[p + 8] !== pkt[off + 8]) return false;
    } else {
      for (let i = 0; i < 4; i++) if (b[p + i] !== pkt[off + i]) return false;
      if (b[p + 7] !== pkt[off + 7]) return false;
    }
    const bt = p + ipHl;
    const pt = off + ipHl;
    if (b[bt + 12] !== pkt[pt + 12]) return false; // data offset (and reserved bits)
    for (let i = 8; i < 12; i++) if (b[bt + i] !== pkt[pt + i]) return false; // ACK number
    if (b[bt + 14] !== pkt[pt + 14] || b[bt + 15] !== pkt[pt + 15]) return false; // window
    if (b[bt + 18] !== pkt[pt + 18] || b[bt + 19] !== pkt[pt + 19]) return false; // urgent pointer
    for (let i = 20; i < thl; i++) if (b[bt + i] !== pkt[pt + i]) return false; // options
    if (rd32(pkt, pt + 4) !== this.nextSeq[s]) return false;
    const pay = len - ipHl - thl;
    const cur = this.pktLen[s];
    if (pay > this.gso[s] || cur + pay > GRO_MAX_PACKET) return false;
    if (this.out) {
      if (p + cur + pay > b.length) return false;
      b.set(pkt.subarray(pt + thl, off + len), p + cur);
    } else {
      if (pkt !== b || this.pieces === this.pieceOff.length) return false;
      const q = this.pieces++;
      this.pieceOff[q] = pt + thl;
      this.pieceLen[q] = pay;
      this.pieceNext[q] = -1;
      if (this.pieceTail[s] < 0) this.pieceHead[s] = q;
      else this.pieceNext[this.pieceTail[s]] = q;
      this.pieceTail[s] = q;
    }
    this.pktLen[s] = cur + pay;
    this.segs[s]++;
    this.nextSeq[s] = (this.nextSeq[s] + pay) >>> 0;
    const psh = (pkt[pt + 13] & TCP_PSH) !== 0;
    if (psh) b[bt + 13] |= TCP_PSH;
    this.close(psh || pay < this.gso[s] ? k : -1); // called every time, as in push()
    return true;
  }

  private close(k: number): void {
    if (k < 0 || k >= this.nOpen) return;
    this.open[k] = this.open[--this.nOpen];
  }
}
