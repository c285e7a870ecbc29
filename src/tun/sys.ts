// The packet-path system calls, bound through koffi to libc.so.6: socket(2), bind(2), setsockopt(2),
// getsockname(2), sendmsg(2) and recvmmsg(2) (with udp(7)'s UDP_SEGMENT and UDP_GRO control messages), send(2)
// and recv(2) with if_nametoindex(3) for the routing-loop check's rtnetlink query (route.ts), poll(2),
// read(2), readv(2), writev(2) and fcntl(2) for the TUN, shutdown(2), close(2), sched_yield(2) after a lone
// send (cpuyield.ts), sched_setscheduler(2) for node's helper threads (threads.ts), and
// sched_getaffinity(2)/sched_setaffinity(2) for the bench's footprint probe (bench/footprint.ts). Unlike
// libc.ts (ffi-rs, ~11 us per call here and unusable off the main thread), koffi costs ~0.15 us per call and
// works in worker threads, which is what batching the UDP path needs.
// Every function returns the C result or -errno and never throws.

import { createRequire } from 'node:module';
import type * as KoffiNs from 'koffi';
import { E, SOL_SOCKET, SO_RCVBUF, SO_RCVBUFFORCE, SO_SNDBUF, SO_SNDBUFFORCE } from './libc.js'; // constants only: ffi-rs itself is never loaded from here

type Koffi = typeof KoffiNs;
type Fn = (...args: unknown[]) => number;

export const SOL_UDP = 17;
export const UDP_SEGMENT = 103;
export const UDP_GRO = 104;
export const IPPROTO_IP = 0;
export const IP_PKTINFO = 8;
export const IPPROTO_IPV6 = 41;
export const IPV6_RECVPKTINFO = 49;
export const IPV6_PKTINFO = 50;
export const MSG_DONTWAIT = 0x40;
export const POLLIN = 0x1;
export const SHUT_RDWR = 2;

interface Sys {
  koffi: Koffi;
  socket: Fn;
  socketpair: Fn;
  bind: Fn;
  setsockopt: Fn;
  getsockname: Fn;
  sendmsg: Fn;
  recvmmsg: Fn;
  send: Fn;
  recv: Fn;
  ifNameToIndex: Fn;
  poll: Fn;
  read: Fn;
  readv: Fn;
  writev: Fn;
  fcntl: Fn;
  shutdown: Fn;
  close: Fn;
  schedYield: Fn;
  setScheduler: Fn;
  getAffinity: Fn;
  setAffinity: Fn;
}

let sys: Sys | null = null;

function load(): Sys {
  if (sys) return sys;
  const koffi = createRequire(import.meta.url)('koffi') as Koffi;
  const lib = koffi.load('libc.so.6');
  // Pointers are declared void *: koffi then passes a typed array's own memory, with no copy either way.
  sys = {
    koffi,
    socket: lib.func('int socket(int, int, int)') as Fn,
    socketpair: lib.func('int socketpair(int, int, int, void *)') as Fn,
    bind: lib.func('int bind(int, void *, uint32_t)') as Fn,
    setsockopt: lib.func('int setsockopt(int, int, int, void *, uint32_t)') as Fn,
    getsockname: lib.func('int getsockname(int, void *, void *)') as Fn,
    sendmsg: lib.func('intptr_t sendmsg(int, void *, int)') as Fn,
    recvmmsg: lib.func('int recvmmsg(int, void *, uint32_t, int, void *)') as Fn,
    send: lib.func('intptr_t send(int, void *, uint64_t, int)') as Fn,
    recv: lib.func('intptr_t recv(int, void *, uint64_t, int)') as Fn,
    ifNameToIndex: lib.func('uint32_t if_nametoindex(str)') as Fn,
    poll: lib.func('int poll(void *, uint64_t, int)') as Fn,
    // An address, not a typed array: reads land at an offset inside a slot arena without a subarray.
    read: lib.func('intptr_t read(int, uintptr_t, uint64_t)') as Fn,
    readv: lib.func('intptr_t readv(int, uintptr_t, int)') as Fn,
    writev: lib.func('intptr_t writev(int, uintptr_t, int)') as Fn,
    fcntl: lib.func('int fcntl(int, int, int)') as Fn,
    shutdown: lib.func('int shutdown(int, int)') as Fn,
    close: lib.func('int close(int)') as Fn,
    schedYield: lib.func('int sched_yield()') as Fn,
    setScheduler: lib.func('int sched_setscheduler(int, int, void *)') as Fn,
    getAffinity: lib.func('int sched_getaffinity(int, uint64_t, void *)') as Fn,
    setAffinity: lib.func('int sched_setaffinity(int, uint64_t, void *)') as Fn,
  };
  return sys;
}

const check = (s: Sys, r: number): number => (r < 0 ? -(s.koffi.errno() || E.EIO) : r);

/** The address of a typed array's first byte, as a number (user-space addresses fit in 47 bits). */
export function addressOf(buf: ArrayBufferView): number {
  return Number(load().koffi.address(buf));
}

export function socket(domain: number, type: number, protocol = 0): number {
  const s = load();
  return check(s, s.socket(domain, type, protocol));
}

/** socketpair(2): the two fds in `fds`; 0 or -errno. */
export function socketpair(domain: number, type: number, fds: Int32Array): number {
  const s = load();
  return check(s, s.socketpair(domain, type, 0, fds));
}

export function bind(fd: number, sockaddr: Uint8Array): number {
  const s = load();
  return check(s, s.bind(fd, sockaddr, sockaddr.byteLength));
}

export function setsockoptInt(fd: number, level: number, name: number, value: number): number {
  const s = load();
  const v = new Uint32Array([value >>> 0]);
  return check(s, s.setsockopt(fd, level, name, v, 4));
}

export function getsockname(fd: number, out: Uint8Array): number {
  const s = load();
  const len = new Uint32Array([out.byteLength]);
  return check(s, s.getsockname(fd, out, len));
}

/**
 * A socket's receive or send buffer of `bytes`: SO_*BUFFORCE first (root may exceed net.core.rmem_max and
 * wmem_max), else the plain option, which the kernel caps. Best effort: a smaller buffer still works.
 */
export function setSocketBuffer(fd: number, which: 'rcv' | 'snd', bytes: number): void {
  const [force, plain] = which === 'rcv' ? [SO_RCVBUFFORCE, SO_RCVBUF] : [SO_SNDBUFFORCE, SO_SNDBUF];
  if (setsockoptInt(fd, SOL_SOCKET, force, bytes) < 0) setsockoptInt(fd, SOL_SOCKET, plain, bytes);
}

/** sendmsg(2) with a struct msghdr laid out in `msghdr` (whose pointers are absolute addresses). */
export function sendmsg(fd: number, msghdr: Uint8Array, flags = 0): number {
  const s = load();
  return check(s, s.sendmsg(fd, msghdr, flags));
}

/** recvmmsg(2) into `vec` (an array of struct mmsghdr), no timeout. */
export function recvmmsg(fd: number, vec: Uint8Array, vlen: number, flags: number): number {
  const s = load();
  return check(s, s.recvmmsg(fd, vec, vlen, flags, null));
}

/** send(2) of the first `len` bytes of `buf`. */
export function send(fd: number, buf: Uint8Array, len: number, flags = 0): number {
  const s = load();
  return check(s, s.send(fd, buf, len, flags));
}

/** recv(2) into `buf`. */
export function recv(fd: number, buf: Uint8Array, flags = 0): number {
  const s = load();
  return check(s, s.recv(fd, buf, buf.byteLength, flags));
}

/** if_nametoindex(3): the index of interface `name` in this thread's namespace, or -errno (ENODEV: none). */
export function ifNameToIndex(name: string): number {
  const s = load();
  const i = s.ifNameToIndex(name);
  return i > 0 ? i : -(s.koffi.errno() || E.ENODEV);
}

/** poll(2) over `fds` (struct pollfd[]: int fd, short events, short revents). */
export function poll(fds: Uint8Array, nfds: number, timeoutMs: number): number {
  const s = load();
  return check(s, s.poll(fds, nfds, timeoutMs));
}

/** read(2) of up to `len` bytes to absolute address `addr` (see addressOf). */
export function readAt(fd: number, addr: number, len: number): number {
  const s = load();
  return check(s, s.read(fd, addr, len));
}

/** readv(2) into the `count` struct iovecs at absolute address `iov` (their buffers are addresses too). */
export function readvAt(fd: number, iov: number, count: number): number {
  const s = load();
  return check(s, s.readv(fd, iov, count));
}

/** writev(2) of the `count` struct iovecs at absolute address `iov`. */
export function writevAt(fd: number, iov: number, count: number): number {
  const s = load();
  return check(s, s.writev(fd, iov, count));
}

const F_GETFL = 3;
const F_SETFL = 4;
const O_NONBLOCK = 0o4000;

/** Sets O_NONBLOCK on `fd` (shared by every fd for that open file). 0 or -errno. */
export function setNonBlocking(fd: number): number {
  const s = load();
  const fl = check(s, s.fcntl(fd, F_GETFL, 0));
  if (fl < 0) return fl;
  return check(s, s.fcntl(fd, F_SETFL, fl | O_NONBLOCK));
}

export function shutdown(fd: number, how: number): number {
  const s = load();
  return check(s, s.shutdown(fd, how));
}

/** sched_yield(2): the caller goes to the back of its CPU's run queue. Always succeeds on Linux. */
export function schedYield(): void {
  load().schedYield();
}

export function close(fd: number): number {
  const s = load();
  return check(s, s.close(fd));
}

/** sched_setscheduler(2) of one thread; `param` is struct sched_param (one int, the priority). 0 or -errno. */
export function setScheduler(tid: number, policy: number, param: Int32Array): number {
  const s = load();
  return check(s, s.setScheduler(tid, policy, param));
}

/** sched_getaffinity(2) of one thread (0: the caller) into `mask` (a cpu_set_t). Bytes written or -errno. */
export function getAffinity(tid: number, mask: Uint8Array): number {
  const s = load();
  return check(s, s.getAffinity(tid, mask.byteLength, mask));
}

/** sched_setaffinity(2) of one thread (0: the caller); it runs on an allowed CPU when this returns. 0 or -errno. */
export function setAffinity(tid: number, mask: Uint8Array): number {
  const s = load();
  return check(s, s.setAffinity(tid, mask.byteLength, mask));
}
