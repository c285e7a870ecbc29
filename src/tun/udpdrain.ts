// Draining a UDP socket into the receive ring (the kernel's encap_rcv entry, in userspace): recvmmsg(2)
// straight into free ring buffers, many datagrams per call and, with UDP_GRO, many datagrams per buffer, with
// each buffer's sender, UDP_GRO segment size and IP_PKTINFO/IPV6_PKTINFO destination in its metadata. The
// receive thread (udprecv.ts) runs it after poll(2); the control thread runs it itself from libuv readiness
// (uvpoll.ts) when it reads the sockets directly. Either way buffer numbers go to the ring's ready queue.

import {
  CMSG_HDR, CMemory, IOVEC_SIZE, MMSG_LEN, MMSGHDR_SIZE, MSGHDR, MSG_TRUNC, SOCKADDR_SIZE,
} from './msghdr.js';
import {
  RX_ADDR, RX_DST, RX_FAMILY, RX_HAS_DST, RX_IFINDEX, RX_LEN, RX_PORT, RX_SEG, type RxRing,
} from './udpring.js';
import { E } from './libc.js'; // constants only
import {
  IPPROTO_IP, IPPROTO_IPV6, IP_PKTINFO, IPV6_PKTINFO, MSG_DONTWAIT, SOL_UDP, UDP_GRO, addressOf, recvmmsg,
} from './sys.js';

/** Datagrams (buffers) asked for per recvmmsg call. */
export const VLEN = 32;
// Room for UDP_GRO (CMSG_SPACE(4) = 24) and IPV6_PKTINFO (CMSG_SPACE(20) = 40) or IP_PKTINFO (32).
const CONTROL_SIZE = 80;

/** drain() results: the socket is empty, the call budget ran out, or every ring buffer is taken. */
export const DRAINED = 0;
export const BUDGET = 1;
export const NO_BUFFERS = 2;

export class RxDrainer {
  private readonly m: CMemory;
  private readonly dataBase: number;
  private readonly iovOff = VLEN * MMSGHDR_SIZE;
  private readonly nameOff = this.iovOff + VLEN * IOVEC_SIZE;
  private readonly ctlOff = this.nameOff + VLEN * SOCKADDR_SIZE;
  private readonly taken: number[] = []; // free buffers popped and not yet filled
  private readonly inCall = new Int32Array(VLEN); // buffer number of each entry of the current call

  /**
   * newestFirst: take the newest free buffer, not the oldest (SpscQueue.takeNewest); only on the control
   * thread, which then both frees buffers and drains into them.
   */
  constructor(
    private readonly ring: RxRing,
    private readonly newestFirst = false,
  ) {
    this.m = new CMemory(this.ctlOff + VLEN * CONTROL_SIZE);
    this.dataBase = addressOf(ring.data);
    const m = this.m;
    for (let i = 0; i < VLEN; i++) {
      const h = i * MMSGHDR_SIZE;
      m.put64(h + MSGHDR.name, m.at(this.nameOff + i * SOCKADDR_SIZE));
      m.put64(h + MSGHDR.iov, m.at(this.iovOff + i * IOVEC_SIZE));
      m.put64(h + MSGHDR.iovlen, 1);
      m.put64(h + MSGHDR.control, m.at(this.ctlOff + i * CONTROL_SIZE));
      m.put64(this.iovOff + i * IOVEC_SIZE + 8, ring.size);
    }
  }

  /**
   * Reads `fd` until it would block, or for `calls` recvmmsg calls (a flooded socket never runs dry, and the
   * other one must still get its turn). Returns DRAINED, BUDGET, NO_BUFFERS, or a fatal -errno. Each call's
   * buffers are pushed to the ready queue; the caller wakes or runs the consumer.
   */
  drain(fd: number, calls: number): number {
    const { m, ring, taken, inCall } = this;
    // Counted at the top, not as a for loop's step: the step ran only after a full call, which a receiving
    // daemon first made late in a transfer, and a step that never ran deoptimised this loop there (traced).
    let left = calls;
    while (left-- > 0) {
      let k = 0;
      while (k < VLEN) {
        const b = taken.length ? taken.pop()! : this.newestFirst ? ring.free.takeNewest() : ring.free.pop();
        if (b < 0) break;
        const h = k * MMSGHDR_SIZE;
        m.put64(this.iovOff + k * IOVEC_SIZE, this.dataBase + b * ring.size);
        m.u32[(h + MSGHDR.namelen) >> 2] = SOCKADDR_SIZE;
        m.put64(h + MSGHDR.controllen, CONTROL_SIZE);
        m.u32[(h + MSGHDR.flags) >> 2] = 0;
        inCall[k++] = b;
      }
      if (k === 0) return NO_BUFFERS;
      const n = recvmmsg(fd, m.u8, k, MSG_DONTWAIT);
      const got = n > 0 ? n : 0;
      for (let i = 0; i < got; i++) {
        const b = inCall[i];
        const h = i * MMSGHDR_SIZE;
        if (m.u32[(h + MSGHDR.flags) >> 2] & MSG_TRUNC) {
          taken.push(b); // larger than a buffer: not a datagram of ours
          continue;
        }
        ring.set(b, RX_LEN, m.u32[(h + MMSG_LEN) >> 2]);
        readControl(m, this.ctlOff + i * CONTROL_SIZE, m.get64(h + MSGHDR.controllen), ring, b);
        const sa = this.nameOff + i * SOCKADDR_SIZE;
        const v6 = m.u16[sa >> 1] === 10;
        ring.set(b, RX_FAMILY, v6 ? 6 : 4);
        ring.set(b, RX_PORT, (m.u8[sa + 2] << 8) | m.u8[sa + 3]);
        if (v6) for (let w = 0; w < 4; w++) ring.set(b, RX_ADDR + w, m.i32[(sa + 8) / 4 + w]);
        else ring.set(b, RX_ADDR, m.i32[(sa + 4) >> 2]);
        ring.ready.push(b); // never full: it holds every buffer there is
      }
      // Backwards, so the next call's first entry is this call's first unused buffer, not its last. On the
      // control thread they go back to the free queue: the buffer freed next, once these datagrams are
      // handled, is then the first one the next call fills.
      if (this.newestFirst) for (let i = k - 1; i >= got; i--) ring.free.push(inCall[i]);
      else for (let i = k - 1; i >= got; i--) taken.push(inCall[i]);
      // One exit for a short read and an error alike, its tests made on every short read: the error branch
      // alone ran only at a transfer's end (EAGAIN after a full call) and deoptimised this loop (traced).
      // EAGAIN and 0: drained; ECONNREFUSED and friends report an ICMP error of an earlier send: nothing to read.
      if (n < k) {
        if (n === -E.EINTR) continue;
        return n === -E.EBADF || n === -E.ENOTSOCK ? n : DRAINED;
      }
    }
    return BUDGET;
  }
}

/**
 * The control messages of one datagram: the UDP_GRO segment size (0 when it was not coalesced) and the local
 * address it was sent to (IP_PKTINFO's ipi_addr, IPV6_PKTINFO's ipi6_addr), into the buffer's metadata.
 */
function readControl(m: CMemory, off: number, len: number, ring: RxRing, b: number): void {
  ring.set(b, RX_SEG, 0);
  ring.set(b, RX_HAS_DST, 0);
  let p = 0;
  while (p + CMSG_HDR <= len) {
    const clen = m.get64(off + p);
    if (clen < CMSG_HDR || p + clen > len) break;
    const level = m.i32[(off + p + 8) >> 2];
    const type = m.i32[(off + p + 12) >> 2];
    const d = off + p + CMSG_HDR;
    if (level === SOL_UDP && type === UDP_GRO) ring.set(b, RX_SEG, m.i32[d >> 2]);
    else if (level === IPPROTO_IP && type === IP_PKTINFO) {
      ring.set(b, RX_DST, m.i32[(d + 8) >> 2]); // struct in_pktinfo { ifindex; spec_dst; addr }
      ring.set(b, RX_IFINDEX, m.i32[d >> 2]);
      ring.set(b, RX_HAS_DST, 1);
    } else if (level === IPPROTO_IPV6 && type === IPV6_PKTINFO) {
      for (let w = 0; w < 4; w++) ring.set(b, RX_DST + w, m.i32[(d >> 2) + w]); // { addr; ifindex }
      ring.set(b, RX_IFINDEX, m.i32[(d >> 2) + 4]);
      ring.set(b, RX_HAS_DST, 1);
    }
    p += (clen + 7) & ~7;
  }
}
