// The in-memory UDP seam for tests (wireguard-go's bindtest): MemoryBinds joined by a MemoryNetwork, which
// delivers queued datagrams in order on a later macrotask and ends each receiver's round with its batchEnd,
// as a socket bind ends each burst (bind.ts).

import { WgError } from '../errors.js';
import type { Endpoint } from '../peer.js';
import { formatIP } from '../ip.js';
import { E } from './libc.js';
import { checkMark, unmapV4, validEndpoint, type Bind, type ReceiveFn } from './bind.js';

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
    const ended = new Set<MemoryBind>();
    for (const d of this.queue.splice(0)) {
      const dest = this.binds.get(epKey(d.to));
      if (!dest || (this.filter && !this.filter(d))) {
        this.dropped++;
        continue;
      }
      dest.deliver(d.data, d.from);
      ended.add(dest);
    }
    for (const b of ended) b.endBatch();
  }
}

export class MemoryBind implements Bind {
  sendErrors = 0;
  mark = 0;
  private cb: ReceiveFn | null = null;
  private batchEnd: (() => void) | undefined;
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
    if (this.closed || !validEndpoint(to)) {
      this.sendErrors++;
      return;
    }
    this.net.post({ from: this.endpoint, to: { addr: Uint8Array.from(unmapV4(to.addr)), port: to.port }, data: Uint8Array.from(data) });
  }

  queue(buf: Uint8Array, off: number, len: number, to: Endpoint): void {
    this.send(buf.subarray(off, off + len), to);
  }

  flush(): void {}

  /** @internal called by MemoryNetwork */
  deliver(data: Uint8Array, from: Endpoint): void {
    if (this.closed || !this.cb) return;
    this.cb(Buffer.from(data), 0, data.length, { addr: Uint8Array.from(from.addr), port: from.port });
  }

  /** @internal a delivery round is over: the receiver's batchEnd, as a socket bind's burst ends. */
  endBatch(): void {
    if (!this.closed) this.batchEnd?.();
  }

  onReceive(cb: ReceiveFn, batchEnd?: () => void): void {
    this.cb = cb;
    this.batchEnd = batchEnd;
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
