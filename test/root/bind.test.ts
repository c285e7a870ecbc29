// The real UDP bind (root): src/tun/bind.ts openBind on both families, datagrams over loopback, port
// conflicts, SO_MARK read back with getsockopt, close() freeing the port, and the batched path: GSO runs,
// GRO receives, and the fallbacks (offload off, a segment larger than the route's MTU). The main thread joins a
// namespace of its own for the whole file (setns), so even loopback traffic stays out of the root namespace
// (testnet.md). Never skips: without root it fails.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as dgram from 'node:dgram';
import { openSync, closeSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { openBind, type Bind, type BindOptions } from '../../src/tun/bind.js';
import * as libc from '../../src/tun/libc.js';
import type { Endpoint } from '../../src/peer.js';

const NS = `wgtsB${process.pid}`;
const LO4 = Uint8Array.of(127, 0, 0, 1);
const LO6 = Uint8Array.of(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1);
const MAPPED_LO4 = Uint8Array.of(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

let home = -1; // the root namespace, to return to
const open: Bind[] = [];

function requireRoot(): void {
  if (process.getuid?.() !== 0) assert.fail('test/root/bind.test.ts must run as root (SO_MARK, network namespaces)');
}

function ip(args: string[]): void {
  const r = spawnSync('ip', args, { encoding: 'utf8', timeout: 10_000 });
  assert.equal(r.status, 0, `ip ${args.join(' ')}: ${r.stderr}`);
}

before(() => {
  requireRoot();
  ip(['netns', 'add', NS]);
  ip(['-n', NS, 'link', 'set', 'lo', 'up']);
  home = openSync('/proc/thread-self/ns/net', 'r');
  const target = openSync(`/run/netns/${NS}`, 'r');
  try {
    assert.equal(libc.setns(target, libc.CLONE_NEWNET), 0, 'setns into the test namespace');
  } finally {
    closeSync(target);
  }
});

after(async () => {
  for (const b of open) await b.close();
  if (home >= 0) {
    assert.equal(libc.setns(home, libc.CLONE_NEWNET), 0, 'back to the original namespace');
    closeSync(home);
  }
  spawnSync('ip', ['netns', 'del', NS], { timeout: 10_000 });
});

async function bind(port: number, opts?: BindOptions): Promise<Bind> {
  const b = await openBind(port, opts);
  open.push(b);
  return b;
}

const fds = (b: Bind): number[] => {
  const u = b as unknown as { fd4: number; fd6: number };
  return [u.fd4, u.fd6];
};

type Got = { data: string; from: Endpoint }[];
function inbox(b: Bind): Got {
  const got: Got = [];
  b.onReceive((buf, off, len, from) => got.push({ data: buf.toString('utf8', off, off + len), from }));
  return got;
}

async function until(pred: () => boolean, ms: number, what: string): Promise<void> {
  for (let t = 0; t < ms && !pred(); t += 10) await sleep(10);
  assert.ok(pred(), what);
}

/** Binding `port` with a plain node:dgram socket: null if it worked (and was released), else the error code. */
async function tryDgram(type: 'udp4' | 'udp6', port: number): Promise<string | null> {
  const s = dgram.createSocket({ type, ipv6Only: type === 'udp6' });
  return new Promise((resolve) => {
    s.once('error', (e: NodeJS.ErrnoException) => {
      s.close();
      resolve(e.code ?? 'error');
    });
    s.bind(port, () => s.close(() => resolve(null)));
  });
}

test('openBind(0) takes one random port on both IPv4 and IPv6', async () => {
  requireRoot();
  const a = await bind(0);
  assert.ok(a.port > 0 && a.port < 65536);
  assert.equal(await tryDgram('udp4', a.port), 'EADDRINUSE');
  assert.equal(await tryDgram('udp6', a.port), 'EADDRINUSE');
  const [fd4, fd6] = fds(a);
  assert.ok(fd4 >= 0 && fd6 >= 0, 'two sockets');
  assert.equal(libc.getsockoptInt(fd6, libc.IPPROTO_IPV6, libc.IPV6_V6ONLY).value, 1, 'the IPv6 socket is IPv6-only');
  const rcv = libc.getsockoptInt(fd4, libc.SOL_SOCKET, 8 /* SO_RCVBUF */).value;
  assert.ok(rcv >= 4 << 20, `large receive buffer (${rcv})`);
});

test('two binds exchange datagrams over 127.0.0.1 and ::1 with exact from-endpoints', async () => {
  requireRoot();
  const a = await bind(0);
  const b = await bind(0);
  const atA = inbox(a);
  const atB = inbox(b);
  a.send(Buffer.from('v4'), { addr: LO4, port: b.port });
  await until(() => atB.length === 1, 2000, 'the IPv4 datagram arrives');
  a.send(Buffer.from('v6'), { addr: LO6, port: b.port });
  await until(() => atB.length === 2, 2000, 'the IPv6 datagram arrives');
  a.send(Buffer.from('mapped'), { addr: MAPPED_LO4, port: b.port });
  await until(() => atB.length === 3, 2000, 'the datagram to ::ffff:127.0.0.1 arrives');
  // `src` is our own address each datagram was sent to and `srcIf` the interface it came in on (IP_PKTINFO),
  // here loopback's (index 1 in every namespace).
  assert.deepEqual(atB, [
    { data: 'v4', from: { addr: LO4, port: a.port, src: LO4, srcIf: 1 } },
    { data: 'v6', from: { addr: LO6, port: a.port, src: LO6, srcIf: 1 } },
    { data: 'mapped', from: { addr: LO4, port: a.port, src: LO4, srcIf: 1 } }, // went out on IPv4: never a mapped address
  ]);
  for (const m of atB) b.send(Buffer.from(`re:${m.data}`), m.from);
  await until(() => atA.length === 3, 2000, 'the replies arrive');
  assert.deepEqual(atA.map((m) => [m.data, m.from.addr.length, m.from.port]).sort(), [
    ['re:mapped', 4, b.port],
    ['re:v4', 4, b.port],
    ['re:v6', 16, b.port],
  ]);

  const big = Buffer.alloc(1452, 0xab);
  const sizes: number[] = [];
  b.onReceive((_buf, _off, len) => sizes.push(len));
  for (let i = 0; i < 200; i++) a.send(big, { addr: i % 2 ? LO6 : LO4, port: b.port });
  await until(() => sizes.length === 200, 3000, `a burst of 200 datagrams arrives (${sizes.length})`);
  assert.ok(sizes.every((n) => n === 1452));
  assert.equal(a.sendErrors, 0);
});

test('a port in use gives WgError EADDRINUSE, on either family', async () => {
  requireRoot();
  const a = await bind(0);
  await assert.rejects(openBind(a.port), { name: 'WgError', code: 'EADDRINUSE', errno: 98 });
  // Only IPv6 taken: the IPv4 socket binds, the IPv6 one fails, and nothing is left bound.
  const v6 = dgram.createSocket({ type: 'udp6', ipv6Only: true });
  await new Promise<void>((r) => v6.bind(0, '::', () => r()));
  const port = v6.address().port;
  try {
    await assert.rejects(openBind(port), { code: 'EADDRINUSE', errno: 98, message: /IPv6/ });
    assert.equal(await tryDgram('udp4', port), null, 'the IPv4 socket was released');
  } finally {
    await new Promise<void>((r) => v6.close(() => r()));
  }
  await assert.rejects(openBind(70000), { code: 'EINVAL' });
});

test('setMark sets SO_MARK on both sockets (read back with getsockopt)', async () => {
  requireRoot();
  const a = await bind(0);
  const marks = (): number[] => fds(a).map((fd) => libc.getsockoptInt(fd, libc.SOL_SOCKET, libc.SO_MARK).value);
  assert.deepEqual(marks(), [0, 0]);
  assert.equal(a.setMark(51820), 0);
  assert.deepEqual(marks(), [51820, 51820]);
  assert.equal(a.setMark(0xffffffff), 0, 'a full u32 mark');
  assert.deepEqual(marks(), [0xffffffff, 0xffffffff]);
  assert.equal(a.setMark(0), 0);
  assert.deepEqual(marks(), [0, 0]);
  assert.equal(a.setMark(-1), 22, 'EINVAL as a positive errno');
  const b = await bind(0, { mark: 51820 });
  assert.deepEqual(fds(b).map((fd) => libc.getsockoptInt(fd, libc.SOL_SOCKET, libc.SO_MARK).value), [51820, 51820], 'mark set at open');
});

test('send never throws and counts errors; close() frees the port', async () => {
  requireRoot();
  const a = await bind(0);
  a.send(Buffer.from('x'), { addr: LO4, port: 0 });
  a.send(Buffer.from('x'), { addr: Uint8Array.of(1, 2, 3), port: 9 });
  assert.equal(a.sendErrors, 2);
  const port = a.port;
  await a.close();
  await a.close(); // idempotent
  a.send(Buffer.from('late'), { addr: LO4, port: 9 });
  assert.equal(a.sendErrors, 3, 'sending after close is counted, not thrown');
  assert.equal(a.setMark(1), 9, 'EBADF after close: the fd numbers are no longer ours');
  const again = await bind(port);
  assert.equal(again.port, port, 'the same port binds again on both families');
});

/** `n` datagrams in slot-like shared memory: datagram i is `sizes[i]` bytes of (i & 0xff), 2048 bytes apart. */
function slots(sizes: number[]): Buffer {
  const mem = Buffer.from(new SharedArrayBuffer(sizes.length * 2048));
  sizes.forEach((len, i) => mem.fill(i & 0xff, i * 2048, i * 2048 + len));
  return mem;
}

type Seen = { len: number; first: number; last: number; port: number }[];
function seen(b: Bind): Seen {
  const got: Seen = [];
  b.onReceive((buf, off, len, from) => got.push({ len, first: buf[off], last: buf[off + len - 1], port: from.port }));
  return got;
}

const stats = (b: Bind): { calls: number; datagrams: number; errors: number } =>
  (b as unknown as { sendStats: { calls: number; datagrams: number; errors: number } }).sendStats;
const offload = (b: Bind): { gso: boolean; gro: boolean } => {
  const u = b as unknown as { gso: boolean; gro: boolean };
  return { gso: u.gso, gro: u.gro };
};

for (const on of [true, false]) {
  test(`queued datagrams arrive whole and in order, offload ${on ? 'on' : 'off'} (one sendmsg per run with GSO)`, async () => {
    requireRoot();
    const a = await bind(0, { offload: on });
    const b = await bind(0, { offload: on });
    assert.deepEqual(offload(a), { gso: on, gro: on }, 'this kernel has UDP_SEGMENT and UDP_GRO');
    const got = seen(b);
    // Two runs to IPv4 (40 full segments then a short one; then 5 more), one to IPv6, one back to IPv4.
    const sizes = [...Array(40).fill(1452), 700, ...Array(5).fill(1452), 1000, 1000, 64];
    const mem = slots(sizes);
    const dest = (i: number): Endpoint => ({ addr: i >= 46 && i < 48 ? LO6 : LO4, port: b.port });
    const before = stats(a).calls;
    sizes.forEach((len, i) => a.queue(mem, i * 2048, len, dest(i)));
    a.flush();
    const calls = stats(a).calls - before;
    await until(() => got.length === sizes.length, 3000, `all ${sizes.length} datagrams arrive (${got.length})`);
    const v4 = got.filter((g) => g.len !== 1000);
    const order = [...sizes.keys()].filter((i) => !(i >= 46 && i < 48));
    assert.deepEqual(v4.map((g) => [g.len, g.first, g.last]), order.map((i) => [sizes[i], i & 0xff, i & 0xff]), 'IPv4 datagrams intact and in order');
    assert.deepEqual(got.filter((g) => g.len === 1000).map((g) => g.first), [46, 47]);
    assert.ok(got.every((g) => g.port === a.port));
    assert.equal(stats(a).errors, 0);
    // GSO: [40 x 1452 + 700], [5 x 1452], [2 x 1000 to IPv6], [64]; without: one call per datagram.
    assert.equal(calls, on ? 4 : sizes.length, `sendmsg calls (${calls})`);
  });
}

test('a GSO run whose segments exceed the route MTU falls back to single (fragmented) datagrams', async () => {
  requireRoot();
  const a = await bind(0);
  const b = await bind(0);
  const got = seen(b);
  ip(['-n', NS, 'link', 'set', 'lo', 'mtu', '1280']);
  try {
    const sizes = Array(8).fill(1452);
    const mem = slots(sizes);
    sizes.forEach((len, i) => a.queue(mem, i * 2048, len, { addr: LO4, port: b.port }));
    a.flush();
    await until(() => got.length === 8, 3000, `8 reassembled datagrams arrive (${got.length})`);
    assert.deepEqual(got.map((g) => [g.len, g.first]), sizes.map((len, i) => [len, i]));
    assert.equal(stats(a).errors, 0);
    assert.equal(offload(a).gso, true, 'EINVAL (MTU) does not turn GSO off');
  } finally {
    ip(['-n', NS, 'link', 'set', 'lo', 'mtu', '65536']);
  }
});

test('a burst larger than the receive ring is received in full once the ring drains', async () => {
  requireRoot();
  const a = await bind(0);
  const b = await bind(0);
  const got = seen(b);
  const sizes = Array(3000).fill(1452);
  const mem = slots(sizes.slice(0, 64));
  for (let i = 0; i < sizes.length; i++) {
    a.queue(mem, (i % 64) * 2048, 1452, { addr: LO4, port: b.port });
    if (i % 64 === 63) a.flush();
  }
  a.flush();
  await until(() => got.length === sizes.length, 5000, `3000 datagrams arrive (${got.length})`);
  assert.ok(got.every((g, i) => g.first === (i % 64)), 'in order');
});

test('replies leave from the address the peer reached (IP_PKTINFO), and from a routed one once it is gone', async () => {
  requireRoot();
  ip(['-n', NS, 'addr', 'add', '198.51.100.7/32', 'dev', 'lo']);
  try {
    const a = await bind(0);
    const b = await bind(0);
    const atA = inbox(a);
    const atB = inbox(b);
    const seven = Uint8Array.of(198, 51, 100, 7);
    a.send(Buffer.from('hello'), { addr: seven, port: b.port });
    await until(() => atB.length === 1, 2000, 'the datagram to 198.51.100.7 arrives');
    assert.deepEqual(atB[0].from.src, seven, 'b learns which of its addresses a used');
    // Back to a at 127.0.0.1: routing alone would pick 127.0.0.1 as the source; the sticky source wins.
    const back = { addr: LO4, port: a.port, src: seven };
    b.send(Buffer.from('sticky'), back);
    await until(() => atA.length === 1, 2000, 'the reply arrives');
    assert.deepEqual(atA[0].from.addr, seven, 'the reply came from 198.51.100.7');
    ip(['-n', NS, 'addr', 'del', '198.51.100.7/32', 'dev', 'lo']);
    b.send(Buffer.from('after'), back);
    const mem = slots([100, 100]);
    b.queue(mem, 0, 100, back);
    b.queue(mem, 2048, 100, back);
    b.flush();
    await until(() => atA.length === 4, 2000, `the datagrams after the address left arrive (${atA.length})`);
    assert.deepEqual(atA.slice(1).map((m) => m.from.addr), [LO4, LO4, LO4], 'the kernel picked a source again');
    assert.equal(stats(b).errors, 0, 'nothing was lost');
  } finally {
    spawnSync('ip', ['-n', NS, 'addr', 'del', '198.51.100.7/32', 'dev', 'lo'], { timeout: 10_000 });
  }
});
