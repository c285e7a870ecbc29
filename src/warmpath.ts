// The data path run at start-up, the companion of warmup.ts (which runs the protocol core alone, in memory):
// two detached daemons in this process (Daemon.detached), each with one end of a socketpair for a TUN and UDP
// sockets on loopback, ping each other through the classes, closures and system calls of a real tunnel
// (protocol.md "Transport"; the path of the README's "The data path"). Without it a fresh tunnel's data path
// runs in V8's interpreter and baseline code for its first few hundred packets: blocks of 100 pings 20 ms
// apart took 1.73 ms at first and ~0.78 only after ~1000 (README, "What limits wgts now"). V8 keeps type
// feedback and optimised code per function, shared by every instance of a class and every closure made at
// one site, so what the warm-up's daemons teach V8 is what the real one runs. They are the same classes
// over the same kinds of fds (a NativeTun, koffi sockets), so no call site learns a second receiver type.
//
// Nothing leaves the process: the sockets are bound to 127.0.0.1 and [::1], the keys are random and dropped,
// the inner addresses are documentation ranges, and the TUN stand-ins are socketpairs. Pacing keeps the load
// below what starts the TUN reader thread (tunfeed.ts) or the crypto workers (pool.ts). Best effort: with no
// loopback (a namespace whose lo is down) or any failure it stops early and the daemon is as before.

import { peerEachOther, randomKeys } from './warmup.js';
import { DEFAULT_MTU } from './constants.js';
import type { Device } from './device.js';
import { ipv4HeaderChecksum } from './dataplane/checksum.js';
import { socketTun, tunRead, tunWrite, type TunDevice } from './tun/tun.js';
import { FdWatcher } from './tun/uvpoll.js';
import * as sys from './tun/sys.js';
import { E, SOCK_CLOEXEC, SOCK_NONBLOCK } from './tun/libc.js';
import { VNET_HDR_LEN } from './dataplane/offload.js';

const AF_UNIX = 1;
const SOCK_SEQPACKET = 5;
/** An echo request the size of ping's default (56 data bytes). */
const ECHO_LEN = 84;
/**
 * Round trips per millisecond at most, so that each daemon's TUN reads (two a round trip: the packet, then
 * the read that finds none) stay well under the 10,000/s that start its reader thread (tunfeed.ts).
 */
const PER_MS = 2;
/** No answer for this long (no loopback, say): the warm-up gives up. */
const STALL_MS = 1_000;

/** What the warm-up needs of a daemon (Daemon.detached makes one). */
export interface WarmEnd {
  readonly device: Device;
  readonly listenPort: number;
  stop(why: string): Promise<void>;
}

export interface PathWarmUpOptions {
  /** A detached daemon over `tun` (its MTU is DEFAULT_MTU); may throw. */
  open(tun: TunDevice, mtu: number): WarmEnd;
  /** As the real TUN: a virtio_net_hdr on every packet, and USO. */
  vnetHdr: boolean;
  uso: boolean;
  roundTrips: number;
  /** Asked before each round trip: a stopping daemon ends the warm-up. */
  cancelled(): boolean;
}

/**
 * The round trips made (fewer if cancelled, or if the path stalled for STALL_MS), or null when the daemons
 * could not be made. Never rejects: a warm-up that failed has warmed up less, and the daemon is unaffected.
 */
export async function warmDataPath(opts: PathWarmUpOptions): Promise<number | null> {
  const ours: number[] = [];
  const ends: WarmEnd[] = [];
  const watchers: FdWatcher[] = [];
  try {
    const pair = new Int32Array(2);
    for (let i = 0; i < 2; i++) {
      if (sys.socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, pair) < 0) return null;
      ours.push(pair[1]); // the daemon's end, pair[0], is its TUN: its stop() closes it
      const tun = socketTun(pair[0], opts.vnetHdr, opts.uso);
      try {
        ends.push(opts.open(tun, DEFAULT_MTU));
      } catch {
        tun.close();
        return null;
      }
    }
    const devices = ends.map((e) => e.device);
    randomKeys(devices);
    // Each the other's peer at 127.0.0.1, allowed 203.0.113.1 and .2 (RFC 5737).
    peerEachOther(devices, ends.map((e) => ({ addr: Uint8Array.of(127, 0, 0, 1), port: e.listenPort })));
    return await pingPong(ours[0], ours[1], opts, watchers);
  } catch {
    return null;
  } finally {
    for (const end of ends) await end.stop('warm-up done').catch(() => undefined);
    for (const w of watchers) w.close();
    for (const fd of ours) sys.close(fd);
  }
}

/**
 * a's TUN gets echo requests from .1 to .2; b's TUN end answers each as a kernel would; the next request goes
 * once a's TUN end has the reply. Resolves with the round trips made.
 */
function pingPong(aFd: number, bFd: number, opts: PathWarmUpOptions, watchers: FdWatcher[]): Promise<number> {
  const hdr = opts.vnetHdr ? VNET_HDR_LEN : 0; // an all-zero virtio_net_hdr: a plain packet
  const request = new Uint8Array(hdr + ECHO_LEN);
  const ip = request.subarray(hdr);
  // No ICMP checksum: nothing on this path reads it.
  ip.set([0x45, 0, 0, ECHO_LEN, 0, 0, 0x40, 0, 64, 1, 0, 0, 203, 0, 113, 1, 203, 0, 113, 2, 8]);
  const buf = new Uint8Array(hdr + 2048);
  let made = 0;
  return new Promise((resolve) => {
    const began = performance.now();
    let last = began;
    let settled = false;
    const finish = (): void => {
      if (settled) return;
      settled = true;
      clearInterval(stall);
      resolve(made);
    };
    const stall = setInterval(() => {
      if (performance.now() - last > STALL_MS) finish();
    }, STALL_MS / 4);
    const next = (): void => {
      if (settled) return;
      if (made >= opts.roundTrips || opts.cancelled()) return finish();
      ip[4] = made >>> 8; // an IP ID and an ICMP sequence number of its own, as ping's
      ip[5] = made & 0xff;
      ip[27] = made & 0xff;
      const sum = ipv4HeaderChecksum(ip, 0);
      ip[10] = sum >>> 8;
      ip[11] = sum & 0xff;
      if (tunWrite(aFd, request, 0, request.length) !== request.length) finish();
    };
    // b's side of the tunnel: the request came out of b's TUN; the reply goes back in, addresses swapped.
    watchers.push(new FdWatcher(bFd, () => {
      const n = tunRead(bFd, buf, 0, buf.length);
      if (n < hdr + 20) return void (n !== -E.EAGAIN && finish());
      const p = buf.subarray(hdr, n);
      for (let i = 12; i < 16; i++) [p[i], p[i + 4]] = [p[i + 4], p[i]];
      p[20] = 0; // echo reply
      tunWrite(bFd, buf, 0, n);
    }, finish));
    // a's side: the reply came out of a's TUN; the next request goes at once unless ahead of PER_MS.
    watchers.push(new FdWatcher(aFd, () => {
      const n = tunRead(aFd, buf, 0, buf.length);
      if (n < hdr + 20) return void (n !== -E.EAGAIN && finish());
      made++;
      last = performance.now();
      if (made > (last - began) * PER_MS) setTimeout(next, 1);
      else next();
    }, finish));
    for (const w of watchers) w.start();
    next();
  });
}
