// The TUN device, the OS seam for IP packets: /dev/net/tun with TUNSETIFF(IFF_TUN | IFF_NO_PI) (Linux
// Documentation/networking/tuntap.rst), netdevice(7) ioctls for MTU and flags, and an in-memory twin for tests
// (the role of wireguard-go's tuntest). Packet I/O is plain blocking read(2)/write(2) through node:fs, so a
// worker thread may call tunRead/tunWrite on the fd without loading ffi-rs (which must stay on the main thread).

import * as fs from 'node:fs';
import { WgError } from '../errors.js';
import { DEFAULT_MTU } from '../constants.js';
import * as libc from './libc.js';
import { E, errnoText } from './libc.js';
import { writevAt } from './sys.js';
import { LINK, type NetWatch } from './netwatch.js';
import { copyOf } from '../dataplane/transport.js';

export interface TunDevice {
  readonly name: string;
  readonly fd: number;
  /**
   * Every read and write carries a 10-byte virtio_net_hdr first (IFF_VNET_HDR): with TUNSETOFFLOAD the kernel
   * hands over TCP super-packets of up to 64 KB and takes coalesced ones back (see dataplane/offload.ts).
   */
  readonly vnetHdr: boolean;
  /** With vnetHdr: the kernel also hands over UDP super-packets (USO, TUN_F_USO4/USO6). */
  readonly uso?: boolean;
  /** Current MTU; throws WgError if the device cannot be queried (e.g. it was deleted). */
  mtu(): number;
  /** Blocking read of one packet: its length, or -errno (-EBADFD once the device is deleted). Never throws. */
  read(buf: Uint8Array, off: number, len: number): number;
  /** Writes one packet: bytes written or -errno (-EIO while the link is down). Never throws. */
  write(buf: Uint8Array, off: number, len: number): number;
  /** Writes one packet gathered from `count` struct iovecs at absolute address `iov` (real devices only). */
  writev?(iov: number, count: number): number;
  /** Deletes the link (unless persistent), which wakes a blocked read() with -EBADFD, and closes the fd. */
  close(): void;
}

export type LinkEvent = { kind: 'mtu'; mtu: number } | { kind: 'up' } | { kind: 'down' } | { kind: 'deleted' };

/** What watchLink probes; both device kinds here implement it. */
export type LinkState = { state: 'closed' } | { state: 'deleted' } | { state: 'present'; up: boolean | null; mtu: number | null };
export interface LinkProbe {
  probeLink(): LinkState;
  /** Whether the link was, at the last probe, in the network namespace of the calling thread. */
  inOwnNamespace?(): boolean;
}

// <linux/if_tun.h>, <linux/sockios.h>, <linux/if.h>, <linux/rtnetlink.h>
const [TUNSETIFF, TUNGETIFF, TUNGETDEVNETNS] = [0x400454ca, 0x800454d2, 0x54e3];
const [SIOCGIFFLAGS, SIOCGIFMTU, SIOCSIFMTU, SIOCGIFINDEX] = [0x8913, 0x8921, 0x8922, 0x8933];
const [IFF_UP, IFF_TUN, IFF_PERSIST, IFF_NO_PI, IFF_VNET_HDR] = [0x1, 0x1, 0x0800, 0x1000, 0x4000];
// TUNSETOFFLOAD with checksum offload, TSO for IPv4 and IPv6, and USO (UDP_SEGMENT super-packets, Linux 6.2+)
// where the kernel has it. TSO_ECN and UFO stay off: the splitter does not handle them, and with them off the
// kernel never hands such packets over.
const TUNSETOFFLOAD = 0x400454d0;
const TUN_F_CSUM_TSO = 0x1 | 0x2 | 0x4;
const TUN_F_USO4_USO6 = 0x20 | 0x40;
const [AF_NETLINK, SOCK_RAW, RTM_DELLINK, NLM_F_REQUEST_ACK, NLMSG_ERROR] = [16, 3, 17, 0x1 | 0x4, 2];
const IFNAMSIZ = 16;
const IFREQ_SIZE = 40; // struct ifreq on 64-bit Linux: name[16] + 24-byte union (flags/mtu/index at offset 16)
const MIN_MTU = 68; // RFC 791's minimum; the tun driver accepts 68..65535
const MAX_MTU = 65535;

const errnoOf = (e: unknown): number => {
  const n = (e as { errno?: unknown }).errno;
  return typeof n === 'number' && n !== 0 ? Math.abs(n) : E.EIO;
};

/**
 * read(2) of one packet. A reader blocked when the device is unregistered is woken with EFAULT (the driver
 * sets RCV_SHUTDOWN on its queue); later reads get EBADFD. Node's buffers are always valid memory, so EFAULT
 * can only mean "detached" and is reported as -EBADFD. EINTR is retried: libuv does not retry reads itself.
 */
export function tunRead(fd: number, buf: Uint8Array, off: number, len: number): number {
  for (let tries = 0; ; tries++) {
    try {
      return fs.readSync(fd, buf, off, len, null);
    } catch (e) {
      const n = errnoOf(e);
      if (n === E.EINTR && tries < 64) continue;
      return n === E.EFAULT ? -E.EBADFD : -n;
    }
  }
}

/** write(2) of one packet; the driver takes all of it or fails (EIO when the link is down). */
export function tunWrite(fd: number, buf: Uint8Array, off: number, len: number): number {
  try {
    return fs.writeSync(fd, buf, off, len, null);
  } catch (e) {
    return -errnoOf(e);
  }
}

/** Interface names the kernel accepts (dev_valid_name): 1..15 bytes, not "."/"..", no '/', ':' or space. */
function checkName(name: string): void {
  const bytes = Buffer.byteLength(name);
  let why = '';
  if (bytes === 0) why = 'is empty';
  else if (bytes >= IFNAMSIZ) why = `is ${bytes} bytes long (at most ${IFNAMSIZ - 1})`;
  else if (name === '.' || name === '..') why = 'is reserved';
  else if (/[/:\s\0]/.test(name)) why = "contains '/', ':', a NUL or whitespace";
  if (why) throw new WgError('EINVAL', `invalid interface name ${JSON.stringify(name)}: ${why}`, E.EINVAL);
}

function ifreq(name: string): Buffer {
  const b = Buffer.alloc(IFREQ_SIZE);
  b.write(name, 0, IFNAMSIZ - 1, 'utf8');
  return b;
}

const ifName = (ifr: Buffer): string => {
  const end = ifr.indexOf(0);
  return ifr.toString('utf8', 0, end < 0 || end > IFNAMSIZ ? IFNAMSIZ : end);
};

/** Runs `fn` with an fd of the TUN device's current namespace (TUNGETDEVNETNS, Linux 5.2), or null. */
function inDeviceNs<T>(tunFd: number, fn: (nsfd: number | null) => T): T {
  const nsfd = libc.ioctlNoArg(tunFd, TUNGETDEVNETNS);
  try {
    return fn(nsfd < 0 ? null : nsfd);
  } finally {
    if (nsfd >= 0) fs.closeSync(nsfd);
  }
}

/** RTM_DELLINK for `index` through rtnetlink(7) in the device's namespace; 0 or -errno from the kernel's ack. */
function deleteLink(tunFd: number, index: number): number {
  const nl = inDeviceNs(tunFd, (nsfd) => libc.socketIn(nsfd, AF_NETLINK, SOCK_RAW));
  try {
    const msg = Buffer.alloc(32); // nlmsghdr (16) + ifinfomsg (16, family AF_UNSPEC)
    msg.writeUInt32LE(32, 0);
    msg.writeUInt16LE(RTM_DELLINK, 4);
    msg.writeUInt16LE(NLM_F_REQUEST_ACK, 6);
    msg.writeUInt32LE(1, 8);
    msg.writeInt32LE(index, 20);
    fs.writeSync(nl.fd, msg);
    // rtnetlink handles the request inside sendmsg, so the ack is already queued: this read cannot block.
    const ack = Buffer.alloc(1024);
    const n = fs.readSync(nl.fd, ack, 0, ack.length, null);
    return n >= 20 && ack.readUInt16LE(4) === NLMSG_ERROR ? ack.readInt32LE(16) : -E.EIO;
  } catch (e) {
    return -errnoOf(e);
  } finally {
    libc.close(nl.fd);
  }
}

class NativeTun implements TunDevice, LinkProbe {
  private ctl: { fd: number; ns: number };
  private ifname: string;
  private closed = false;

  constructor(
    readonly fd: number,
    name: string,
    readonly vnetHdr: boolean,
    ctl?: { fd: number; ns: number },
    readonly uso = false,
  ) {
    this.ifname = name;
    this.ctl = ctl ?? libc.socketIn(null);
    if (!ctl) this.rehome();
  }

  get name(): string {
    return this.ifname;
  }

  read(buf: Uint8Array, off: number, len: number): number {
    return tunRead(this.fd, buf, off, len);
  }

  write(buf: Uint8Array, off: number, len: number): number {
    return tunWrite(this.fd, buf, off, len);
  }

  writev(iov: number, count: number): number {
    for (;;) {
      const r = writevAt(this.fd, iov, count);
      if (r !== -E.EINTR) return r;
    }
  }

  mtu(): number {
    const alive = this.refresh();
    if (alive < 0) throw new WgError('ENODEV', `TUN device ${this.ifname} is gone: ${errnoText(alive)}`, E.ENODEV);
    const ifr = ifreq(this.ifname);
    const r = libc.ioctl(this.ctl.fd, SIOCGIFMTU, ifr);
    if (r < 0) throw new WgError('EIO', `SIOCGIFMTU on ${this.ifname}: ${errnoText(r)}`, -r);
    return ifr.readInt32LE(16);
  }

  /** SIOCSIFMTU; 0 or -errno. */
  setMtu(mtu: number): number {
    const ifr = ifreq(this.ifname);
    ifr.writeInt32LE(mtu, 16);
    return libc.ioctl(this.ctl.fd, SIOCSIFMTU, ifr);
  }

  probeLink(): LinkState {
    if (this.closed) return { state: 'closed' };
    const alive = this.refresh();
    if (alive !== 0) return alive === -E.EBADFD ? { state: 'deleted' } : { state: 'present', up: null, mtu: null };
    const ifr = ifreq(this.ifname);
    const f = libc.ioctl(this.ctl.fd, SIOCGIFFLAGS, ifr);
    const up = f < 0 ? null : (ifr.readUInt16LE(16) & IFF_UP) !== 0;
    const m = libc.ioctl(this.ctl.fd, SIOCGIFMTU, ifr);
    return { state: 'present', up, mtu: m < 0 ? null : ifr.readInt32LE(16) };
  }

  inOwnNamespace(): boolean {
    try {
      return this.ctl.ns === libc.nsInode();
    } catch {
      return false;
    }
  }

  /**
   * Deletes the interface (unless it is persistent), then closes the fd. Closing the last fd of a TUN deletes
   * it anyway, but a thread blocked in read() holds its own reference to the file: a plain close() would
   * neither wake it nor delete the link, and process.exit() then hangs joining that worker. Deleting the link
   * first wakes the reader with -EBADFD. Do not call this to hand the fd to another process.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      const ifr = Buffer.alloc(IFREQ_SIZE);
      if (libc.ioctl(this.fd, TUNGETIFF, ifr) === 0 && (ifr.readUInt16LE(16) & IFF_PERSIST) === 0) {
        this.ifname = ifName(ifr);
        this.rehome();
        const q = ifreq(this.ifname);
        if (libc.ioctl(this.ctl.fd, SIOCGIFINDEX, q) === 0) deleteLink(this.fd, q.readInt32LE(16));
      }
    } catch {
      /* no way into its namespace: closing the fd below is all that is left */
    }
    for (const release of [() => fs.closeSync(this.fd), () => libc.close(this.ctl.fd)]) {
      try {
        release();
      } catch {
        /* already closed by someone else */
      }
    }
  }

  /**
   * Learns the current name from the fd (TUNGETIFF answers EBADFD once the device is gone, in whatever
   * namespace it was) and moves the control socket if the device changed namespace. 0 or -errno.
   */
  private refresh(): number {
    const ifr = Buffer.alloc(IFREQ_SIZE);
    const r = libc.ioctl(this.fd, TUNGETIFF, ifr);
    if (r < 0) return r;
    this.ifname = ifName(ifr);
    this.rehome();
    return 0;
  }

  private rehome(): void {
    inDeviceNs(this.fd, (nsfd) => {
      // null: a pre-5.2 kernel or no CAP_NET_ADMIN there; keep asking where we are.
      if (nsfd === null || libc.nsInode(nsfd) === this.ctl.ns) return;
      const ctl = libc.socketIn(nsfd);
      libc.close(this.ctl.fd);
      this.ctl = ctl;
    });
  }
}

function setIffError(name: string, errno: number, ctlFd: number): WgError {
  if (errno === E.EPERM) return new WgError('EPERM', `creating TUN device ${name} needs CAP_NET_ADMIN (${errnoText(errno)})`, errno);
  if (errno === E.EBUSY) return new WgError('EBUSY', `TUN device ${name} exists and is in use by another process`, errno);
  if (errno === E.EINVAL) {
    // The name was already checked, so EINVAL almost always means the name belongs to a non-TUN interface.
    const exists = libc.ioctl(ctlFd, SIOCGIFFLAGS, ifreq(name)) === 0;
    if (exists) return new WgError('EEXIST', `interface ${name} exists and is not a TUN device`, E.EEXIST);
  }
  return new WgError(errnoText(errno).split(' ')[0], `TUNSETIFF ${name}: ${errnoText(errno)}`, errno);
}

/**
 * Creates (or attaches to an unused persistent) TUN device `name`, sets its MTU (default 1420) and leaves the
 * link down, as wireguard-go does: wg-quick brings it up after configuring it.
 */
export function openTun(name: string, opts: { mtu?: number; offload?: boolean } = {}): TunDevice {
  checkName(name);
  const mtu = opts.mtu ?? DEFAULT_MTU;
  if (!Number.isInteger(mtu) || mtu < MIN_MTU || mtu > MAX_MTU) {
    throw new WgError('EINVAL', `invalid MTU ${mtu} (${MIN_MTU}..${MAX_MTU})`, E.EINVAL);
  }
  let fd: number;
  try {
    fd = fs.openSync('/dev/net/tun', fs.constants.O_RDWR);
  } catch (e) {
    const n = errnoOf(e);
    const why = n === E.ENOENT ? 'no /dev/net/tun (is the tun module loaded?)' : `cannot open /dev/net/tun: ${errnoText(n)}`;
    throw new WgError(errnoText(n).split(' ')[0], why, n);
  }
  let ctl: { fd: number; ns: number } | null = null;
  try {
    ctl = libc.socketIn(null);
    const ifr = ifreq(name);
    ifr.writeUInt16LE(IFF_TUN | IFF_NO_PI | (opts.offload ? IFF_VNET_HDR : 0), 16);
    const r = libc.ioctl(fd, TUNSETIFF, ifr);
    if (r < 0) throw setIffError(name, -r, ctl.fd);
    const uso = opts.offload ? setOffloads(fd) : false;
    const dev = new NativeTun(fd, ifName(ifr), !!opts.offload, ctl, uso); // the kernel writes back the real name
    const m = dev.setMtu(mtu);
    if (m < 0) throw new WgError('EINVAL', `cannot set MTU ${mtu} on ${dev.name}: ${errnoText(m)}`, -m);
    return dev;
  } catch (e) {
    fs.closeSync(fd);
    if (ctl) libc.close(ctl.fd);
    throw e;
  }
}

/**
 * Asks for checksum offload, TSO and USO on a TUN with IFF_VNET_HDR; true if USO is on. A kernel that refuses
 * the offloads still works with the header: it then sends plain packets only. One without USO (before 6.2)
 * refuses the whole set with EINVAL, so TSO alone is asked for next.
 */
function setOffloads(fd: number): boolean {
  if (libc.ioctlValue(fd, TUNSETOFFLOAD, TUN_F_CSUM_TSO | TUN_F_USO4_USO6) >= 0) return true;
  libc.ioctlValue(fd, TUNSETOFFLOAD, TUN_F_CSUM_TSO);
  return false;
}

/**
 * Wraps an inherited TUN fd (WG_TUN_FD), which may live in another namespace; TUNGETIFF gives its name. With
 * IFF_VNET_HDR the offloads are asked for again (the same set openTun asks for), since TUNGETIFF does not say
 * which are on.
 */
export function adoptTun(fd: number): TunDevice {
  const ifr = Buffer.alloc(IFREQ_SIZE);
  const r = libc.ioctl(fd, TUNGETIFF, ifr);
  if (r < 0) throw new WgError('EINVAL', `fd ${fd} is not an attached TUN device: ${errnoText(r)}`, -r === E.EBADF ? E.EBADF : E.EINVAL);
  const flags = ifr.readUInt16LE(16);
  if ((flags & (IFF_TUN | IFF_NO_PI)) !== (IFF_TUN | IFF_NO_PI)) {
    throw new WgError('EINVAL', `fd ${fd} is not an IFF_TUN|IFF_NO_PI device (flags 0x${flags.toString(16)})`, E.EINVAL);
  }
  const vnetHdr = (flags & IFF_VNET_HDR) !== 0;
  return new NativeTun(fd, ifName(ifr), vnetHdr, undefined, vnetHdr && setOffloads(fd));
}

/**
 * A TUN stand-in over one end of a SOCK_SEQPACKET socketpair, for the data-path warm-up (warmpath.ts): one
 * message per packet, as on a TUN, through the same class as a real device, so the call sites the warm-up
 * trains see no other. It has no link: mtu() throws and close() only closes the fd.
 */
export function socketTun(fd: number, vnetHdr: boolean, uso: boolean): TunDevice {
  return new NativeTun(fd, 'warm-up', vnetHdr, { fd: -1, ns: 0 }, uso);
}

/**
 * Reports the link's changes: its first probe reports the current up/down state and MTU. With `changes`, a
 * watch on the calling thread's namespace, the link is probed when rtnetlink reports a link change there, and
 * an idle daemon does not wake for it; while the TUN lives in another namespace (moved with `ip link set
 * netns`), and without `changes`, it is probed every intervalMs (default 500). 'deleted' is final and stops
 * the watch; so does closing the device.
 */
export function watchLink(
  tun: TunDevice,
  cb: (ev: LinkEvent) => void,
  opts: { intervalMs?: number; changes?: NetWatch | null } = {},
): () => void {
  const probe = tun as Partial<LinkProbe>;
  if (typeof probe.probeLink !== 'function') throw new WgError('EINVAL', 'watchLink: this TunDevice cannot be probed', E.EINVAL);
  const changes = opts.changes ?? null;
  let up: boolean | null = null;
  let mtu: number | null = null;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const poll = (): void => {
    if (stopped) return;
    const s = probe.probeLink!();
    if (s.state !== 'present') {
      stop();
      if (s.state === 'deleted') cb({ kind: 'deleted' });
      return;
    }
    if (s.up !== null && s.up !== up) {
      up = s.up;
      cb({ kind: up ? 'up' : 'down' });
    }
    if (s.mtu !== null && s.mtu !== mtu) {
      mtu = s.mtu;
      cb({ kind: 'mtu', mtu });
    }
    // Moved into or out of the watched namespace: the timer follows.
    const timed = changes === null || probe.inOwnNamespace?.() !== true;
    if (timed && !timer) {
      timer = setInterval(poll, opts.intervalMs ?? 500);
      // The daemon is kept alive by its sockets; a forgotten watcher must not keep a test process running.
      timer.unref();
    } else if (!timed && timer) {
      clearInterval(timer);
      timer = undefined;
    }
  };
  const unlisten = changes?.onChange((bits) => {
    if (bits & LINK) poll();
  });
  const first = setImmediate(poll);
  function stop(): void {
    stopped = true;
    if (timer) clearInterval(timer);
    clearImmediate(first);
    unlisten?.();
  }
  return stop;
}

/**
 * An in-memory TUN for tests. inject() queues a packet as if the OS routed it into the tunnel (read()
 * returns it); packets the device writes land in `written` and go to onWrite. read() cannot block on the
 * main thread, so it returns -EAGAIN when nothing is queued.
 */
export class MemoryTun implements TunDevice, LinkProbe {
  readonly fd = -1;
  readonly vnetHdr = false;
  readonly written: Uint8Array[] = [];
  onWrite: ((packet: Uint8Array) => void) | null = null;
  private readonly inbound: Uint8Array[] = [];
  private curMtu: number;
  private up: boolean;
  private gone = false;
  private closed = false;

  constructor(
    readonly name = 'memtun0',
    opts: { mtu?: number; up?: boolean } = {},
  ) {
    this.curMtu = opts.mtu ?? DEFAULT_MTU;
    this.up = opts.up ?? true;
  }

  inject(packet: Uint8Array): void {
    this.inbound.push(Uint8Array.from(packet));
  }

  /** Returns and clears the packets written so far. */
  takeWritten = (): Uint8Array[] => this.written.splice(0);
  get pending(): number {
    return this.inbound.length;
  }
  setMtu = (mtu: number): void => void (this.curMtu = mtu);
  setUp = (up: boolean): void => void (this.up = up);
  /** Like `ip link del`: reads and writes fail with EBADFD from now on. */
  delete = (): void => void (this.gone = true);

  mtu(): number {
    if (this.gone || this.closed) throw new WgError('ENODEV', `${this.name} is gone`, E.ENODEV);
    return this.curMtu;
  }

  read(buf: Uint8Array, off: number, len: number): number {
    if (this.gone || this.closed) return -E.EBADFD;
    const p = this.inbound.shift();
    if (!p) return -E.EAGAIN;
    const n = Math.min(len, p.length);
    buf.set(p.subarray(0, n), off);
    return n;
  }

  write(buf: Uint8Array, off: number, len: number): number {
    if (this.gone || this.closed) return -E.EBADFD;
    if (!this.up) return -E.EIO; // what the tun driver answers while the link is down
    const p = copyOf(buf, off, len); // buf is a slot the writer reuses at once
    this.written.push(p);
    this.onWrite?.(p);
    return len;
  }

  probeLink(): LinkState {
    if (this.closed) return { state: 'closed' };
    if (this.gone) return { state: 'deleted' };
    return { state: 'present', up: this.up, mtu: this.curMtu };
  }

  close(): void {
    this.closed = true;
  }
}
