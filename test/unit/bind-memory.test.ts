// The in-memory seams (src/tun/bind.ts MemoryBind, src/tun/tun.ts MemoryTun): datagrams between MemoryBinds
// with the right from-endpoints, IPv4-mapped destinations unmapped, drops counted; a MemoryTun round trip and
// its link events through watchLink. No root, no sockets.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Bind } from '../../src/tun/bind.js';
import { MemoryBind, MemoryNetwork } from '../../src/tun/bindtest.js';
import { MemoryTun, watchLink, type LinkEvent } from '../../src/tun/tun.js';
import type { Endpoint } from '../../src/peer.js';

const EBADFD = 77;
const EAGAIN = 11;
const EIO = 5;

function collect(b: Bind): { data: string; from: Endpoint }[] {
  const got: { data: string; from: Endpoint }[] = [];
  b.onReceive((buf, off, len, from) => got.push({ data: buf.toString('utf8', off, off + len), from }));
  return got;
}

const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

test('a MemoryBind pair delivers both ways with the sender as from-endpoint', async () => {
  const [a, b] = MemoryBind.pair();
  const atA = collect(a);
  const atB = collect(b);
  a.send(Buffer.from('ping'), b.endpoint);
  b.send(Buffer.from('pong'), a.endpoint);
  await settle();
  assert.deepEqual(atB, [{ data: 'ping', from: { addr: Uint8Array.of(198, 51, 100, 1), port: 51821 } }]);
  assert.deepEqual(atA, [{ data: 'pong', from: { addr: Uint8Array.of(198, 51, 100, 2), port: 51822 } }]);
  assert.equal(a.port, 51821);
  assert.equal(b.port, 51822);
});

test('a MemoryBind ends each delivery round with batchEnd, after the datagrams of that round, as a socket bind does', async () => {
  const [a, b] = MemoryBind.pair();
  const events: string[] = [];
  b.onReceive((buf, off, len) => events.push(buf.toString('utf8', off, off + len)), () => events.push('end'));
  a.send(Buffer.from('one'), b.endpoint);
  a.send(Buffer.from('two'), b.endpoint);
  assert.deepEqual(events, [], 'nothing is delivered synchronously');
  await settle();
  assert.deepEqual(events, ['one', 'two', 'end']);
  a.send(Buffer.from('three'), b.endpoint);
  await settle();
  assert.deepEqual(events, ['one', 'two', 'end', 'three', 'end']);
  await settle();
  assert.deepEqual(events, ['one', 'two', 'end', 'three', 'end'], 'no round, no batchEnd');
});

test('MemoryBind copies data, keeps order and delivers asynchronously', async () => {
  const [a, b] = MemoryBind.pair();
  const atB = collect(b);
  const buf = Buffer.from('one');
  a.send(buf, b.endpoint);
  buf.write('xxx');
  a.send(Buffer.from('two'), b.endpoint);
  assert.equal(atB.length, 0, 'nothing is delivered synchronously');
  await settle();
  assert.deepEqual(atB.map((d) => d.data), ['one', 'two']);
});

test('MemoryNetwork: IPv6 endpoints, IPv4-mapped destinations, drops and filters', async () => {
  const net = new MemoryNetwork();
  const v6 = new Uint8Array(16);
  v6.set([0x20, 0x01, 0x0d, 0xb8, 0, 0xff], 0);
  v6[15] = 1;
  const a = net.bind(Uint8Array.of(198, 51, 100, 1), 1000);
  const b = net.bind(v6, 2000);
  const c = net.bind(Uint8Array.of(198, 51, 100, 3)); // port 0: one is chosen
  assert.ok(c.port > 0);
  assert.throws(() => net.bind(Uint8Array.of(198, 51, 100, 1), 1000), { code: 'EADDRINUSE', errno: 98 });
  const atA = collect(a);
  const atB = collect(b);
  b.send(Buffer.from('from-v6'), { addr: Uint8Array.of(198, 51, 100, 1), port: 1000 });
  const mapped = new Uint8Array(16);
  mapped.set([0xff, 0xff, 198, 51, 100, 1], 10);
  c.send(Buffer.from('mapped'), { addr: mapped, port: 1000 });
  a.send(Buffer.from('to-v6'), { addr: v6, port: 2000 });
  a.send(Buffer.from('nobody'), { addr: Uint8Array.of(198, 51, 100, 9), port: 1 });
  a.send(Buffer.from('bad'), { addr: Uint8Array.of(1, 2, 3), port: 1 });
  await settle();
  assert.deepEqual(atA, [
    { data: 'from-v6', from: { addr: v6, port: 2000 } },
    { data: 'mapped', from: { addr: Uint8Array.of(198, 51, 100, 3), port: c.port } },
  ]);
  assert.deepEqual(atB, [{ data: 'to-v6', from: { addr: Uint8Array.of(198, 51, 100, 1), port: 1000 } }]);
  assert.equal(net.dropped, 1, 'the datagram to an unbound endpoint is dropped');
  assert.equal(a.sendErrors, 1, 'a 3-byte address is a send error');

  net.filter = (d) => !d.data.every((x, i) => x === Buffer.from('drop')[i]);
  a.send(Buffer.from('drop'), { addr: v6, port: 2000 });
  a.send(Buffer.from('keep'), { addr: v6, port: 2000 });
  await settle();
  assert.deepEqual(atB.map((d) => d.data), ['to-v6', 'keep']);
  assert.equal(net.dropped, 2);
});

test('MemoryBind: setMark, close frees the endpoint and stops traffic', async () => {
  const net = new MemoryNetwork();
  const a = net.bind(Uint8Array.of(198, 51, 100, 1), 1000);
  const b = net.bind(Uint8Array.of(198, 51, 100, 2), 2000);
  assert.equal(a.setMark(51820), 0);
  assert.equal(a.mark, 51820);
  assert.equal(a.setMark(-1), 22);
  const atB = collect(b);
  await b.close();
  a.send(Buffer.from('late'), b.endpoint);
  await settle();
  assert.deepEqual(atB, []);
  const again = net.bind(Uint8Array.of(198, 51, 100, 2), 2000); // the endpoint is free again
  await a.close();
  a.send(Buffer.from('x'), again.endpoint);
  assert.equal(a.sendErrors, 1, 'sending on a closed bind is counted, not thrown');
});

test('MemoryTun: injected packets are read, written packets are collected', () => {
  const tun = new MemoryTun('memtun0', { mtu: 1400 });
  assert.equal(tun.mtu(), 1400);
  assert.equal(tun.fd, -1);
  const buf = new Uint8Array(64);
  assert.equal(tun.read(buf, 0, 64), -EAGAIN, 'nothing queued: -EAGAIN instead of blocking');
  const pkt = Uint8Array.of(0x45, 0, 0, 20, 1, 2, 3, 4);
  tun.inject(pkt);
  pkt[0] = 0; // inject copied it
  assert.equal(tun.pending, 1);
  assert.equal(tun.read(buf, 8, 56), 8);
  assert.deepEqual(buf.subarray(8, 16), Uint8Array.of(0x45, 0, 0, 20, 1, 2, 3, 4));

  const seen: Uint8Array[] = [];
  tun.onWrite = (p) => seen.push(p);
  const out = Uint8Array.of(9, 9, 0x60, 0, 0, 0, 7, 7);
  assert.equal(tun.write(out, 2, 4), 4);
  out.fill(0);
  assert.deepEqual(tun.takeWritten(), [Uint8Array.of(0x60, 0, 0, 0)]);
  assert.deepEqual(seen, [Uint8Array.of(0x60, 0, 0, 0)]);
  assert.deepEqual(tun.takeWritten(), []);

  tun.setUp(false);
  assert.equal(tun.write(out, 0, 4), -EIO, 'a down link refuses writes like the tun driver');
  tun.delete();
  assert.equal(tun.read(buf, 0, 64), -EBADFD);
  assert.equal(tun.write(out, 0, 4), -EBADFD);
  assert.throws(() => tun.mtu(), { name: 'WgError' });
});

test('watchLink on a MemoryTun: current state first, then changes, then deleted', async () => {
  const tun = new MemoryTun('memtun1', { up: false });
  const events: LinkEvent[] = [];
  const stop = watchLink(tun, (e) => events.push(e), { intervalMs: 10 });
  const until = async (pred: () => boolean): Promise<void> => {
    for (let i = 0; i < 200 && !pred(); i++) await new Promise((r) => setTimeout(r, 5));
    assert.ok(pred(), `events so far: ${JSON.stringify(events)}`);
  };
  await until(() => events.length >= 2);
  assert.deepEqual(events, [{ kind: 'down' }, { kind: 'mtu', mtu: 1420 }]);
  tun.setUp(true);
  tun.setMtu(1380);
  await until(() => events.length >= 4);
  tun.delete();
  await until(() => events.length >= 5);
  assert.deepEqual(events.slice(2), [{ kind: 'up' }, { kind: 'mtu', mtu: 1380 }, { kind: 'deleted' }]);
  await new Promise((r) => setTimeout(r, 40));
  assert.equal(events.length, 5, 'deleted is final');
  stop();
  stop();
});
