// The few libc calls Node has no API for, bound through ffi-rs to libc.so.6: ioctl(2) on the TUN fd and on a
// netdevice(7) socket, socket(2)/bind(2)/getsockname(2)/setsockopt(2)/getsockopt(2) (socket(7): SO_MARK,
// SO_*BUFFORCE; ipv6(7): IPV6_V6ONLY), setns(2), dup2(2) and close(2). Each returns the C result or -errno; only
// socketIn throws (WgError), and any call off the main thread. Control path only: ~10-15 us per call (measured).

import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import { isMainThread } from 'node:worker_threads';
import { getSystemErrorName } from 'node:util';
import type * as Ffi from 'ffi-rs';
import { WgError, Errno } from '../errors.js';

/** errno values this layer needs beyond errors.ts (Linux x86-64 / generic numbering). */
export const E = {
  ...Errno,
  EINTR: 4,
  EAGAIN: 11,
  EFAULT: 14,
  EBUSY: 16,
  ENOTTY: 25,
  EBADFD: 77,
  ENOTSOCK: 88,
  ENOBUFS: 105,
  EAFNOSUPPORT: 97,
} as const;

export const AF_INET = 2;
export const AF_INET6 = 10;
export const SOCK_DGRAM = 2;
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;
export const SOL_SOCKET = 1;
export const SO_SNDBUF = 7;
export const SO_RCVBUF = 8;
export const SO_SNDBUFFORCE = 32;
export const SO_RCVBUFFORCE = 33;
export const SO_MARK = 36;
export const IPPROTO_IPV6 = 41;
export const IPV6_V6ONLY = 26;
export const CLONE_NEWNET = 0x40000000;

const LIB = 'wgts-libc';
type FfiModule = typeof Ffi;
type Raw = { value: number; errnoCode: number };
let ffi: FfiModule | null = null;

// Loaded lazily and only on the main thread: a worker that merely imports ffi-rs segfaults the whole process
// when it exits (seen with ffi-rs 1.3.7 on Node 20), and the packet workers import tun.ts for read/write.
function lib(): FfiModule {
  if (ffi) return ffi;
  if (!isMainThread) throw new WgError('EINVAL', 'libc bindings (ffi-rs) may only be used on the main thread', E.EINVAL);
  const m = createRequire(import.meta.url)('ffi-rs') as FfiModule;
  m.open({ library: LIB, path: 'libc.so.6' });
  ffi = m;
  return m;
}

function call(funcName: string, types: (keyof typeof Ffi.DataType)[], values: unknown[]): number {
  const m = lib();
  const r = m.load({
    library: LIB,
    funcName,
    retType: m.DataType.I32,
    paramsType: types.map((t) => m.DataType[t]),
    paramsValue: values,
    errno: true,
  }) as unknown as Raw;
  // errno is only meaningful when the call reports failure; a stale non-zero errno after success is normal.
  return r.value === -1 ? -(r.errnoCode || E.EIO) : r.value;
}

// ffi-rs passes a Buffer's own memory for U8Array (C writes land in place); a plain Uint8Array is re-viewed
// as a Buffer over the same bytes so callers may pass either without a copy.
const asBuffer = (b: Uint8Array): Buffer => (Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength));

/** ioctl(fd, request, arg) with arg pointing at `arg`'s bytes (struct ifreq, int, ...); C may write into it. */
export function ioctl(fd: number, request: number, arg: Uint8Array): number {
  return call('ioctl', ['I32', 'U64', 'U8Array'], [fd, request, asBuffer(arg)]);
}

/** ioctl(fd, request, 0) for requests without an argument (TUNGETDEVNETNS). */
export function ioctlNoArg(fd: number, request: number): number {
  return ioctlValue(fd, request, 0);
}

/** ioctl(fd, request, value) for requests whose argument is an integer, not a pointer (TUNSETOFFLOAD). */
export function ioctlValue(fd: number, request: number, value: number): number {
  return call('ioctl', ['I32', 'U64', 'U64'], [fd, request, value]);
}

export function socket(domain: number, type: number, protocol = 0): number {
  return call('socket', ['I32', 'I32', 'I32'], [domain, type, protocol]);
}

export function bind(fd: number, sockaddr: Uint8Array): number {
  return call('bind', ['I32', 'U8Array', 'U32'], [fd, asBuffer(sockaddr), sockaddr.byteLength]);
}

/** getsockname into `out` (>= 28 bytes for sockaddr_in6); returns 0 or -errno. */
export function getsockname(fd: number, out: Uint8Array): number {
  const len = Buffer.alloc(4);
  len.writeUInt32LE(out.byteLength);
  return call('getsockname', ['I32', 'U8Array', 'U8Array'], [fd, asBuffer(out), len]);
}

/** setsockopt with a 4-byte int value; `value` is taken as u32 so marks above 2^31 survive. */
export function setsockoptInt(fd: number, level: number, name: number, value: number): number {
  const v = Buffer.alloc(4);
  v.writeUInt32LE(value >>> 0);
  return setsockoptBuf(fd, level, name, v);
}

export function setsockoptBuf(fd: number, level: number, name: number, value: Uint8Array): number {
  return call('setsockopt', ['I32', 'I32', 'I32', 'U8Array', 'U32'], [fd, level, name, asBuffer(value), value.byteLength]);
}

/** getsockopt of a 4-byte option: err is 0 or -errno, value the option read as u32. */
export function getsockoptInt(fd: number, level: number, name: number): { err: number; value: number } {
  const v = Buffer.alloc(4);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(4);
  const err = call('getsockopt', ['I32', 'I32', 'I32', 'U8Array', 'U8Array'], [fd, level, name, v, len]);
  return { err: Math.min(err, 0), value: v.readUInt32LE(0) };
}

/** setns(2) for the calling (main) thread only; other threads keep their namespace. */
export function setns(fd: number, nstype: number): number {
  return call('setns', ['I32', 'I32'], [fd, nstype]);
}

export function close(fd: number): number {
  return call('close', ['I32'], [fd]);
}

export function dup2(oldfd: number, newfd: number): number {
  return call('dup2', ['I32', 'I32'], [oldfd, newfd]);
}

/** Inode of the network namespace file `nsfd`, or of the calling thread's namespace when absent. */
export const nsInode = (nsfd?: number): number =>
  nsfd === undefined ? fs.statSync('/proc/thread-self/ns/net').ino : fs.fstatSync(nsfd).ino;

/**
 * A socket made in the network namespace `nsfd` (null: the current one), with its namespace's inode.
 * Interface ioctls and rtnetlink act in the socket's namespace, which is how a TUN moved with `ip link set
 * netns` stays reachable. setns(2) switches only the calling thread, and it is switched back before any
 * other JS runs. Throws WgError.
 */
export function socketIn(nsfd: number | null, domain = AF_INET, type = SOCK_DGRAM): { fd: number; ns: number } {
  const make = (): number => {
    const fd = socket(domain, type | SOCK_CLOEXEC);
    if (fd < 0) throw new WgError('EIO', `cannot create a control socket: ${errnoText(fd)}`, -fd);
    return fd;
  };
  const here = nsInode();
  const there = nsfd === null ? here : nsInode(nsfd);
  if (nsfd === null || there === here) return { fd: make(), ns: here };
  const self = fs.openSync('/proc/thread-self/ns/net', 'r');
  try {
    const r = setns(nsfd, CLONE_NEWNET);
    if (r < 0) throw new WgError('EIO', `cannot enter the network namespace: ${errnoText(r)}`, -r);
    try {
      return { fd: make(), ns: there };
    } finally {
      // Every later socket of this thread would land in the wrong namespace: not something to limp on with.
      const back = setns(self, CLONE_NEWNET);
      if (back < 0) throw new Error(`wgts: cannot return to the original network namespace: ${errnoText(back)}`);
    }
  } finally {
    fs.closeSync(self);
  }
}

/** "EBUSY (16)" style text for messages; libuv does not know every name (EBADFD), hence the table. */
export function errnoText(errno: number): string {
  const n = Math.abs(errno);
  const own = Object.entries(E).find(([, v]) => v === n)?.[0];
  const name = own ?? getSystemErrorName(-n);
  return `${name} (${n})`;
}
