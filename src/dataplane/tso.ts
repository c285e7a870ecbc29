// Segmentation of the super-packets a TUN with IFF_VNET_HDR hands over, before encryption (no I/O): TSO (the
// kernel's tcp_gso_segment) and USO (__udp_gso_segment) done in userspace, as wireguard-go's tun/offload does.
// Two layouts: tsoSplit cuts a contiguous super-packet into slots (each segment copied), tsoSplitScattered
// finishes one that readv(2) already scattered into slots, so only the headers are copied. TCP per RFC 9293,
// UDP RFC 768, IPv4 RFC 791, IPv6 RFC 8200.

import { finish, ipv4HeaderChecksum, sum16 } from './checksum.js';
import {
  completeChecksum, VNET_HDR_F_NEEDS_CSUM, VNET_HDR_GSO_ECN, VNET_HDR_GSO_NONE, VNET_HDR_GSO_TCPV4, VNET_HDR_GSO_TCPV6,
  VNET_HDR_GSO_UDP_L4, type VnetHdr,
} from './offload.js';

const TCP_FIN = 0x01;
const TCP_PSH = 0x08;
const TCP_CWR = 0x80;
const PROTO_TCP = 6;
const PROTO_UDP = 17;

/** tsoSplitScattered: the read's header length or gso_size is not the layout the iovecs assumed. */
export const TSO_LAYOUT_MISMATCH = -2;

const rd16 = (b: Uint8Array, i: number): number => (b[i] << 8) | b[i + 1];
const rd32 = (b: Uint8Array, i: number): number => ((b[i] << 24) | (b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3]) >>> 0;
function wr16(b: Uint8Array, i: number, v: number): void {
  b[i] = v >>> 8;
  b[i + 1] = v;
}
function wr32(b: Uint8Array, i: number, v: number): void {
  b[i] = v >>> 24;
  b[i + 1] = v >>> 16;
  b[i + 2] = v >>> 8;
  b[i + 3] = v;
}

/** What every segment of one super-packet shares, read from its headers before any segment is written. */
interface Shape {
  v4: boolean;
  /** TCP (TSO), else UDP (USO). */
  tcp: boolean;
  ipHl: number;
  /** IP + TCP or UDP header bytes. */
  hl: number;
  gso: number;
  /** Payload bytes in all. */
  payload: number;
  /** Segment count. */
  n: number;
  /** The address part of the pseudo-header, summed. */
  addrSum: number;
  id: number;
  seq: number;
  flags: number;
}

/**
 * The layout of the last split: header length and gso_size of a valid TCP or UDP super-packet, or gso 0 when
 * the packet was no super-packet or was refused. The TUN reader learns its readv(2) layout from it, so the rule
 * for header lengths lives here alone.
 */
export const lastSplit = { hl: 0, gso: 0 };

/** One split runs at a time per thread, so one scratch shape serves them all without allocating. */
const shape: Shape = { v4: false, tcp: true, ipHl: 0, hl: 0, gso: 0, payload: 0, n: 0, addrSum: 0, id: 0, seq: 0, flags: 0 };

/**
 * Checks a TCPV4/TCPV6 or UDP_L4 super-packet whose headers are at b[off] and whose IP length fields must say
 * `len`, and fills `s`. False when it is not IPv4/IPv6 + TCP (or UDP) matching the GSO type, an IPv4 fragment,
 * IPv6 with extension headers, has a transport header beyond the packet, gso_size 0, no payload, inconsistent
 * csum_start/csum_offset, or a GSO type we never enable (UFO).
 */
function gsoShape(b: Uint8Array, off: number, len: number, hdr: VnetHdr, s: Shape): boolean {
  const base = hdr.gsoType & ~VNET_HDR_GSO_ECN;
  if (base !== VNET_HDR_GSO_TCPV4 && base !== VNET_HDR_GSO_TCPV6 && base !== VNET_HDR_GSO_UDP_L4) return false;
  s.tcp = base !== VNET_HDR_GSO_UDP_L4;
  // UDP_L4 says nothing of the IP version: the packet does.
  s.v4 = s.tcp ? base === VNET_HDR_GSO_TCPV4 : len > 0 && b[off] >> 4 === 4;
  const proto = s.tcp ? PROTO_TCP : PROTO_UDP;
  let addrOff: number;
  if (s.v4) {
    if (len < 20 || b[off] >> 4 !== 4) return false;
    s.ipHl = (b[off] & 0x0f) * 4;
    if (s.ipHl < 20 || b[off + 9] !== proto || rd16(b, off + 2) !== len) return false;
    if ((rd16(b, off + 6) & 0x3fff) !== 0) return false; // MF or a fragment offset: GSO never fragments
    addrOff = off + 12;
  } else {
    if (len < 40 || b[off] >> 4 !== 6) return false;
    if (b[off + 6] !== proto || rd16(b, off + 4) + 40 !== len) return false;
    s.ipHl = 40;
    addrOff = off + 8;
  }
  let l4: number;
  if (s.tcp) {
    if (len < s.ipHl + 20) return false;
    l4 = (b[off + s.ipHl + 12] >> 4) * 4;
    if (l4 < 20) return false;
  } else {
    l4 = 8;
  }
  s.hl = s.ipHl + l4;
  if (s.hl > len) return false;
  if ((hdr.flags & VNET_HDR_F_NEEDS_CSUM) !== 0 && (hdr.csumStart !== s.ipHl || hdr.csumOffset !== (s.tcp ? 16 : 6))) return false;
  s.gso = hdr.gsoSize;
  s.payload = len - s.hl;
  if (s.gso === 0 || s.payload === 0) return false;
  s.n = Math.ceil(s.payload / s.gso);
  s.addrSum = sum16(b, addrOff, s.v4 ? 8 : 32);
  s.id = s.v4 ? rd16(b, off + 4) : 0;
  const t0 = off + s.ipHl;
  s.seq = s.tcp ? rd32(b, t0 + 4) : 0;
  s.flags = s.tcp ? b[t0 + 13] : 0;
  return true;
}

/**
 * Segment i, whose headers (a copy of the super-packet's) and payload are at dst[at..): IPv4 total length,
 * ID = original ID + i (mod 2^16, as the kernel's GSO without FIXEDID) and header checksum, or IPv6 payload
 * length. TCP: sequence number advanced by i*gso_size; FIN and PSH only on the last segment, CWR only on the
 * first. UDP: the datagram's length. A full checksum either way (the partial value the kernel left is not
 * relied on; a UDP sum of 0 is sent as 0xffff, 0 meaning none). Returns the segment's length.
 */
function finishSegment(dst: Uint8Array, at: number, i: number, s: Shape): number {
  const seg = Math.min(s.gso, s.payload - i * s.gso);
  const segLen = s.hl + seg;
  if (s.v4) {
    wr16(dst, at + 2, segLen);
    wr16(dst, at + 4, (s.id + i) & 0xffff);
    wr16(dst, at + 10, ipv4HeaderChecksum(dst, at));
  } else {
    wr16(dst, at + 4, segLen - 40);
  }
  const t = at + s.ipHl;
  const l4Len = segLen - s.ipHl;
  if (!s.tcp) {
    wr16(dst, t + 4, l4Len);
    dst[t + 6] = 0;
    dst[t + 7] = 0;
    const c = finish(sum16(dst, t, l4Len, s.addrSum + PROTO_UDP + l4Len));
    wr16(dst, t + 6, c === 0 ? 0xffff : c);
    return segLen;
  }
  wr32(dst, t + 4, (s.seq + i * s.gso) >>> 0);
  let f = s.flags;
  if (i !== s.n - 1) f &= ~(TCP_FIN | TCP_PSH);
  if (i !== 0) f &= ~TCP_CWR;
  dst[t + 13] = f;
  dst[t + 16] = 0;
  dst[t + 17] = 0;
  wr16(dst, t + 16, finish(sum16(dst, t, l4Len, s.addrSum + PROTO_TCP + l4Len)));
  return segLen;
}

/**
 * Splits one packet read from a TUN with IFF_VNET_HDR into wire packets.
 *
 * src[srcOff..srcOff+srcLen) is the IP packet after the virtio header `hdr`. Segment i is written to
 * out[i][outOff..outOff+outLens[i]); outOff is headroom in every slot (room for the WireGuard data header, as
 * wireguard-go does), and each slot must hold outOff + headers + its payload. Returns the number of segments,
 * or -1 (nothing usable written) on malformed input (see gsoShape), IP length fields not equal to srcLen, or
 * too few or too small slots.
 *
 * gso_type NONE: the checksum is completed in place when NEEDS_CSUM is set (src is modified), then the packet
 * is copied to out[0] and 1 is returned. TCPV4/TCPV6/UDP_L4: see finishSegment.
 */
export function tsoSplit(
  src: Uint8Array,
  srcOff: number,
  srcLen: number,
  hdr: VnetHdr,
  out: Uint8Array[],
  outOff: number,
  outLens: Int32Array,
): number {
  lastSplit.gso = 0;
  if (srcOff < 0 || srcLen < 1 || srcOff + srcLen > src.length || outOff < 0) return -1;
  if ((hdr.gsoType & ~VNET_HDR_GSO_ECN) === VNET_HDR_GSO_NONE) {
    if (out.length < 1 || outLens.length < 1 || out[0].length < outOff + srcLen) return -1;
    if ((hdr.flags & VNET_HDR_F_NEEDS_CSUM) !== 0 && !completeChecksum(src, srcOff, srcLen, hdr.csumStart, hdr.csumOffset)) return -1;
    out[0].set(src.subarray(srcOff, srcOff + srcLen), outOff);
    outLens[0] = srcLen;
    return 1;
  }
  const s = shape;
  if (!gsoShape(src, srcOff, srcLen, hdr, s)) return -1;
  const { n, hl, gso } = s;
  if (n > out.length || n > outLens.length) return -1;
  for (let i = 0; i < n; i++) {
    if (out[i].length < outOff + hl + Math.min(gso, s.payload - i * gso)) return -1;
  }
  const headers = src.subarray(srcOff, srcOff + hl);
  for (let i = 0, p = srcOff + hl; i < n; i++, p += gso) {
    const dst = out[i];
    dst.set(headers, outOff);
    dst.set(src.subarray(p, p + Math.min(gso, s.payload - i * gso)), outOff + hl);
    outLens[i] = finishSegment(dst, outOff, i, s);
  }
  lastSplit.hl = hl;
  lastSplit.gso = gso;
  return n;
}

/**
 * Finishes a super-packet that readv(2) scattered straight into slots laid out for header length `hl` and
 * gso_size `gso`: packet bytes [0, hl + gso) at buf[at[0]..), then each next `gso` bytes at buf[at[i] + hl..),
 * leaving room for segment i's headers in front. `len` is the IP packet's length. Segment i ends up at
 * buf[at[i]..at[i]+outLens[i]), as tsoSplit would have written it; only the headers are copied.
 *
 * Returns the number of segments; -1 on malformed input (as tsoSplit: nothing usable); TSO_LAYOUT_MISMATCH
 * when the packet does not fit this layout (another header length or gso_size, or a non-GSO packet longer than
 * the first piece), in which case nothing was modified and the caller gathers the bytes for tsoSplit.
 */
export function tsoSplitScattered(buf: Uint8Array, at: Int32Array, len: number, hdr: VnetHdr, hl: number, gso: number, outLens: Int32Array): number {
  const a0 = at[0];
  lastSplit.gso = 0;
  if ((hdr.gsoType & ~VNET_HDR_GSO_ECN) === VNET_HDR_GSO_NONE) {
    if (len > hl + gso) return TSO_LAYOUT_MISMATCH;
    if ((hdr.flags & VNET_HDR_F_NEEDS_CSUM) !== 0 && !completeChecksum(buf, a0, len, hdr.csumStart, hdr.csumOffset)) return -1;
    outLens[0] = len;
    return 1;
  }
  const s = shape;
  if (len < 1 || !gsoShape(buf, a0, len, hdr, s)) return -1;
  if (s.hl !== hl || s.gso !== gso) return TSO_LAYOUT_MISMATCH;
  if (s.n > at.length || s.n > outLens.length) return -1;
  // Segment 0's headers are the super-packet's own: finish it last, once every copy has been taken.
  for (let i = 1; i < s.n; i++) {
    buf.copyWithin(at[i], a0, a0 + hl);
    outLens[i] = finishSegment(buf, at[i], i, s);
  }
  outLens[0] = finishSegment(buf, a0, 0, s);
  lastSplit.hl = hl;
  lastSplit.gso = gso;
  return s.n;
}
