// Routing-loop avoidance (the kernel module's "Avoiding routing loop" in its socket send path): before UDP goes
// to an endpoint, ask the kernel through rtnetlink(7) RTM_GETROUTE which interface the route leaves by, with our
// fwmark. If that is our own TUN, sending would feed our packets back into ourselves, so the send is refused.
// The answers are cached per endpoint until rtnetlink reports a change (netwatch.ts).

import * as fs from 'node:fs';
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
const SIOCGIFINDEX = 0x8933;

/**
 * The output interface index the kernel picks for `addr` (4 or 16 bytes) with `mark`, or -errno. It runs on
 * the first send to each endpoint, a tunnel's first packet among them, so its socket is opened and closed
 * through koffi (sys.ts, ~1 us a call) rather than ffi-rs (~10 us a call hot, ~50 in the first few calls of
 * a fresh process, which is what a first send meets; measured here).
 */
export function routeInterface(addr: Uint8Array, mark: number): number {
  const nl = sys.socket(AF_NETLINK, SOCK_RAW | libc.SOCK_CLOEXEC);
  if (nl < 0) return nl;
  try {
    const v6 = addr.length === 16;
    const dstAttr = 4 + addr.length;
    const len = 16 + 12 + dstAttr + (mark ? 8 : 0);
    const msg = Buffer.alloc(len);
    msg.writeUInt32LE(len, 0);
    msg.writeUInt16LE(RTM_GETROUTE, 4);
    msg.writeUInt16LE(NLM_F_REQUEST, 6);
    msg.writeUInt32LE(1, 8);
    msg[16] = v6 ? libc.AF_INET6 : libc.AF_INET; // rtmsg: family, dst_len, ...
    msg[17] = addr.length * 8;
    msg.writeUInt16LE(dstAttr, 28);
    msg.writeUInt16LE(RTA_DST, 30);
    msg.set(addr, 32);
    if (mark) {
      msg.writeUInt16LE(8, 28 + dstAttr);
      msg.writeUInt16LE(RTA_MARK, 30 + dstAttr);
      msg.writeUInt32LE(mark >>> 0, 32 + dstAttr);
    }
    fs.writeSync(nl, msg);
    // rtnetlink answers inside sendmsg, so the reply is already queued: this read cannot block.
    const reply = Buffer.alloc(4096);
    const n = fs.readSync(nl, reply, 0, reply.length, null);
    if (n < 16) return -libc.E.EIO;
    const type = reply.readUInt16LE(4);
    if (type === NLMSG_ERROR) return n >= 20 ? reply.readInt32LE(16) || -libc.E.EIO : -libc.E.EIO;
    if (type !== RTM_NEWROUTE) return -libc.E.EIO;
    const end = Math.min(n, reply.readUInt32LE(0));
    for (let off = 16 + 12; off + 4 <= end; ) {
      const alen = reply.readUInt16LE(off);
      if (alen < 4) break;
      if (reply.readUInt16LE(off + 2) === RTA_OIF && alen >= 8) return reply.readUInt32LE(off + 4);
      off += (alen + 3) & ~3;
    }
    return -libc.E.EIO;
  } catch {
    return -libc.E.EIO;
  } finally {
    sys.close(nl);
  }
}

/** The index of interface `name` in this process's namespace, or -errno (ENODEV once it moved away). */
export function interfaceIndex(name: string): number {
  const fd = libc.socket(libc.AF_INET, libc.SOCK_DGRAM | libc.SOCK_CLOEXEC);
  if (fd < 0) return fd;
  try {
    const ifr = Buffer.alloc(40);
    ifr.write(name, 0, 15, 'latin1');
    const r = libc.ioctl(fd, SIOCGIFINDEX, ifr);
    return r < 0 ? r : ifr.readInt32LE(16);
  } finally {
    libc.close(fd);
  }
}

/** Without change notifications, re-asks the kernel at most this often per endpoint: routes change (wg-quick adds them after `wg addconf`). */
const RECHECK_MS = 1_000;
/**
 * With them (netwatch.ts) an answer stands until a link, address, route or rule changes. This bound is only
 * for a change no group reports; checking costs a few system calls and happens on a send, never on a timer.
 */
const WATCHED_RECHECK_MS = 10_000;

/** Per-endpoint answer to "does sending there loop into our own TUN?", cached until a change or briefly. */
export class LoopGuard {
  private cache = new WeakMap<Endpoint, { at: number; loops: boolean; out: number }>();
  /** Our TUN's index, asked once for all endpoints (three ffi-rs calls) and forgotten with the answers. */
  private tun = { at: -Infinity, index: 0 };
  private recheckMs = RECHECK_MS;

  constructor(
    private readonly tunName: () => string,
    private readonly mark: () => number,
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

  private lookup(to: Endpoint, now: number): { at: number; loops: boolean; out: number } {
    const hit = this.cache.get(to);
    if (hit && now - hit.at < this.recheckMs) return hit;
    if (now - this.tun.at >= this.recheckMs) this.tun = { at: now, index: interfaceIndex(this.tunName()) };
    const tunIndex = this.tun.index;
    const out = routeInterface(to.addr, this.mark());
    const entry = { at: now, loops: tunIndex > 0 && out === tunIndex, out };
    this.cache.set(to, entry);
    return entry;
  }
}
