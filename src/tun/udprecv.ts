// The UDP receive thread (the kernel's encap_rcv entry, in userspace): poll(2) on the IPv4 and IPv6 sockets,
// then recvmmsg(2) straight into free buffers of the receive ring, many datagrams per call, and with UDP_GRO
// many datagrams per buffer. The control thread gets buffer numbers through an SPSC queue, one wake-up per
// burst. When every buffer is in use it waits, and the socket's own receive buffer absorbs (then drops) the
// excess, as a full ptr_ring does. It ends when the control thread sets CTL_STOP and shuts the sockets down.

import { parentPort, workerData } from 'node:worker_threads';
import {
  CMSG_HDR, CMemory, IOVEC_SIZE, MMSG_LEN, MMSGHDR_SIZE, MSGHDR, MSG_TRUNC, POLLFD_SIZE, SOCKADDR_SIZE,
} from './msghdr.js';
import {
  CTL_ERRNO, CTL_STOP, RX_ADDR, RX_DST, RX_FAMILY, RX_HAS_DST, RX_IFINDEX, RX_LEN, RX_PORT, RX_SEG, RxRing, type RxRingShape,
} from './udpring.js';
import { E } from './libc.js'; // constants only
import {
  IPPROTO_IP, IPPROTO_IPV6, IP_PKTINFO, IPV6_PKTINFO, MSG_DONTWAIT, POLLIN, SOL_UDP, UDP_GRO, addressOf, poll, recvmmsg,
} from './sys.js';

export interface UdpReceiverData {
  /** The IPv4 socket and the IPv6 one (-1 when there is none). */
  fds: number[];
  ring: RxRingShape;
}

export type UdpReceiverMessage = { kind: 'error'; errno: number };

/** Datagrams (buffers) asked for per recvmmsg call. */
const VLEN = 32;
const CALLS_PER_TURN = 4;
// Room for UDP_GRO (CMSG_SPACE(4) = 24) and IPV6_PKTINFO (CMSG_SPACE(20) = 40) or IP_PKTINFO (32).
const CONTROL_SIZE = 80;

const POLL_ERR_MASK = 0x8 | 0x10 | 0x20; // POLLERR, POLLHUP, POLLNVAL

function run(data: UdpReceiverData): void {
  const ring = RxRing.attach(data.ring);
  const fds = data.fds.filter((fd) => fd >= 0);
  const dataBase = addressOf(ring.data);
  const iovOff = VLEN * MMSGHDR_SIZE;
  const nameOff = iovOff + VLEN * IOVEC_SIZE;
  const ctlOff = nameOff + VLEN * SOCKADDR_SIZE;
  const pollOff = ctlOff + VLEN * CONTROL_SIZE;
  const m = new CMemory(pollOff + fds.length * POLLFD_SIZE);
  for (let i = 0; i < VLEN; i++) {
    const h = i * MMSGHDR_SIZE;
    m.put64(h + MSGHDR.name, m.at(nameOff + i * SOCKADDR_SIZE));
    m.put64(h + MSGHDR.iov, m.at(iovOff + i * IOVEC_SIZE));
    m.put64(h + MSGHDR.iovlen, 1);
    m.put64(h + MSGHDR.control, m.at(ctlOff + i * CONTROL_SIZE));
    m.put64(iovOff + i * IOVEC_SIZE + 8, ring.size);
  }
  const pollFds = m.u8.subarray(pollOff);
  for (let j = 0; j < fds.length; j++) {
    m.i32[(pollOff + j * POLLFD_SIZE) >> 2] = fds[j];
    m.u16[(pollOff + j * POLLFD_SIZE + 4) >> 1] = POLLIN;
  }
  const taken: number[] = []; // free buffers popped and not yet filled
  const inCall = new Int32Array(VLEN); // buffer number of each entry of the current call

  const stopped = (): boolean => Atomics.load(ring.ctl, CTL_STOP) !== 0;
  const fail = (errno: number): void => {
    Atomics.store(ring.ctl, CTL_ERRNO, errno);
    parentPort?.postMessage({ kind: 'error', errno } satisfies UdpReceiverMessage);
  };

  /**
   * Reads `fd` until it would block, or for CALLS_PER_TURN calls: a flooded socket never runs dry, and the
   * other one must still get its turn. False when the thread must end.
   */
  const drain = (fd: number): boolean => {
    for (let call = 0; call < CALLS_PER_TURN; call++) {
      let k = 0;
      while (k < VLEN) {
        const b = taken.length ? taken.pop()! : ring.free.pop();
        if (b < 0) break;
        const h = k * MMSGHDR_SIZE;
        m.put64(iovOff + k * IOVEC_SIZE, dataBase + b * ring.size);
        m.u32[(h + MSGHDR.namelen) >> 2] = SOCKADDR_SIZE;
        m.put64(h + MSGHDR.controllen, CONTROL_SIZE);
        m.u32[(h + MSGHDR.flags) >> 2] = 0;
        inCall[k++] = b;
      }
      if (k === 0) {
        ring.free.waitSync(50); // every buffer is with the control thread
        if (stopped()) return false;
        continue;
      }
      const n = recvmmsg(fd, m.u8, k, MSG_DONTWAIT);
      if (n <= 0) {
        for (let i = 0; i < k; i++) taken.push(inCall[i]);
        if (n === -E.EINTR) continue;
        if (n === -E.EAGAIN || n === 0) return true;
        // ECONNREFUSED and friends report an ICMP error of an earlier send: nothing to read, carry on.
        return !stopped();
      }
      for (let i = 0; i < n; i++) {
        const b = inCall[i];
        const h = i * MMSGHDR_SIZE;
        const len = m.u32[(h + MMSG_LEN) >> 2];
        if (m.u32[(h + MSGHDR.flags) >> 2] & MSG_TRUNC) {
          taken.push(b); // larger than a buffer: not a datagram of ours
          continue;
        }
        ring.set(b, RX_LEN, len);
        readControl(m, ctlOff + i * CONTROL_SIZE, m.get64(h + MSGHDR.controllen), ring, b);
        const sa = nameOff + i * SOCKADDR_SIZE;
        const v6 = m.u16[sa >> 1] === 10;
        ring.set(b, RX_FAMILY, v6 ? 6 : 4);
        ring.set(b, RX_PORT, (m.u8[sa + 2] << 8) | m.u8[sa + 3]);
        if (v6) for (let w = 0; w < 4; w++) ring.set(b, RX_ADDR + w, m.i32[(sa + 8) / 4 + w]);
        else ring.set(b, RX_ADDR, m.i32[(sa + 4) >> 2]);
        ring.ready.push(b); // never full: it holds every buffer there is
      }
      for (let i = n; i < k; i++) taken.push(inCall[i]);
      ring.ready.wake();
      if (n < k) return true;
    }
    return true;
  };

  while (!stopped()) {
    const r = poll(pollFds, fds.length, -1);
    if (stopped()) return;
    if (r < 0) {
      if (r === -E.EINTR) continue;
      return fail(-r);
    }
    for (let j = 0; j < fds.length; j++) {
      const revents = m.u16[(pollOff + j * POLLFD_SIZE + 6) >> 1];
      if (revents === 0) continue;
      if (revents & POLL_ERR_MASK && !(revents & POLLIN)) {
        if (stopped()) return;
        if (revents & 0x20) return fail(E.EBADF); // POLLNVAL: the fd was closed under us (EBADF)
      }
      if (!drain(fds[j])) return;
    }
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

run(workerData as UdpReceiverData);
