// Batched UDP sends (the kernel's send4/send6 with GSO, as wireguard-go's StdNetBind does it since 2023):
// consecutive datagrams to one endpoint with the same length (the last may be shorter) leave in ONE
// sendmsg(2) carrying a UDP_SEGMENT control message (udp(7)); the kernel cuts them apart as late as it can, so
// the stack's per-packet work is paid once per run of up to 64 datagrams. The iovecs point straight at the
// packet slots, so nothing is copied in JS. A kernel that refuses GSO (EIO, or no UDP_SEGMENT) gets one
// sendmsg per datagram from then on. An endpoint learned from the peer's traffic carries the local address
// the peer reached us on; it goes out as IP_PKTINFO/IPV6_PKTINFO so replies come from that address, and when
// the address has gone (EINVAL) the kernel's routing picks one again, as the kernel module does.

import type { Endpoint } from '../peer.js';
import { CMemory, CMSG_HDR, IOVEC_SIZE, MSGHDR, SOCKADDR_SIZE, writeSockaddr } from './msghdr.js';
import { E } from './libc.js'; // constants only
import { IPPROTO_IP, IPPROTO_IPV6, IP_PKTINFO, IPV6_PKTINFO, SOL_UDP, UDP_SEGMENT, addressOf, sendmsg } from './sys.js';
import { equal, zeroRange } from '../crypto/suite.js';

/** udp(7): at most 64 segments per GSO send; and the whole run must fit one 64 KB UDP datagram. */
export const GSO_MAX_SEGMENTS = 64;
const GSO_MAX_BYTES = 65_000;
/** Larger than any datagram the control thread sends on its own (MTU up to the slot size). */
const SEND_NOW_MAX = 8192;

const CMSG_OFF = 64; // after the msghdr
// CMSG_SPACE(sizeof(u16)) for UDP_SEGMENT is 24; IPV6_PKTINFO's is 40 (IP_PKTINFO's 32).
const NAME_OFF = CMSG_OFF + 64;
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
  /** Whether `to.src` may be used now (the daemon checks the route still leaves through `to.srcIf`). */
  sourceOk: (to: Endpoint) => boolean = () => true;
  private readonly m = new CMemory(IOV_OFF + GSO_MAX_SEGMENTS * IOVEC_SIZE);
  private readonly stage = new Uint8Array(new SharedArrayBuffer(SEND_NOW_MAX));
  /** Endpoints whose source address could not be used: their datagrams leave without IP_PKTINFO. */
  private readonly staleSrc = new WeakSet<Endpoint>();
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
    m.put64(MSGHDR.control, m.at(CMSG_OFF));
  }

  /**
   * Adds a datagram to the current run. `buf` must be SharedArrayBuffer memory (a packet slot), which never
   * moves, and its bytes must stay as they are until flush().
   */
  queue(buf: Uint8Array, off: number, len: number, to: Endpoint): void {
    const cut =
      this.runCount > 0 &&
      ((to !== this.runTo && !sameEndpoint(to, this.runTo!)) || this.runClosed || len > this.runSeg || this.runCount === GSO_MAX_SEGMENTS ||
        this.runBytes + len > GSO_MAX_BYTES || !this.gso);
    // Called every time rather than under `if (cut)`: a bulk stream may not cut a run until it ends, and a call
    // that never ran is a deoptimisation waiting in the optimised code for the first reply after it (traced).
    this.sendRun(cut);
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
    // A store made every time, not under an if that a bulk stream of full-size segments never enters: code that
    // never ran is a deoptimisation waiting in the optimised code, and here it met the first ping after TCP.
    this.runClosed = this.runClosed || len < this.runSeg;
  }

  /** Sends the current run. */
  flush(): void {
    this.sendRun(true);
  }

  /** Sends the current run if `now`. */
  private sendRun(now: boolean): void {
    const n = now ? this.runCount : 0;
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
    let src = to.src !== undefined && !this.staleSrc.has(to) && stickable(to.src) && this.sourceOk(to);
    if (n > 1 && this.gso) {
      let r = this.send(fd, to, n, this.runSeg, src);
      if (r < 0 && r !== -E.EAGAIN && src) {
        r = this.send(fd, to, n, this.runSeg, false);
        src = this.unstick(to, r);
      }
      if (r >= 0) {
        this.stats.datagrams += n;
        return;
      }
      if (r === -E.EAGAIN) {
        this.stats.errors += n; // a full socket buffer drops, as the kernel's own queue would
        return;
      }
      // EIO: the device cannot segment; EINVAL: a segment exceeds the route's MTU. Either way each datagram
      // goes alone (and may be fragmented, like any other UDP send); EIO turns GSO off for good.
      if (r === -E.EIO) this.gso = false;
    }
    for (let i = 0; i < n; i++) {
      if (i > 0) {
        // Each datagram's iovec moves to the front: sendmsg takes the array from MSGHDR.iov.
        m.put64(IOV_OFF, m.get64(IOV_OFF + i * IOVEC_SIZE));
        m.put64(IOV_OFF + 8, m.get64(IOV_OFF + i * IOVEC_SIZE + 8));
      }
      let r = this.send(fd, to, 1, 0, src);
      if (r < 0 && r !== -E.EAGAIN && src) {
        r = this.send(fd, to, 1, 0, false);
        src = this.unstick(to, r);
      }
      if (r >= 0) this.stats.datagrams++;
      else this.stats.errors++;
    }
  }

  /**
   * After a send with the source address failed (EINVAL or ENETUNREACH once the address is gone) and the
   * same send without it returned `r`: if that worked, the address was the problem, and this endpoint's
   * datagrams leave without it from now on. Returns whether to keep using it.
   */
  private unstick(to: Endpoint, r: number): boolean {
    if (r < 0) return true;
    this.staleSrc.add(to);
    return false;
  }

  /** One sendmsg of the first `iovlen` iovecs, with UDP_SEGMENT when `segment` > 0 and the source address. */
  private send(fd: number, to: Endpoint, iovlen: number, segment: number, src: boolean): number {
    const m = this.m;
    let c = CMSG_OFF;
    if (segment > 0) {
      m.put64(c, CMSG_HDR + 2);
      m.i32[(c + 8) >> 2] = SOL_UDP;
      m.i32[(c + 12) >> 2] = UDP_SEGMENT;
      m.u32[(c + 16) >> 2] = segment;
      c += 24;
    }
    if (src) c += writePktinfo(m, c, to.src!);
    m.put64(MSGHDR.controllen, c - CMSG_OFF);
    m.put64(MSGHDR.iovlen, iovlen);
    this.stats.calls++;
    return sendmsg(fd, m.u8);
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
  if (a.port !== b.port || !equal(a.addr, b.addr)) return false;
  if (a.srcIf !== b.srcIf) return false;
  return a.src === b.src || (a.src !== undefined && b.src !== undefined && equal(a.src, b.src));
}

/** Link-local sources need their interface too; like an unset source, they are left to routing. */
const stickable = (src: Uint8Array): boolean => src.length === 4 || !(src[0] === 0xfe && (src[1] & 0xc0) === 0x80);

/** An IP_PKTINFO (ipi_spec_dst) or IPV6_PKTINFO (ipi6_addr) control message at `c`; returns its space. */
function writePktinfo(m: CMemory, c: number, src: Uint8Array): number {
  const v4 = src.length === 4;
  const space = v4 ? 32 : 40;
  zeroRange(m.u8, c, c + space);
  m.put64(c, CMSG_HDR + (v4 ? 12 : 20));
  m.i32[(c + 8) >> 2] = v4 ? IPPROTO_IP : IPPROTO_IPV6;
  m.i32[(c + 12) >> 2] = v4 ? IP_PKTINFO : IPV6_PKTINFO;
  m.u8.set(src, c + CMSG_HDR + (v4 ? 4 : 0));
  return space;
}
