// Batched UDP sends (the kernel's send4/send6 with GSO, as wireguard-go's StdNetBind does it since 2023):
// consecutive datagrams to one endpoint with the same length (the last may be shorter) leave in ONE
// sendmsg(2) carrying a UDP_SEGMENT control message (udp(7)); the kernel cuts them apart as late as it can, so
// the stack's per-packet work is paid once per run of up to 64 datagrams. The iovecs point straight at the
// packet slots, so nothing is copied in JS. A kernel that refuses GSO (EIO, or no UDP_SEGMENT) gets one
// sendmsg per datagram from then on.

import type { Endpoint } from '../peer.js';
import { CMemory, CMSG_HDR, IOVEC_SIZE, MSGHDR, SOCKADDR_SIZE, writeSockaddr } from './msghdr.js';
import { SOL_UDP, UDP_SEGMENT, addressOf, sendmsg } from './sys.js';

/** udp(7): at most 64 segments per GSO send; and the whole run must fit one 64 KB UDP datagram. */
export const GSO_MAX_SEGMENTS = 64;
const GSO_MAX_BYTES = 65_000;
const EIO = 5;
/** Larger than any datagram the control thread sends on its own (MTU up to the slot size). */
const SEND_NOW_MAX = 8192;
const EAGAIN = 11;

const CMSG_OFF = 64; // after the msghdr
const NAME_OFF = CMSG_OFF + 24; // CMSG_SPACE(sizeof(u16)) is 24
const IOV_OFF = NAME_OFF + SOCKADDR_SIZE;

export interface SendStats {
  /** Datagrams the kernel refused (full socket buffer, no route, bad address). */
  errors: number;
  /** sendmsg(2) calls and the datagrams they carried. */
  calls: number;
  datagrams: number;
}

export class GsoSender {
  /** False once the kernel refused a GSO send with EIO (or never offered UDP_SEGMENT). */
  gso: boolean;
  readonly stats: SendStats = { errors: 0, calls: 0, datagrams: 0 };
  private readonly m = new CMemory(IOV_OFF + GSO_MAX_SEGMENTS * IOVEC_SIZE);
  private readonly stage = new Uint8Array(new SharedArrayBuffer(SEND_NOW_MAX));
  private lastBuf: Uint8Array | null = null;
  private lastBase = 0;
  private runTo: Endpoint | null = null;
  private runSeg = 0;
  private runCount = 0;
  private runBytes = 0;
  private runClosed = false;

  constructor(
    /** The socket for an endpoint's family, or -1 when there is none. */
    private readonly fdFor: (to: Endpoint) => number,
    gso: boolean,
  ) {
    this.gso = gso;
    const m = this.m;
    m.put64(MSGHDR.name, m.at(NAME_OFF));
    m.put64(MSGHDR.iov, m.at(IOV_OFF));
    m.put64(CMSG_OFF, CMSG_HDR + 2);
    m.i32[(CMSG_OFF + 8) >> 2] = SOL_UDP;
    m.i32[(CMSG_OFF + 12) >> 2] = UDP_SEGMENT;
  }

  /**
   * Adds a datagram to the current run. `buf` must be SharedArrayBuffer memory (a packet slot), which never
   * moves, and its bytes must stay as they are until flush().
   */
  queue(buf: Uint8Array, off: number, len: number, to: Endpoint): void {
    if (
      this.runCount > 0 &&
      ((to !== this.runTo && !sameEndpoint(to, this.runTo!)) || this.runClosed || len > this.runSeg || this.runCount === GSO_MAX_SEGMENTS ||
        this.runBytes + len > GSO_MAX_BYTES || !this.gso)
    ) {
      this.flush();
    }
    if (this.runCount === 0) {
      this.runTo = to;
      this.runSeg = len;
    }
    if (buf !== this.lastBuf) {
      this.lastBuf = buf;
      this.lastBase = addressOf(buf);
    }
    const iov = IOV_OFF + this.runCount * IOVEC_SIZE;
    this.m.put64(iov, this.lastBase + off);
    this.m.put64(iov + 8, len);
    this.runCount++;
    this.runBytes += len;
    if (len < this.runSeg) this.runClosed = true;
  }

  /** Sends the current run. */
  flush(): void {
    const n = this.runCount;
    if (n === 0) return;
    const to = this.runTo!;
    this.runCount = 0;
    this.runBytes = 0;
    this.runClosed = false;
    this.runTo = null;
    const fd = this.fdFor(to);
    if (fd < 0) {
      this.stats.errors += n;
      return;
    }
    const m = this.m;
    m.u32[MSGHDR.namelen >> 2] = writeSockaddr(m, NAME_OFF, to.addr, to.port);
    if (n > 1) {
      m.u16[(CMSG_OFF + CMSG_HDR) >> 1] = this.runSeg;
      m.put64(MSGHDR.control, m.at(CMSG_OFF));
      m.put64(MSGHDR.controllen, 24);
      m.put64(MSGHDR.iovlen, n);
      const r = sendmsg(fd, m.u8);
      this.stats.calls++;
      if (r >= 0) {
        this.stats.datagrams += n;
        return;
      }
      if (r === -EAGAIN) {
        this.stats.errors += n; // a full socket buffer drops, as the kernel's own queue would
        return;
      }
      // EIO: the device cannot segment; EINVAL: a segment exceeds the route's MTU. Either way each datagram
      // goes alone (and may be fragmented, like any other UDP send); EIO turns GSO off for good.
      if (r === -EIO) this.gso = false;
    }
    m.put64(MSGHDR.control, 0);
    m.put64(MSGHDR.controllen, 0);
    m.put64(MSGHDR.iovlen, 1);
    for (let i = 0; i < n; i++) {
      if (i > 0) {
        // Shift each datagram's iovec into the first place: sendmsg takes the array from MSGHDR.iov.
        m.put64(IOV_OFF, m.get64(IOV_OFF + i * IOVEC_SIZE));
        m.put64(IOV_OFF + 8, m.get64(IOV_OFF + i * IOVEC_SIZE + 8));
      }
      const r = sendmsg(fd, m.u8);
      this.stats.calls++;
      if (r >= 0) this.stats.datagrams++;
      else this.stats.errors++;
    }
  }

  /**
   * One datagram now (handshakes, keepalives, cookie replies): copied into shared memory first, because a
   * small ordinary typed array may live on the JS heap, where the collector can move it.
   */
  sendNow(buf: Uint8Array, to: Endpoint): void {
    if (buf.length > this.stage.length) {
      this.stats.errors++;
      return;
    }
    this.flush();
    this.stage.set(buf);
    this.queue(this.stage, 0, buf.length, to);
    this.flush();
  }
}

function sameEndpoint(a: Endpoint, b: Endpoint): boolean {
  if (a.port !== b.port || a.addr.length !== b.addr.length) return false;
  for (let i = 0; i < a.addr.length; i++) if (a.addr[i] !== b.addr[i]) return false;
  return true;
}
