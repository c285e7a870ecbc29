// Network change notifications through rtnetlink(7): one NETLINK_ROUTE socket in the daemon's namespace, joined
// to the multicast groups of links, addresses, routes, rules and nexthops. The kernel module learns of these
// changes from its own notifier chains and wireguard-go from the same kind of socket (RTMGRP_LINK and the
// address groups); wgts used to poll instead, waking an idle daemon twice a second for its link and asking
// the kernel for each endpoint's route once a second on the packet path. Now the link watch probes the TUN
// only when a link changed, and the routing-loop guard keeps its answers until something they depend on did.

import { E } from './libc.js'; // constants only
import * as libc from './libc.js';
import * as sys from './sys.js';
import { FdWatcher } from './uvpoll.js';

const AF_NETLINK = 16;
const SOCK_RAW = 3;
const NETLINK_ROUTE = 0;

/** What changed, as bits: a listener is told the union of one read's messages. */
export const LINK = 1;
export const ADDRESS = 2;
export const ROUTE = 4;
/** Messages were lost (the socket's buffer overflowed): assume everything changed. */
export const ALL = LINK | ADDRESS | ROUTE;

// rtnetlink groups (RTNLGRP_*), as bits of sockaddr_nl.nl_groups: group g is bit g - 1.
const GROUPS = [
  1, // RTNLGRP_LINK
  5, // RTNLGRP_IPV4_IFADDR
  7, // RTNLGRP_IPV4_ROUTE
  8, // RTNLGRP_IPV4_RULE
  9, // RTNLGRP_IPV6_IFADDR
  11, // RTNLGRP_IPV6_ROUTE
  19, // RTNLGRP_IPV6_RULE
  32, // RTNLGRP_NEXTHOP: routes that use nexthop objects change through these
].reduce((mask, g) => (mask | (1 << (g - 1))) >>> 0, 0);

/** The kind of change an rtnetlink message type reports (RTM_NEWLINK = 16 ... RTM_DELNEXTHOP = 105), or 0. */
export function changeOf(type: number): number {
  if (type === 16 || type === 17) return LINK; // RTM_NEWLINK, RTM_DELLINK
  if (type === 20 || type === 21) return ADDRESS; // RTM_NEWADDR, RTM_DELADDR
  if (type === 24 || type === 25) return ROUTE; // RTM_NEWROUTE, RTM_DELROUTE
  if (type === 32 || type === 33) return ROUTE; // RTM_NEWRULE, RTM_DELRULE
  if (type === 104 || type === 105) return ROUTE; // RTM_NEWNEXTHOP, RTM_DELNEXTHOP
  return 0;
}

/** The changes in one datagram of `len` bytes: a run of nlmsghdrs (u32 length, u16 type, ...), 4-aligned. */
export function changesIn(buf: Uint8Array, len: number): number {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let bits = 0;
  len = Math.min(len, buf.length);
  for (let off = 0; off + 16 <= len; ) {
    const mlen = dv.getUint32(off, true);
    if (mlen < 16 || off + mlen > len) break;
    bits |= changeOf(dv.getUint16(off + 4, true));
    off += (mlen + 3) & ~3;
  }
  return bits;
}

const RCVBUF = 1 << 20;
const READ_SIZE = 65_536;
/** Reads per readiness callback: a flood of route changes must not hold the control thread. */
const READS_PER_TURN = 64;

/**
 * Listens on the calling thread's current network namespace. Listeners run from the event loop with the
 * changes of each batch read; they must not throw (a throw is swallowed). close() stops for good.
 */
export class NetWatch {
  private readonly listeners: Array<(changes: number) => void> = [];
  private readonly buf = new Uint8Array(new SharedArrayBuffer(READ_SIZE));
  private readonly addr = sys.addressOf(this.buf);
  private readonly watcher: FdWatcher;
  private closed = false;

  private constructor(private readonly fd: number) {
    this.watcher = new FdWatcher(fd, () => this.readable(), () => this.failed());
    this.watcher.start();
  }

  /** A watch on this namespace, or null when rtnetlink cannot be had here (the callers then poll). */
  static open(): NetWatch | null {
    const fd = sys.socket(AF_NETLINK, SOCK_RAW | libc.SOCK_NONBLOCK | libc.SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0) return null;
    sys.setSocketBuffer(fd, 'rcv', RCVBUF);
    const sa = new Uint8Array(12); // sockaddr_nl: family, pad, pid (0: the kernel picks), groups
    const dv = new DataView(sa.buffer);
    dv.setUint16(0, AF_NETLINK, true);
    dv.setUint32(8, GROUPS, true);
    if (sys.bind(fd, sa) < 0) {
      sys.close(fd);
      return null;
    }
    try {
      return new NetWatch(fd);
    } catch {
      sys.close(fd);
      return null;
    }
  }

  onChange(cb: (changes: number) => void): () => void {
    this.listeners.push(cb);
    return () => {
      const i = this.listeners.indexOf(cb);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.watcher.close();
    sys.close(this.fd);
  }

  /**
   * libuv saw POLLERR and stopped watching: an overflow (ENOBUFS) is reported that way. The read consumes
   * the error; only a socket that is gone ends the watch, and then the listeners are told once more.
   */
  private failed(): void {
    if (this.closed) return;
    const bad = this.readable() === -E.EBADF;
    this.tell(ALL);
    if (!bad) this.watcher.start();
  }

  /** Reads what is queued and tells the listeners; returns the last read's result. */
  private readable(): number {
    let bits = 0;
    let n = 0;
    for (let i = 0; i < READS_PER_TURN; i++) {
      n = sys.readAt(this.fd, this.addr, READ_SIZE);
      if (n === -E.EINTR) continue;
      if (n === -E.ENOBUFS) bits |= ALL; // the next read returns what is still queued
      else if (n <= 0) break;
      else bits |= changesIn(this.buf, n);
    }
    if (bits) this.tell(bits);
    return n;
  }

  private tell(bits: number): void {
    if (this.closed) return;
    for (const cb of this.listeners.slice()) {
      try {
        cb(bits);
      } catch {
        // a listener's failure must not stop the others, nor unwind into libuv
      }
    }
  }
}
