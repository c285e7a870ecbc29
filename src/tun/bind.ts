// The UDP seam: an IPv4 socket and an IPv6-only socket on one port, as wireguard-go's StdNetBind opens them.
// The sockets are made with libc (socket(7)/ipv6(7)) so SO_MARK, IPV6_V6ONLY and forced buffer sizes are set
// before bind(2); reads are recvmmsg(2) into a ring (udpdrain.ts) and sends GSO sendmsg(2) (udpsend.ts).
// MemoryBind (bindtest.ts) is the in-memory twin for tests, as wireguard-go's bindtest is.

import { Worker } from 'node:worker_threads';
import { WgError } from '../errors.js';
import type { Endpoint } from '../peer.js';
import { isV4Mapped } from '../ip.js';
import * as libc from './libc.js'; // constants only here: the calls go through sys.ts
import { E, errnoText } from './libc.js';
import * as sys from './sys.js';
import { GsoSender, type SendStats } from './udpsend.js';
import { CTL_STOP, RX_ADDR, RX_DST, RX_FAMILY, RX_HAS_DST, RX_IFINDEX, RX_LEN, RX_PORT, RX_SEG, RxRing } from './udpring.js';
import type { UdpReceiverData, UdpReceiverMessage } from './udprecv.js';
import { RxDrainer } from './udpdrain.js';
import { FdWatcher } from './uvpoll.js';

/** A datagram: `len` bytes at `off` in `buf`, valid only until the callback returns. */
export type ReceiveFn = (buf: Buffer, off: number, len: number, from: Endpoint) => void;

export interface Bind {
  /** The bound UDP port (the same on both families). */
  readonly port: number;
  /** Datagrams that could not be sent (bad endpoint, socket error, closed). */
  readonly sendErrors?: number;
  /** Whether sends use UDP GSO and receives UDP GRO (real sockets only). */
  readonly gso?: boolean;
  readonly gro?: boolean;
  /** Sends one datagram at once; never throws. The bytes have been copied when it returns. */
  send(data: Uint8Array, to: Endpoint): void;
  /**
   * Queues a datagram of a batch: `len` bytes at `off` in `buf`, which must be SharedArrayBuffer memory
   * (a packet slot) left untouched until flush(). Consecutive datagrams to one endpoint may leave together.
   */
  queue(buf: Uint8Array, off: number, len: number, to: Endpoint): void;
  /** Sends everything queued. */
  flush(): void;
  /**
   * The single receive callback (a later call replaces it). `from.addr` is 4 bytes for IPv4 peers.
   * `batchEnd` runs after each burst handed over, so the receiver can start on it at once; every bind
   * calls it, and the receive path relies on it to open a partial batch.
   */
  onReceive(cb: ReceiveFn, batchEnd?: () => void): void;
  /** Decides whether an endpoint's sticky source address may still be used (see udpsend.ts). */
  setSourceCheck?(ok: (to: Endpoint) => boolean): void;
  /** SO_MARK on both sockets; 0 or a positive errno. */
  setMark(mark: number): number;
  close(): Promise<void>;
}

export interface BindOptions {
  /** SO_MARK for the sockets (wg-quick's fwmark). */
  mark?: number;
  /** UDP GSO on send and GRO on receive when the kernel has them (default true; WGTS_UDP_OFFLOAD=0). */
  offload?: boolean;
  /**
   * Who reads the sockets: the control thread itself, woken by its event loop ('loop', the default), or a
   * receive thread (udprecv.ts) that hands ring buffers over ('threads'). See uvpoll.ts for why.
   */
  io?: IoMode;
  /** Bind 127.0.0.1 and [::1] instead of the wildcard addresses (the data-path warm-up, warmpath.ts). */
  loopback?: boolean;
}

export type IoMode = 'loop' | 'threads';

// Asked for with SO_*BUFFORCE where allowed (sys.setSocketBuffer).
const SOCKET_BUFFER = 4 << 20;
const PORT_TRIES = 8;
const MAX_SOURCES = 1024;
// Receive ring: with UDP_GRO a buffer takes a whole coalesced burst (up to 64 KB); without, one datagram.
// 256 of them, because a peer without GSO (wireguard-go 0.0.2022) still arrives one datagram per buffer.
const RX_GRO = { count: 256, size: 65_536 };
const RX_PLAIN = { count: 512, size: 4096 };
/** Ring buffers the control thread drains per event-loop turn before it lets timers and the UAPI run. */
const RX_PER_TURN = 64;
/** recvmmsg calls per readiness callback when the control thread reads the sockets itself. */
const LOOP_CALLS = 2;

/** An IPv4-mapped IPv6 address becomes its 4 IPv4 bytes, so one peer never has two spellings. */
export const unmapV4 = (a: Uint8Array): Uint8Array => (isV4Mapped(a) ? a.subarray(12) : a);

function sockaddr(family: 4 | 6, port: number, loopback: boolean): Buffer {
  // sockaddr_in is 16 bytes, sockaddr_in6 28; the wildcard address is all zeros in both.
  const sa = Buffer.alloc(family === 4 ? 16 : 28);
  sa.writeUInt16LE(family === 4 ? libc.AF_INET : libc.AF_INET6, 0);
  sa.writeUInt16BE(port, 2);
  if (loopback && family === 4) sa.set([127, 0, 0, 1], 4);
  if (loopback && family === 6) sa[23] = 1; // ::1
  return sa;
}

function setBuffers(fd: number): void {
  sys.setSocketBuffer(fd, 'rcv', SOCKET_BUFFER);
  sys.setSocketBuffer(fd, 'snd', SOCKET_BUFFER);
}

/** A bound, non-blocking UDP socket fd, or -errno. */
function rawSocket(family: 4 | 6, port: number, mark: number, loopback: boolean): number {
  const fd = sys.socket(family === 4 ? libc.AF_INET : libc.AF_INET6, libc.SOCK_DGRAM | libc.SOCK_NONBLOCK | libc.SOCK_CLOEXEC);
  if (fd < 0) return fd;
  let r = 0;
  if (family === 6) r = sys.setsockoptInt(fd, libc.IPPROTO_IPV6, libc.IPV6_V6ONLY, 1);
  if (r === 0) setBuffers(fd);
  // The local address each datagram was sent to, so replies leave from it (udpsend.ts).
  if (r === 0) {
    if (family === 4) sys.setsockoptInt(fd, sys.IPPROTO_IP, sys.IP_PKTINFO, 1);
    else sys.setsockoptInt(fd, sys.IPPROTO_IPV6, sys.IPV6_RECVPKTINFO, 1);
  }
  if (r === 0 && mark !== 0) r = sys.setsockoptInt(fd, libc.SOL_SOCKET, libc.SO_MARK, mark);
  if (r === 0) r = sys.bind(fd, sockaddr(family, port, loopback));
  if (r < 0) {
    sys.close(fd);
    return r;
  }
  return fd;
}

function boundPort(fd: number): number {
  const sa = Buffer.alloc(28);
  return sys.getsockname(fd, sa) < 0 ? -1 : sa.readUInt16BE(2);
}

function bindError(family: 4 | 6, port: number, errno: number): WgError {
  const what = `UDP port ${port} (IPv${family})`;
  if (errno === E.EADDRINUSE) return new WgError('EADDRINUSE', `${what} is already in use`, errno);
  if (errno === E.EPERM) return new WgError('EPERM', `${what}: setting SO_MARK needs CAP_NET_ADMIN`, errno);
  return new WgError(errnoText(errno).split(' ')[0], `cannot bind ${what}: ${errnoText(errno)}`, errno);
}

export const checkMark = (mark: number): boolean => Number.isInteger(mark) && mark >= 0 && mark <= 0xffffffff;

/**
 * Binds UDP `port` on 0.0.0.0 and [::] (IPv6-only). Port 0 picks a port free on IPv4 and retries if IPv6
 * has it taken. Without IPv6 in the kernel (EAFNOSUPPORT) it runs on IPv4 alone, as wireguard-go does.
 */
export async function openBind(port: number, opts: BindOptions = {}): Promise<Bind> {
  return openBindSync(port, opts);
}

/** openBind, synchronously: the UAPI must answer a listen_port change with the bind's real errno. */
export function openBindSync(port: number, opts: BindOptions = {}): Bind {
  const mark = opts.mark ?? 0;
  const loopback = opts.loopback ?? false;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new WgError('EINVAL', `invalid UDP port ${port}`, E.EINVAL);
  if (!checkMark(mark)) throw new WgError('EINVAL', `invalid fwmark ${mark}`, E.EINVAL);
  for (let attempt = 0; attempt < (port === 0 ? PORT_TRIES : 1); attempt++) {
    const fd4 = rawSocket(4, port, mark, loopback);
    if (fd4 < 0) throw bindError(4, port, -fd4);
    const p = port || boundPort(fd4);
    if (p <= 0) {
      sys.close(fd4);
      throw new WgError('EIO', 'getsockname failed on a bound UDP socket', E.EIO);
    }
    const fd6 = rawSocket(6, p, mark, loopback);
    if (fd6 === -E.EADDRINUSE && port === 0) {
      sys.close(fd4);
      continue;
    }
    // No IPv6 in the kernel: IPv4 alone, as wireguard-go. No ::1 (IPv6 disabled, or lo down) for a loopback bind: the same.
    if (fd6 < 0 && fd6 !== -E.EAFNOSUPPORT && !(loopback && fd6 === -E.EADDRNOTAVAIL)) {
      sys.close(fd4);
      throw bindError(6, p, -fd6);
    }
    return new UdpBind(fd4, fd6 < 0 ? -1 : fd6, p, opts.offload ?? true, opts.io ?? 'loop');
  }
  throw new WgError('EADDRINUSE', `no UDP port free on both IPv4 and IPv6 after ${PORT_TRIES} tries`, E.EADDRINUSE);
}

/**
 * Two sockets, read into a ring either by the control thread itself or by a receive thread (udprecv.ts), and a
 * GSO sender (udpsend.ts). Offload is probed per socket: UDP_SEGMENT for sends, UDP_GRO for receives.
 */
class UdpBind implements Bind {
  /** Receive failures (their errno), and datagrams that arrived before onReceive was called. */
  recvErrno = 0;
  unclaimed = 0;
  readonly gro: boolean;
  private cb: ReceiveFn | null = null;
  private batchEnd: (() => void) | undefined;
  private readonly ring: RxRing;
  private readonly receiver: Worker | null = null;
  private readonly watchers: FdWatcher[] = [];
  private readonly sender: GsoSender;
  private closing: Promise<void> | null = null;
  private scheduled = false;
  private parked = false;
  // Sources are cached as Endpoints (bounded, cleared when full), so a datagram allocates nothing here:
  // IPv4 by our local address (-1: unknown), then by address and port; IPv6 by text.
  private readonly from4 = new Map<number, Map<number, Endpoint>>();
  private readonly from6 = new Map<string, Endpoint>();
  private sources = 0;
  /** The last datagram's source fields (family, port, has-dst, ifindex, address words, dst words) and endpoint. */
  private readonly lastKey = new Int32Array(12);
  private lastEp: Endpoint | null = null;

  constructor(
    /** The raw fds (-1 for a missing IPv6 socket), e.g. for getsockopt in tests. */
    readonly fd4: number,
    readonly fd6: number,
    readonly port: number,
    offload: boolean,
    readonly io: IoMode,
  ) {
    const fds = [fd4, fd6].filter((fd) => fd >= 0);
    const gso = offload && fds.every((fd) => sys.setsockoptInt(fd, sys.SOL_UDP, sys.UDP_SEGMENT, 0) === 0);
    this.gro = offload && fds.every((fd) => sys.setsockoptInt(fd, sys.SOL_UDP, sys.UDP_GRO, 1) === 0);
    if (!this.gro) for (const fd of fds) sys.setsockoptInt(fd, sys.SOL_UDP, sys.UDP_GRO, 0);
    this.sender = new GsoSender((to) => (to.addr.length === 4 || isV4Mapped(to.addr) ? fd4 : fd6), gso);
    const shape = this.gro ? RX_GRO : RX_PLAIN;
    this.ring = RxRing.create(shape.count, shape.size);
    if (io === 'loop') {
      const drainer = new RxDrainer(this.ring, true); // no receive thread: the newest free buffer first
      for (const fd of fds) {
        const w: FdWatcher = new FdWatcher(fd, () => this.readable(drainer, w), () => this.pollError(drainer, w));
        this.watchers.push(w);
        w.start();
      }
      return;
    }
    const data: UdpReceiverData = { fds: [fd4, fd6], ring: this.ring.shape };
    this.receiver = new Worker(new URL('./udprecv.js', import.meta.url), { workerData: data });
    this.receiver.unref();
    this.receiver.on('message', (m: UdpReceiverMessage) => (this.recvErrno = m.errno));
    this.receiver.on('error', () => (this.recvErrno = this.recvErrno || E.EIO));
    this.park();
  }

  /** The control thread reads a socket libuv found readable, and hands the datagrams on at once. */
  private readable(drainer: RxDrainer, w: FdWatcher): void {
    if (this.closing) return;
    const r = drainer.drain(w.fd, LOOP_CALLS);
    if (r < 0) this.failed(w, -r);
    this.pump();
  }

  /**
   * libuv saw POLLERR and stopped watching. A queued socket error (an ICMP report) is consumed by the next
   * read, so read once more and carry on; only a socket that is gone (EBADF) ends the watch.
   */
  private pollError(drainer: RxDrainer, w: FdWatcher): void {
    if (this.closing) return;
    const r = drainer.drain(w.fd, 1);
    this.pump();
    if (r < 0) this.failed(w, -r);
    else w.start();
  }

  private failed(w: FdWatcher, errno: number): void {
    w.stop();
    if (!this.closing) this.recvErrno = errno;
  }

  get gso(): boolean {
    return this.sender.gso;
  }

  get sendStats(): SendStats {
    return this.sender.stats;
  }

  get sendErrors(): number {
    return this.sender.stats.errors;
  }

  private park(): void {
    if (this.parked || this.closing) return;
    this.parked = true;
    void this.ring.ready.waitAsync().then(() => {
      this.parked = false;
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled || this.closing) return;
    this.scheduled = true;
    setImmediate(this.pump);
  }

  /** Hands the datagrams of up to RX_PER_TURN ring buffers to the receive callback, then yields. */
  private pump = (): void => {
    this.scheduled = false;
    const ring = this.ring;
    const data = ring.data;
    for (let i = 0; i < RX_PER_TURN; i++) {
      const b = ring.ready.pop();
      if (b < 0) break;
      const cb = this.cb;
      const from = this.endpointOf(b);
      if (!cb) this.unclaimed++;
      else {
        const len = ring.get(b, RX_LEN);
        const seg = ring.get(b, RX_SEG) || len;
        const start = b * ring.size;
        for (let off = 0; off < len; off += seg) cb(data, start + off, Math.min(seg, len - off), from);
      }
      ring.free.push(b);
    }
    if (this.receiver) ring.free.wake();
    this.batchEnd?.();
    if (ring.ready.size > 0) this.schedule();
    else if (this.receiver) this.park();
  };

  /**
   * The Endpoint of a buffer's sender, with the local address it was sent to: the same frozen object for
   * every datagram of that source, which receivers copy when they keep one (roaming).
   */
  private endpointOf(b: number): Endpoint {
    const ring = this.ring;
    const port = ring.get(b, RX_PORT);
    const hasDst = ring.get(b, RX_HAS_DST) === 1;
    if (this.sources >= MAX_SOURCES) {
      this.from4.clear();
      this.from6.clear();
      this.sources = 0;
      this.lastEp = null;
    }
    const srcIf = ring.get(b, RX_IFINDEX);
    // Most datagrams come from the same source as the one before: compared word by word, that needs no map
    // key (an IPv4 key is past the small-integer range, an IPv6 key a string: garbage on every datagram).
    const family = ring.get(b, RX_FAMILY);
    const words = family === 4 ? 1 : 4;
    const last = this.lastKey;
    let same = this.lastEp !== null && last[0] === family && last[1] === port && last[2] === (hasDst ? 1 : 0) && last[3] === srcIf;
    for (let w = 0; same && w < words; w++) same = last[4 + w] === ring.get(b, RX_ADDR + w) && (!hasDst || last[8 + w] === ring.get(b, RX_DST + w));
    if (same) return this.lastEp!;
    const ep = this.lookupEndpoint(b, family, port, hasDst, srcIf);
    last[0] = family;
    last[1] = port;
    last[2] = hasDst ? 1 : 0;
    last[3] = srcIf;
    for (let w = 0; w < words; w++) {
      last[4 + w] = ring.get(b, RX_ADDR + w);
      last[8 + w] = hasDst ? ring.get(b, RX_DST + w) : 0;
    }
    this.lastEp = ep;
    return ep;
  }

  private lookupEndpoint(b: number, family: number, port: number, hasDst: boolean, srcIf: number): Endpoint {
    const ring = this.ring;
    if (family === 4) {
      const word = ring.get(b, RX_ADDR) >>> 0;
      // Our address and the interface it came in on, as one key (interface indexes stay far below 2^20).
      const dst = hasDst ? (ring.get(b, RX_DST) >>> 0) * 1_048_576 + (srcIf & 0xfffff) : -1;
      let byDst = this.from4.get(dst);
      if (!byDst) {
        byDst = new Map();
        this.from4.set(dst, byDst);
      }
      const key = word * 65_536 + port;
      let ep = byDst.get(key);
      if (!ep) {
        const addr = v4Bytes(word);
        ep = Object.freeze(dst < 0 ? { addr, port } : { addr, port, src: v4Bytes(ring.get(b, RX_DST) >>> 0), srcIf });
        byDst.set(key, ep);
        this.sources++;
      }
      return ep;
    }
    const words = [0, 1, 2, 3].map((w) => ring.get(b, RX_ADDR + w));
    const dstWords = hasDst ? [0, 1, 2, 3].map((w) => ring.get(b, RX_DST + w)) : [];
    const key = `${words.join(',')},${port},${dstWords.join(',')},${srcIf}`;
    let ep = this.from6.get(key);
    if (!ep) {
      const addr = unmapV4(new Uint8Array(new Int32Array(words).buffer));
      ep = Object.freeze(hasDst ? { addr, port, src: new Uint8Array(new Int32Array(dstWords).buffer), srcIf } : { addr, port });
      this.from6.set(key, ep);
      this.sources++;
    }
    return ep;
  }

  send(data: Uint8Array, to: Endpoint): void {
    if (this.closing || !validEndpoint(to)) {
      this.sender.stats.errors++;
      return;
    }
    this.sender.sendNow(data, to);
  }

  queue(buf: Uint8Array, off: number, len: number, to: Endpoint): void {
    if (this.closing || !validEndpoint(to)) {
      this.sender.stats.errors++;
      return;
    }
    this.sender.queue(buf, off, len, to);
  }

  flush(): void {
    if (!this.closing) this.sender.flush();
  }

  onReceive(cb: ReceiveFn, batchEnd?: () => void): void {
    this.cb = cb;
    this.batchEnd = batchEnd;
  }

  setSourceCheck(ok: (to: Endpoint) => boolean): void {
    this.sender.sourceOk = ok;
  }

  setMark(mark: number): number {
    if (!checkMark(mark)) return E.EINVAL;
    if (this.closing) return E.EBADF; // the fd numbers may already belong to someone else
    for (const fd of [this.fd4, this.fd6]) {
      if (fd < 0) continue;
      const r = sys.setsockoptInt(fd, libc.SOL_SOCKET, libc.SO_MARK, mark);
      if (r < 0) return -r;
    }
    return 0;
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      for (const w of this.watchers) w.close();
      const receiver = this.receiver;
      if (receiver) {
        // shutdown(2) wakes the receive thread out of poll(2) even on an unconnected socket; the fds are
        // closed only once it has gone, so it never reads a number that has been reused.
        Atomics.store(this.ring.ctl, CTL_STOP, 1);
        for (const fd of [this.fd4, this.fd6]) if (fd >= 0) sys.shutdown(fd, sys.SHUT_RDWR);
        this.ring.free.wake();
        // Referenced again while it winds down: an unreferenced thread would let the process exit mid-close.
        receiver.ref();
        const exited = new Promise<void>((resolve) => receiver.once('exit', () => resolve()));
        let timer: NodeJS.Timeout | undefined;
        const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), 2_000)));
        if ((await Promise.race([exited.then(() => true), timeout])) === false) await receiver.terminate();
        clearTimeout(timer);
      }
      for (const fd of [this.fd4, this.fd6]) if (fd >= 0) sys.close(fd);
    })();
    return this.closing;
  }
}

const v4Bytes = (word: number): Uint8Array =>
  Uint8Array.of(word & 0xff, (word >>> 8) & 0xff, (word >>> 16) & 0xff, word >>> 24);

export const validEndpoint = (to: Endpoint): boolean =>
  (to.addr.length === 4 || to.addr.length === 16) && Number.isInteger(to.port) && to.port > 0 && to.port <= 65535;
