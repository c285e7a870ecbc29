// Routing-loop avoidance (the kernel module's "Avoiding routing loop" in its socket send path): before UDP goes
// to an endpoint, ask the kernel through rtnetlink(7) RTM_GETROUTE which interface the route leaves by, with our
// fwmark. If that is our own TUN, sending would feed our packets back into ourselves, so the send is refused.
// The answers are cached per endpoint until rtnetlink reports a change (netwatch.ts).

import * as libc from './libc.js';
import * as sys from './sys.js';
import type { Endpoint } from '../peer.js';
import type { NetWatch } from './netwatch.js';

const AF_NETLINK = 16;
const SOCK_RAW = 3;
const RTM_NEWROUTE = 24;
const RTM_GETROUTE = 26;
const NLM_F_REQUEST = 1;
const NLMSG_ERROR = 2;
const RTA_DST = 1;
const RTA_OIF = 4;
const RTA_MARK = 16;

// One query and one answer at a time (the control thread alone asks), so both live as long as the process.
const query = new Uint8Array(64);
const queryView = new DataView(query.buffer);
const reply = new Uint8Array(4096);
const replyView = new DataView(reply.buffer);

/**
 * The output interface index the kernel picks for `addr` (4 or 16 bytes) with `mark`, or -errno. It runs on
 * the first send to each endpoint, a tunnel's first packet among them, so every call goes through koffi
 * (sys.ts) into buffers made once: through ffi-rs and node's fs the lookup took 330-520 us of a first
 * handshake's send here, most of it the first few calls' warm-up (measured in the daemon).
 */
export function routeInterface(addr: Uint8Array, mark: number): number {
  const nl = sys.socket(AF_NETLINK, SOCK_RAW | libc.SOCK_CLOEXEC);
  if (nl < 0) return nl;
  try {
    const v6 = addr.length === 16;
    const dstAttr = 4 + addr.length;
    const len = 16 + 12 + dstAttr + (mark ? 8 : 0);
    query.fill(0);
    queryView.setUint32(0, len, true);
    queryView.setUint16(4, RTM_GETROUTE, true);
    queryView.setUint16(6, NLM_F_REQUEST, true);
    queryView.setUint32(8, 1, true);
    query[16] = v6 ? libc.AF_INET6 : libc.AF_INET; // rtmsg: family, dst_len, ...
    query[17] = addr.length * 8;
    queryView.setUint16(28, dstAttr, true);
    queryView.setUint16(30, RTA_DST, true);
    query.set(addr, 32);
    if (mark) {
      queryView.setUint16(28 + dstAttr, 8, true);
      queryView.setUint16(30 + dstAttr, RTA_MARK, true);
      queryView.setUint32(32 + dstAttr, mark >>> 0, true);
    }
    const sent = sys.send(nl, query, len);
    if (sent < 0) return sent;
    // rtnetlink answers inside send(), so the reply is already queued: this read cannot block.
    const n = sys.recv(nl, reply, sys.MSG_DONTWAIT);
    if (n < 0) return n;
    if (n < 16) return -libc.E.EIO;
    const type = replyView.getUint16(4, true);
    if (type === NLMSG_ERROR) return n >= 20 ? replyView.getInt32(16, true) || -libc.E.EIO : -libc.E.EIO;
    if (type !== RTM_NEWROUTE) return -libc.E.EIO;
    const end = Math.min(n, replyView.getUint32(0, true));
    for (let off = 16 + 12; off + 4 <= end; ) {
      const alen = replyView.getUint16(off, true);
      if (alen < 4) break;
      const oif = replyView.getUint16(off + 2, true) === RTA_OIF && alen >= 8 && off + 8 <= end;
      if (oif) return replyView.getUint32(off + 4, true);
      off += (alen + 3) & ~3;
    }
    return -libc.E.EIO;
  } catch {
    return -libc.E.EIO; // an address of another length: no answer rather than an exception on a send
  } finally {
    sys.close(nl);
  }
}

/** The index of interface `name` in this process's namespace, or -errno (ENODEV once it moved away). */
export function interfaceIndex(name: string): number {
  return sys.ifNameToIndex(name);
}

/** Without change notifications, re-asks the kernel at most this often per endpoint: routes change (wg-quick adds them after `wg addconf`). */
const RECHECK_MS = 1_000;
/**
 * With them (netwatch.ts) an answer stands until a link, address, route or rule changes. This bound is only
 * for a change no group reports; checking costs a few system calls and happens on a send, never on a timer.
 */
const WATCHED_RECHECK_MS = 10_000;

/** Answers kept by address at most; past this many (roaming peers, say, with no notifications) they start over. */
const MAX_ADDRESSES = 4096;

interface Answer {
  at: number;
  loops: boolean;
  out: number;
}

/** Per-endpoint answer to "does sending there loop into our own TUN?", cached until a change or briefly. */
export class LoopGuard {
  /** By Endpoint object: what every send asks, with no key to build. */
  private cache = new WeakMap<Endpoint, Answer>();
  /**
   * By address, for a new Endpoint object at an address already asked about: the route depends only on the
   * address and the mark, and a handshake replaces the endpoint object with one the peer's datagram came
   * from (its source address attached), which would otherwise ask again on the tunnel's first packet.
   */
  private byAddress = new Map<string, Answer>();
  /** Our TUN's index, asked once for all endpoints and forgotten with the answers. */
  private tun = { at: -Infinity, index: 0 };
  private recheckMs = RECHECK_MS;

  /** `ask` and `index` are the kernel queries above; tests count calls through stand-ins. */
  constructor(
    private readonly tunName: () => string,
    private readonly mark: () => number,
    private readonly ask: (addr: Uint8Array, mark: number) => number = routeInterface,
    private readonly index: (name: string) => number = interfaceIndex,
  ) {}

  /** From now on every change `watch` reports drops the answers, which are then kept longer. */
  follow(watch: NetWatch): () => void {
    this.recheckMs = WATCHED_RECHECK_MS;
    this.forget();
    const off = watch.onChange(() => this.forget());
    return () => {
      off();
      this.recheckMs = RECHECK_MS;
    };
  }

  /** Drops every answer (a change, or a new fwmark): the next send to each endpoint asks the kernel again. */
  forget(): void {
    this.cache = new WeakMap();
    this.byAddress.clear();
    this.tun = { at: -Infinity, index: 0 };
  }

  loops(to: Endpoint, now = performance.now()): boolean {
    return this.lookup(to, now).loops;
  }

  /**
   * The interface the route to `to` leaves through now, or -errno. A sticky source address is used only
   * while this is still the interface the peer's datagrams came in on (the kernel module's src_if check).
   */
  outInterface(to: Endpoint, now = performance.now()): number {
    return this.lookup(to, now).out;
  }

  private lookup(to: Endpoint, now: number): Answer {
    const hit = this.cache.get(to);
    if (hit && now - hit.at < this.recheckMs) return hit;
    const key = String.fromCharCode(...to.addr);
    let entry = this.byAddress.get(key);
    if (!entry || now - entry.at >= this.recheckMs) {
      if (now - this.tun.at >= this.recheckMs) this.tun = { at: now, index: this.index(this.tunName()) };
      const tunIndex = this.tun.index;
      const out = this.ask(to.addr, this.mark());
      entry = { at: now, loops: tunIndex > 0 && out === tunIndex, out };
      if (this.byAddress.size >= MAX_ADDRESSES) this.byAddress.clear();
      this.byAddress.set(key, entry);
    }
    this.cache.set(to, entry);
    return entry;
  }
}
