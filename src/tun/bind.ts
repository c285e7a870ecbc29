// The UDP seam: an IPv4 socket and an IPv6-only socket on one port, as wireguard-go's StdNetBind opens them.
// The sockets are made with libc (socket(7)/ipv6(7)) so SO_MARK, IPV6_V6ONLY and forced buffer sizes are set
// before bind(2), then handed to node:dgram with bind({fd}) for the event loop. MemoryBind is the in-memory
// twin for tests (wireguard-go's bindtest).

import * as dgram from 'node:dgram';
import { WgError } from '../errors.js';
import type { Endpoint } from '../peer.js';
import { formatIP, parseIP } from '../ip.js';
import * as libc from './libc.js';
import { E, errnoText } from './libc.js';

export interface Bind {
  /** The bound UDP port (the same on both families). */
  readonly port: number;
  /** Datagrams that could not be sent (bad endpoint, socket error, closed). */
  readonly sendErrors?: number;
  /** Queues one datagram; never throws. `data` must not be modified until the datagram is gone. */
  send(data: Uint8Array, to: Endpoint): void;
  /** The single receive callback (a later call replaces it). `from.addr` is 4 bytes for IPv4 peers. */
  onReceive(cb: (data: Buffer, from: Endpoint) => void): void;
  /** SO_MARK on both sockets; 0 or a positive errno. */
  setMark(mark: number): number;
  close(): Promise<void>;
}

// Asked for with SO_*BUFFORCE (root may exceed net.core.rmem_max), else the plain option, which the kernel caps.
const SOCKET_BUFFER = 4 << 20;
const PORT_TRIES = 8;
// Outgoing datagrams are copied into a ring of SEND_RING buffers; at most SEND_QUEUE_MAX may wait in libuv's
// queue, so a buffer is never reused while the kernel has yet to take it.
const SEND_RING = 4096;
const SEND_QUEUE_MAX = SEND_RING / 2;
const SEND_BUFFER_SIZE = 4096;

const isV4Mapped = (a: Uint8Array): boolean =>
  a.length === 16 && a[10] === 0xff && a[11] === 0xff && a.subarray(0, 10).every((b) => b === 0);

/** An IPv4-mapped IPv6 address becomes its 4 IPv4 bytes, so one peer never has two spellings. */
export const unmapV4 = (a: Uint8Array): Uint8Array => (isV4Mapped(a) ? a.subarray(12) : a);

function sockaddr(family: 4 | 6, port: number): Buffer {
  // sockaddr_in is 16 bytes, sockaddr_in6 28; the wildcard address is all zeros in both.
  const sa = Buffer.alloc(family === 4 ? 16 : 28);
  sa.writeUInt16LE(family === 4 ? libc.AF_INET : libc.AF_INET6, 0);
  sa.writeUInt16BE(port, 2);
  return sa;
}

function setBuffers(fd: number): void {
  const pairs = [
    [libc.SO_RCVBUFFORCE, libc.SO_RCVBUF],
    [libc.SO_SNDBUFFORCE, libc.SO_SNDBUF],
  ];
  for (const [force, plain] of pairs) {
    if (libc.setsockoptInt(fd, libc.SOL_SOCKET, force, SOCKET_BUFFER) < 0) {
      libc.setsockoptInt(fd, libc.SOL_SOCKET, plain, SOCKET_BUFFER); // best effort: a small buffer still works
    }
  }
}

/** A bound, non-blocking UDP socket fd, or -errno. */
function rawSocket(family: 4 | 6, port: number, mark: number): number {
  const fd = libc.socket(family === 4 ? libc.AF_INET : libc.AF_INET6, libc.SOCK_DGRAM | libc.SOCK_NONBLOCK | libc.SOCK_CLOEXEC);
  if (fd < 0) return fd;
  let r = 0;
  if (family === 6) r = libc.setsockoptInt(fd, libc.IPPROTO_IPV6, libc.IPV6_V6ONLY, 1);
  if (r === 0) setBuffers(fd);
  if (r === 0 && mark !== 0) r = libc.setsockoptInt(fd, libc.SOL_SOCKET, libc.SO_MARK, mark);
  if (r === 0) r = libc.bind(fd, sockaddr(family, port));
  if (r < 0) {
    libc.close(fd);
    return r;
  }
  return fd;
}

function boundPort(fd: number): number {
  const sa = Buffer.alloc(28);
  return libc.getsockname(fd, sa) < 0 ? -1 : sa.readUInt16BE(2);
}

function bindError(family: 4 | 6, port: number, errno: number): WgError {
  const what = `UDP port ${port} (IPv${family})`;
  if (errno === E.EADDRINUSE) return new WgError('EADDRINUSE', `${what} is already in use`, errno);
  if (errno === E.EPERM) return new WgError('EPERM', `${what}: setting SO_MARK needs CAP_NET_ADMIN`, errno);
  return new WgError(errnoText(errno).split(' ')[0], `cannot bind ${what}: ${errnoText(errno)}`, errno);
}

const checkMark = (mark: number): boolean => Number.isInteger(mark) && mark >= 0 && mark <= 0xffffffff;

/**
 * Binds UDP `port` on 0.0.0.0 and [::] (IPv6-only). Port 0 picks a port free on IPv4 and retries if IPv6
 * has it taken. Without IPv6 in the kernel (EAFNOSUPPORT) it runs on IPv4 alone, as wireguard-go does.
 */
export async function openBind(port: number, opts: { mark?: number } = {}): Promise<Bind> {
  return openBindSync(port, opts);
}

/** openBind, synchronously: the UAPI must answer a listen_port change with the bind's real errno. */
export function openBindSync(port: number, opts: { mark?: number } = {}): Bind {
  const mark = opts.mark ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new WgError('EINVAL', `invalid UDP port ${port}`, E.EINVAL);
  if (!checkMark(mark)) throw new WgError('EINVAL', `invalid fwmark ${mark}`, E.EINVAL);
  for (let attempt = 0; attempt < (port === 0 ? PORT_TRIES : 1); attempt++) {
    const fd4 = rawSocket(4, port, mark);
    if (fd4 < 0) throw bindError(4, port, -fd4);
    const p = port || boundPort(fd4);
    if (p <= 0) {
      libc.close(fd4);
      throw new WgError('EIO', 'getsockname failed on a bound UDP socket', E.EIO);
    }
    const fd6 = rawSocket(6, p, mark);
    if (fd6 === -E.EADDRINUSE && port === 0) {
      libc.close(fd4);
      continue;
    }
    if (fd6 < 0 && fd6 !== -E.EAFNOSUPPORT) {
      libc.close(fd4);
      throw bindError(6, p, -fd6);
    }
    return new UdpBind(fd4, fd6 < 0 ? -1 : fd6, p);
  }
  throw new WgError('EADDRINUSE', `no UDP port free on both IPv4 and IPv6 after ${PORT_TRIES} tries`, E.EADDRINUSE);
}

class UdpBind implements Bind {
  sendErrors = 0;
  recvErrors = 0;
  /** Datagrams that arrived before onReceive was called. */
  unclaimed = 0;
  private cb: ((data: Buffer, from: Endpoint) => void) | null = null;
  private readonly v4: dgram.Socket;
  private readonly v6: dgram.Socket | null;
  private closing: Promise<void> | null = null;
  // rinfo.address is text; peers are few, so sources are cached as Endpoints (bounded, cleared when full).
  private readonly fromCache = new Map<string, Map<number, Endpoint>>();
  private readonly fromAddr = new WeakMap<Map<number, Endpoint>, Uint8Array>();
  private readonly sendRing = Array.from({ length: SEND_RING }, () => Buffer.allocUnsafe(SEND_BUFFER_SIZE));
  private sendNext = 0;
  private readonly textCache = new WeakMap<Endpoint, string>();

  constructor(
    /** The raw fds (owned by the dgram sockets; -1 for a missing IPv6 socket), e.g. for getsockopt in tests. */
    readonly fd4: number,
    readonly fd6: number,
    readonly port: number,
  ) {
    this.v4 = this.adopt('udp4', fd4);
    this.v6 = fd6 >= 0 ? this.adopt('udp6', fd6) : null;
  }

  private adopt(type: 'udp4' | 'udp6', fd: number): dgram.Socket {
    // Destinations are always numeric: answering the lookup synchronously skips dns.lookup's extra tick.
    const lookup = (host: string, _o: unknown, cb: (e: Error | null, a: string, f: number) => void): void =>
      cb(null, host, type === 'udp4' ? 4 : 6);
    const s = dgram.createSocket({ type, lookup: lookup as dgram.SocketOptions['lookup'] });
    // Without a send callback, a failed send surfaces here (as do receive errors).
    s.on('error', () => this.recvErrors++);
    s.on('message', (msg, rinfo) => {
      const cb = this.cb;
      const from = this.endpointOf(rinfo.address, rinfo.port);
      if (!cb || !from) {
        this.unclaimed++;
        return;
      }
      cb(msg, from);
    });
    s.bind({ fd }); // wraps the already-bound fd; dgram takes ownership and closes it
    return s;
  }

  /**
   * The Endpoint for a datagram's source, the same frozen object for every datagram from that source: a
   * receiver that keeps one (roaming) copies it, so the hot path allocates nothing per datagram here.
   */
  private endpointOf(text: string, port: number): Endpoint | null {
    let ports = this.fromCache.get(text);
    if (!ports) {
      const pct = text.indexOf('%'); // a link-local zone; Endpoint has no place for it
      const parsed = parseIP(pct < 0 ? text : text.slice(0, pct));
      if (!parsed) return null;
      if (this.fromCache.size >= 1024) this.fromCache.clear();
      ports = new Map();
      this.fromCache.set(text, ports);
      this.fromAddr.set(ports, unmapV4(parsed));
    }
    let ep = ports.get(port);
    if (!ep) {
      if (ports.size >= 1024) ports.clear();
      ep = Object.freeze({ addr: this.fromAddr.get(ports)!, port });
      ports.set(port, ep);
    }
    return ep;
  }

  send(data: Uint8Array, to: Endpoint): void {
    try {
      const sock = to.addr.length === 4 || isV4Mapped(to.addr) ? this.v4 : this.v6;
      // libuv sends synchronously unless the socket buffer is full; then it queues and keeps the memory
      // until later. The caller's bytes live in a slot that is reused at once, so they are copied into a
      // ring of buffers that a bounded queue can never lap.
      if (!sock || data.length > SEND_BUFFER_SIZE || sock.getSendQueueCount() >= SEND_QUEUE_MAX) {
        this.sendErrors++;
        return;
      }
      const buf = this.sendRing[this.sendNext];
      this.sendNext = (this.sendNext + 1) % SEND_RING;
      buf.set(data);
      sock.send(buf, 0, data.length, to.port, this.addressText(to));
    } catch {
      this.sendErrors++; // closed socket, bad port: dgram throws synchronously for those
    }
  }

  /** The destination as text for dgram, made once per Endpoint object rather than once per packet. */
  private addressText(to: Endpoint): string {
    let t = this.textCache.get(to);
    if (t === undefined) {
      t = formatIP(unmapV4(to.addr));
      this.textCache.set(to, t);
    }
    return t;
  }

  onReceive(cb: (data: Buffer, from: Endpoint) => void): void {
    this.cb = cb;
  }

  setMark(mark: number): number {
    if (!checkMark(mark)) return E.EINVAL;
    if (this.closing) return E.EBADF; // the fd numbers may already belong to someone else
    for (const fd of [this.fd4, this.fd6]) {
      if (fd < 0) continue;
      const r = libc.setsockoptInt(fd, libc.SOL_SOCKET, libc.SO_MARK, mark);
      if (r < 0) return -r;
    }
    return 0;
  }

  close(): Promise<void> {
    this.closing ??= Promise.all(
      [this.v4, this.v6].map((s) => (s ? new Promise<void>((resolve) => s.close(() => resolve())) : undefined)),
    ).then(() => undefined);
    return this.closing;
  }
}

/** Datagrams queued on a MemoryNetwork, delivered in order on a later macrotask. */
interface Flight {
  from: Endpoint;
  to: Endpoint;
  data: Uint8Array;
}

const epKey = (ep: Endpoint): string => `${formatIP(unmapV4(ep.addr))}|${ep.port}`;

/** Connects MemoryBinds by endpoint. `filter` may drop (false) or inspect every datagram. */
export class MemoryNetwork {
  filter: ((d: Flight) => boolean) | null = null;
  /** Datagrams to an endpoint nobody has bound, or refused by the filter. */
  dropped = 0;
  private readonly binds = new Map<string, MemoryBind>();
  private readonly queue: Flight[] = [];
  private scheduled = false;
  private nextPort = 40000;

  bind(addr: Uint8Array, port = 0): MemoryBind {
    const ep = { addr: Uint8Array.from(unmapV4(addr)), port: port || this.nextPort++ };
    const key = epKey(ep);
    if (this.binds.has(key)) throw new WgError('EADDRINUSE', `${key.replace('|', ' port ')} is already bound`, E.EADDRINUSE);
    const b = new MemoryBind(this, ep);
    this.binds.set(key, b);
    return b;
  }

  /** @internal used by MemoryBind */
  unbind(b: MemoryBind): void {
    if (this.binds.get(epKey(b.endpoint)) === b) this.binds.delete(epKey(b.endpoint));
  }

  /** @internal used by MemoryBind */
  post(d: Flight): void {
    this.queue.push(d);
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.flush());
  }

  private flush(): void {
    this.scheduled = false;
    // Only what is queued now: replies sent from callbacks go out on the next round, like a real network.
    for (const d of this.queue.splice(0)) {
      const dest = this.binds.get(epKey(d.to));
      if (!dest || (this.filter && !this.filter(d))) {
        this.dropped++;
        continue;
      }
      dest.deliver(d.data, d.from);
    }
  }
}

export class MemoryBind implements Bind {
  sendErrors = 0;
  mark = 0;
  private cb: ((data: Buffer, from: Endpoint) => void) | null = null;
  private closed = false;

  constructor(
    private readonly net: MemoryNetwork,
    readonly endpoint: Endpoint,
  ) {}

  /** Two binds on one new network: 198.51.100.1 and 198.51.100.2, ports 51821 and 51822. */
  static pair(): [MemoryBind, MemoryBind] {
    const net = new MemoryNetwork();
    return [net.bind(Uint8Array.of(198, 51, 100, 1), 51821), net.bind(Uint8Array.of(198, 51, 100, 2), 51822)];
  }

  get port(): number {
    return this.endpoint.port;
  }

  send(data: Uint8Array, to: Endpoint): void {
    const a = unmapV4(to.addr);
    if (this.closed || (a.length !== 4 && a.length !== 16) || to.port <= 0 || to.port > 65535) {
      this.sendErrors++;
      return;
    }
    this.net.post({ from: this.endpoint, to: { addr: Uint8Array.from(a), port: to.port }, data: Uint8Array.from(data) });
  }

  /** @internal called by MemoryNetwork */
  deliver(data: Uint8Array, from: Endpoint): void {
    if (this.closed || !this.cb) return;
    this.cb(Buffer.from(data), { addr: Uint8Array.from(from.addr), port: from.port });
  }

  onReceive(cb: (data: Buffer, from: Endpoint) => void): void {
    this.cb = cb;
  }

  setMark(mark: number): number {
    if (!checkMark(mark)) return E.EINVAL;
    this.mark = mark;
    return 0;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.net.unbind(this);
  }
}
