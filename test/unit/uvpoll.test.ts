// The control thread's own socket reads (src/tun/uvpoll.ts FdWatcher, src/tun/udpdrain.ts RxDrainer) on a real
// loopback UDP socket, no root needed: readiness arrives from libuv, level-triggered; stop() silences it and
// start() resumes; the drainer fills ring buffers with length, sender and port, and reports an empty socket,
// a spent budget and a ring with no free buffer.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import * as libc from '../../src/tun/libc.js';
import * as sys from '../../src/tun/sys.js';
import { FdWatcher } from '../../src/tun/uvpoll.js';
import { BUDGET, DRAINED, NO_BUFFERS, RxDrainer, VLEN } from '../../src/tun/udpdrain.js';
import { RX_ADDR, RX_FAMILY, RX_LEN, RX_PORT, RxRing } from '../../src/tun/udpring.js';

/** A non-blocking UDP socket on 127.0.0.1 and its port. */
function loopbackSocket(): { fd: number; port: number } {
  const fd = sys.socket(libc.AF_INET, libc.SOCK_DGRAM | libc.SOCK_NONBLOCK | libc.SOCK_CLOEXEC);
  assert.ok(fd >= 0, `socket: ${fd}`);
  const sa = Buffer.alloc(16);
  sa.writeUInt16LE(libc.AF_INET, 0);
  sa.set([127, 0, 0, 1], 4);
  assert.equal(sys.bind(fd, sa), 0);
  const out = Buffer.alloc(16);
  assert.equal(sys.getsockname(fd, out), 0);
  return { fd, port: out.readUInt16BE(2) };
}

async function sendAll(port: number, payloads: Buffer[]): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  for (const p of payloads) await new Promise<void>((r, j) => s.send(p, port, '127.0.0.1', (e) => (e ? j(e) : r())));
  const from = s.address().port;
  s.close();
  return from;
}

const turn = (): Promise<void> => new Promise((r) => setTimeout(r, 20));

test('FdWatcher: called while the socket is readable, silent once stopped, again after start', async () => {
  const { fd, port } = loopbackSocket();
  const buf = new Uint8Array(2048);
  let calls = 0;
  let consume = true;
  const w = new FdWatcher(fd, () => {
    calls++;
    if (consume) while (readOne(fd, buf) >= 0);
  }, () => assert.fail('no error expected'));
  try {
    w.start();
    assert.equal(w.running, true);
    await turn();
    assert.equal(calls, 0, 'nothing to read: no call');
    await sendAll(port, [Buffer.from('one')]);
    await turn();
    assert.equal(calls, 1, 'one datagram: one call, and it was read');
    consume = false;
    await sendAll(port, [Buffer.from('two')]);
    await turn();
    assert.ok(calls >= 3, `level-triggered: left unread, it is called again on later turns (${calls})`);
    w.stop();
    const stopped = calls;
    await turn();
    assert.equal(calls, stopped, 'stopped: no more calls');
    consume = true;
    w.start();
    await turn();
    assert.equal(calls, stopped + 1, 'started again: the waiting datagram is reported once, then read');
  } finally {
    w.close();
    sys.close(fd);
  }
});

/** One datagram, with read(2) (it works on a datagram socket too); -EAGAIN once the socket is empty. */
function readOne(fd: number, buf: Uint8Array): number {
  return sys.readAt(fd, sys.addressOf(buf), buf.length);
}

test('RxDrainer: datagrams land in ring buffers with length, sender and port; empty, budget and no-buffer results', async () => {
  const { fd, port } = loopbackSocket();
  try {
    const ring = RxRing.create(VLEN * 2, 2048);
    const drainer = new RxDrainer(ring);
    assert.equal(drainer.drain(fd, 1), DRAINED, 'an empty socket');
    const payloads = Array.from({ length: 5 }, (_, i) => Buffer.alloc(100 + i, i + 1));
    const from = await sendAll(port, payloads);
    assert.equal(drainer.drain(fd, 4), DRAINED);
    for (let i = 0; i < payloads.length; i++) {
      const b = ring.ready.pop();
      assert.ok(b >= 0, `datagram ${i} is in the ring`);
      assert.equal(ring.get(b, RX_LEN), payloads[i].length);
      assert.deepEqual(ring.data.subarray(b * ring.size, b * ring.size + payloads[i].length), payloads[i]);
      assert.equal(ring.get(b, RX_FAMILY), 4);
      assert.equal(ring.get(b, RX_PORT), from);
      assert.deepEqual([...new Uint8Array(Int32Array.of(ring.get(b, RX_ADDR)).buffer)], [127, 0, 0, 1]);
      ring.free.push(b);
    }
    assert.equal(ring.ready.pop(), -1);

    // More datagrams than one call takes: one call leaves the rest (BUDGET), the next call gets them.
    await sendAll(port, Array.from({ length: VLEN + 3 }, () => Buffer.from('x')));
    assert.equal(drainer.drain(fd, 1), BUDGET);
    assert.equal(ring.ready.size, VLEN);
    // No free buffer left for the rest: NO_BUFFERS, and nothing is lost from the socket.
    while (ring.free.pop() >= 0);
    assert.equal(drainer.drain(fd, 1), NO_BUFFERS);
    while (ring.ready.size > 0) ring.free.push(ring.ready.pop());
    assert.equal(drainer.drain(fd, 4), DRAINED);
    assert.equal(ring.ready.size, 3, 'the 3 left over arrive once buffers are free again');
  } finally {
    sys.close(fd);
  }
});

test('RxDrainer: a full call followed by an empty socket, and a closed socket; no buffer is lost either way', async () => {
  const { fd, port } = loopbackSocket();
  const ring = RxRing.create(VLEN * 2, 2048);
  const drainer = new RxDrainer(ring);
  try {
    // Exactly one call's worth: the second call finds the socket empty (EAGAIN) and gives its buffers back.
    await sendAll(port, Array.from({ length: VLEN }, (_, i) => Buffer.alloc(10, i)));
    assert.equal(drainer.drain(fd, 4), DRAINED);
    assert.equal(ring.ready.size, VLEN);
    while (ring.ready.size > 0) ring.free.push(ring.ready.pop());
    await sendAll(port, Array.from({ length: 2 * VLEN - 1 }, () => Buffer.from('y')));
    assert.equal(drainer.drain(fd, 4), DRAINED, 'every buffer the empty call took came back for these');
    assert.equal(ring.ready.size, 2 * VLEN - 1);
  } finally {
    sys.close(fd);
  }
  assert.equal(drainer.drain(fd, 1), -libc.E.EBADF, 'a closed socket is reported, not taken for an empty one');
  // Every buffer is still usable: the ones the failed calls took are used first by the next read.
  while (ring.ready.size > 0) ring.free.push(ring.ready.pop());
  const other = loopbackSocket();
  try {
    await sendAll(other.port, Array.from({ length: 2 * VLEN }, () => Buffer.from('z')));
    assert.equal(drainer.drain(other.fd, 4), NO_BUFFERS);
    assert.equal(ring.ready.size, 2 * VLEN);
  } finally {
    sys.close(other.fd);
  }
});

test('RxDrainer: on the control thread (newestFirst) a buffer given back is the next one filled; the receive thread cycles', async () => {
  const { fd, port } = loopbackSocket();
  try {
    const used = async (drainer: RxDrainer, ring: RxRing): Promise<number[]> => {
      const out: number[] = [];
      for (let i = 0; i < 6; i++) {
        await sendAll(port, [Buffer.from('ping')]);
        assert.equal(drainer.drain(fd, 4), DRAINED);
        const b = ring.ready.pop();
        assert.ok(b >= 0 && ring.ready.pop() === -1, 'one datagram, one buffer');
        out.push(b);
        ring.free.push(b); // as the control thread does once the datagram is handled
      }
      return out;
    };
    const lifo = RxRing.create(VLEN * 4, 2048);
    const newest = await used(new RxDrainer(lifo, true), lifo);
    assert.equal(new Set(newest).size, 1, `one warm buffer for a datagram at a time: ${newest}`);
    const fifo = RxRing.create(VLEN * 4, 2048);
    const oldest = await used(new RxDrainer(fifo), fifo);
    assert.equal(new Set(oldest).size, 6, `the receive thread's FIFO order: ${oldest}`);
  } finally {
    sys.close(fd);
  }
});
