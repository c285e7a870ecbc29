// Layouts of the C structures the batched UDP path hands to the kernel (LP64 Linux: x86-64, arm64): struct
// msghdr, mmsghdr, iovec, cmsghdr (socket(7), cmsg(3)), pollfd (poll(2)) and sockaddr_in/in6 (ip(7), ipv6(7)).
// They live in SharedArrayBuffers, whose memory never moves, so the absolute addresses written into them stay
// valid; pointers are written as two u32 halves so no BigInt is made per packet.

import { isV4Mapped } from '../ip.js';
import { zeroRange } from '../crypto/suite.js';
import { addressOf } from './sys.js';

export const MSGHDR = { name: 0, namelen: 8, iov: 16, iovlen: 24, control: 32, controllen: 40, flags: 48 } as const;
export const MSGHDR_SIZE = 56;
/** struct mmsghdr: a msghdr then the received length. */
export const MMSGHDR_SIZE = 64;
export const MMSG_LEN = 56;
export const IOVEC_SIZE = 16;
export const CMSG_HDR = 16;
export const SOCKADDR_SIZE = 32; // sockaddr_in6 is 28; rounded up for alignment
export const POLLFD_SIZE = 8;
export const MSG_TRUNC = 0x20;
export const MSG_CTRUNC = 0x08;

/** Writable views over one SharedArrayBuffer of C structures, with its base address. */
export class CMemory {
  readonly u8: Uint8Array;
  readonly u16: Uint16Array;
  readonly u32: Uint32Array;
  readonly i32: Int32Array;
  readonly base: number;

  constructor(size: number) {
    const sab = new SharedArrayBuffer((size + 7) & ~7);
    this.u8 = new Uint8Array(sab);
    this.u16 = new Uint16Array(sab);
    this.u32 = new Uint32Array(sab);
    this.i32 = new Int32Array(sab);
    this.base = addressOf(this.u8);
  }

  /** A 64-bit value (pointer or size_t) at byte offset `off` (8-aligned). */
  put64(off: number, v: number): void {
    this.u32[off >> 2] = v >>> 0;
    this.u32[(off >> 2) + 1] = Math.floor(v / 0x1_0000_0000);
  }

  get64(off: number): number {
    return this.u32[off >> 2] + this.u32[(off >> 2) + 1] * 0x1_0000_0000;
  }

  /** The absolute address of byte `off`. */
  at(off: number): number {
    return this.base + off;
  }
}

/**
 * Writes a sockaddr_in (4-byte address) or sockaddr_in6 (16) at `off`; returns its length. The port is in
 * network order, the rest of the structure zero (no flow label, no scope).
 */
export function writeSockaddr(m: CMemory, off: number, addr: Uint8Array, port: number): number {
  const u8 = m.u8;
  zeroRange(u8, off, off + SOCKADDR_SIZE);
  u8[off + 2] = port >> 8;
  u8[off + 3] = port & 0xff;
  if (addr.length === 4 || isV4Mapped(addr)) {
    m.u16[off >> 1] = 2; // AF_INET
    for (let i = 0; i < 4; i++) u8[off + 4 + i] = addr[addr.length - 4 + i];
    return 16;
  }
  m.u16[off >> 1] = 10; // AF_INET6
  u8.set(addr, off + 8);
  return 28;
}
