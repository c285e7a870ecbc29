// The data plane's building blocks without threads: the SPSC slot queue, per-peer serial release order, batch
// sealing/opening in a SharedArrayBuffer arena with the shared key table, and the ICMP unreachable builder.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SpscQueue } from '../../src/queues/spsc.js';
import { BatchBoard, SerialQueue } from '../../src/queues/serial.js';
import { META_KEY, META_LEN, META_RESULT, SlotArena } from '../../src/queues/slots.js';
import { KeyTable } from '../../src/workers/keytable.js';
import { CryptJob, cryptBatch, Spares } from '../../src/workers/batch.js';
import { defaultSuite } from '../../src/crypto/index.js';
import { writeDataHeader, sealedSize } from '../../src/dataplane/transport.js';
import { hostUnreachable } from '../../src/dataplane/icmp.js';
import { ipv4, ipv6 } from '../helpers/packets.js';

test('SPSC queue: FIFO, bounded, and visible through a second view of the same memory', () => {
  const q = new SpscQueue(4);
  const other = new SpscQueue(q.sab);
  assert.equal(q.pop(), -1);
  for (const v of [7, 8, 9, 10]) assert.ok(q.push(v));
  assert.equal(q.push(11), false, 'full at capacity');
  assert.equal(other.size, 4);
  assert.deepEqual([other.pop(), other.pop()], [7, 8]);
  assert.ok(q.push(11) && q.push(12));
  assert.deepEqual([other.pop(), other.pop(), other.pop(), other.pop(), other.pop()], [9, 10, 11, 12, -1]);
});

test('SPSC queue: FIFO and size stay right when head and tail wrap past 2^31', () => {
  const q = new SpscQueue(8);
  // Seven pushes short of the int32 limit, as after ~2^31 packets through a queue that takes every packet.
  q.words[0] = q.words[1] = 2 ** 31 - 7;
  const seen: number[] = [];
  for (let round = 0; round < 4; round++) {
    for (let i = 0; i < 8; i++) assert.ok(q.push(round * 8 + i), `push ${round * 8 + i}`);
    assert.equal(q.push(99), false, 'full at capacity across the wrap');
    assert.equal(q.size, 8);
    for (let i = 0; i < 8; i++) seen.push(q.pop());
    assert.equal(q.pop(), -1);
    assert.equal(q.size, 0);
  }
  assert.deepEqual(seen, Array.from({ length: 32 }, (_, i) => i));
  assert.ok(q.words[1] < 0, 'the tail did wrap');
});

test('SPSC queue: capacity is the next power of two; takeNewest takes back the last push', () => {
  assert.equal(new SpscQueue(5).capacity, 8);
  assert.equal(new SpscQueue(1024).capacity, 1024);
  assert.throws(() => new SpscQueue(new SharedArrayBuffer((4 + 6) * 4)), /not a power of two/);
  const q = new SpscQueue(4);
  q.words[0] = q.words[1] = 2 ** 31 - 2; // and across the wrap
  for (const v of [1, 2, 3]) q.push(v);
  assert.equal(q.takeNewest(), 3);
  assert.ok(q.push(4));
  assert.deepEqual([q.takeNewest(), q.pop(), q.takeNewest(), q.takeNewest(), q.pop()], [4, 1, 2, -1, -1]);
  assert.equal(q.size, 0);
});

test('SPSC queue: waitAsync resolves when a worker pushes', async () => {
  const { Worker } = await import('node:worker_threads');
  const q = new SpscQueue(8);
  const w = new Worker(
    `const { workerData } = require('node:worker_threads');
     const w = new Int32Array(workerData);
     setTimeout(() => { w[4 + (w[1] % 8)] = 42; Atomics.store(w, 1, w[1] + 1); if (Atomics.load(w, 2)) Atomics.notify(w, 1); }, 50);`,
    { eval: true, workerData: q.sab },
  );
  const t = performance.now();
  await q.waitAsync();
  assert.ok(performance.now() - t >= 40, 'it actually waited');
  assert.equal(q.pop(), 42);
  await w.terminate();
});

test('serial queues release each peer in entry order, whatever order batches finish in', () => {
  const board = new BatchBoard();
  const qa = new SerialQueue(16);
  const qb = new SerialQueue(16);
  const b1 = board.open();
  qa.push(b1, 1);
  qb.push(b1, 2);
  const b2 = board.open();
  qa.push(b2, 3);
  qa.push(b2, 4);
  const out: number[] = [];
  board.finish(b2);
  assert.equal(qa.drain(board, (s) => out.push(s)), 0, 'batch 2 waits for batch 1');
  board.finish(b1);
  qa.drain(board, (s) => out.push(s));
  qb.drain(board, (s) => out.push(s));
  assert.deepEqual(out, [1, 3, 4, 2]);
  const small = new SerialQueue(2);
  assert.ok(small.push(0, 1) && small.push(0, 2));
  assert.equal(small.push(0, 3), false, 'bounded like a ptr_ring');
});

test('batch crypto in a SharedArrayBuffer arena: sealed slots open again with the mirrored keys', () => {
  const suite = defaultSuite();
  const keys = KeyTable.create(8);
  const send = new Uint8Array(32).fill(1);
  const recv = new Uint8Array(32).fill(2);
  const ka = keys.put(send, recv);
  const kb = keys.put(recv, send); // the other side's view
  const out = SlotArena.create(8, 2048);
  const inn = SlotArena.create(8, 2048);
  const sizes = [0, 1, 100, 1420];
  const slots = Int32Array.from(sizes.map((_, i) => i));
  sizes.forEach((n, s) => {
    const b = out.slot(s).bytes;
    writeDataHeader(b, 77);
    b.writeUInt32LE(s, 8);
    b.fill(s + 1, 16, 16 + n);
    out.set(s, META_LEN, n);
    out.set(s, META_KEY, ka);
  });
  cryptBatch({ op: 'seal', slots, count: slots.length, mtu: 1420 }, suite, out, keys);
  sizes.forEach((n, s) => {
    const len = out.get(s, META_RESULT);
    assert.equal(len, sealedSize(n, 1420));
    inn.slot(s).bytes.set(out.slot(s).bytes.subarray(0, len));
    inn.set(s, META_LEN, len);
    inn.set(s, META_KEY, kb);
  });
  cryptBatch({ op: 'open', slots, count: slots.length, mtu: 1420 }, suite, inn, keys);
  sizes.forEach((n, s) => {
    const plain = inn.get(s, META_RESULT);
    assert.equal(plain, sealedSize(n, 1420) - 32);
    assert.ok(inn.slot(s).bytes.subarray(16, 16 + n).every((x) => x === s + 1));
  });
  // A released key is zeroed at once: opening with it fails.
  keys.release(kb);
  inn.slot(3).bytes.set(out.slot(3).bytes.subarray(0, out.get(3, META_RESULT)));
  cryptBatch({ op: 'open', slots: Int32Array.of(3), count: 1, mtu: 1420 }, suite, inn, keys);
  assert.equal(inn.get(3, META_RESULT), -1);
});

test('key table: released slots are reused only after a cool-down', () => {
  const keys = KeyTable.create(1);
  const k = new Uint8Array(32).fill(9);
  const a = keys.put(k, k, 0);
  assert.equal(keys.put(k, k, 0), -1, 'full');
  keys.release(a, 10);
  assert.equal(keys.put(k, k, 500), -1, 'a batch in a worker may still read it');
  assert.equal(keys.put(k, k, 1_010), a);
});

const sum16 = (b: Uint8Array, off: number, len: number, init = 0): number => {
  let s = init;
  for (let i = 0; i + 1 < len; i += 2) s += (b[off + i] << 8) | b[off + i + 1];
  if (len & 1) s += b[off + len - 1] << 8;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
};

test('ICMP host unreachable for IPv4 and IPv6, with valid checksums; never for an ICMP error', () => {
  const p4 = ipv4('203.0.113.1', '198.18.0.9', new Uint8Array(30).fill(5));
  const e4 = hostUnreachable(p4, 0, p4.length)!;
  assert.deepEqual([e4[20], e4[21]], [3, 1]);
  assert.deepEqual([...e4.subarray(12, 16)], [198, 18, 0, 9]);
  assert.deepEqual([...e4.subarray(16, 20)], [203, 0, 113, 1]);
  assert.equal(sum16(e4, 0, 20), 0xffff, 'IPv4 header checksum');
  assert.equal(sum16(e4, 20, e4.length - 20), 0xffff, 'ICMP checksum');
  assert.deepEqual(e4.subarray(28), p4.subarray(0, 28), 'quotes the header and 8 bytes');
  assert.equal(hostUnreachable(e4, 0, e4.length), null, 'no error about an error');

  const src = new Uint8Array(16);
  src[0] = 0x20;
  src[15] = 1;
  const dst = new Uint8Array(16);
  dst[0] = 0x20;
  dst[15] = 2;
  const p6 = ipv6(src, dst, new Uint8Array(20));
  const e6 = hostUnreachable(p6, 0, p6.length)!;
  assert.deepEqual([e6[40], e6[41]], [1, 3]);
  let pseudo = 0;
  for (let i = 8; i < 40; i += 2) pseudo += (e6[i] << 8) | e6[i + 1];
  pseudo += e6.length - 40 + 58;
  assert.equal(sum16(e6, 40, e6.length - 40, pseudo), 0xffff, 'ICMPv6 checksum over the pseudo-header');
  assert.equal(hostUnreachable(e6, 0, e6.length), null);
});

test('the control thread seals and opens a slot without views in the scratch slot: same bytes, no views made', () => {
  const suite = defaultSuite();
  const keys = KeyTable.create(4);
  const ka = keys.put(new Uint8Array(32).fill(5), new Uint8Array(32).fill(6));
  const kb = keys.put(new Uint8Array(32).fill(6), new Uint8Array(32).fill(5));
  const sizes = [0, 84, 1420];
  const fill = (arena: SlotArena, s: number, n: number): void => {
    const b = arena.slot(s).bytes;
    b.fill(0xee); // stale bytes from an earlier packet, beyond this one's padding
    writeDataHeader(b, 9);
    b.writeUInt32LE(1000 + s, 8);
    for (let i = 0; i < n; i++) b[16 + i] = (i * 7 + s) & 0xff;
    arena.set(s, META_LEN, n);
    arena.set(s, META_KEY, ka);
  };
  const inPlace = SlotArena.create(4, 2048);
  const scratch = SlotArena.create(4, 2048);
  sizes.forEach((n, s) => {
    fill(inPlace, s, n);
    fill(scratch, s, n);
  });
  scratch.slot(3).bytes.fill(0x33); // a neighbour that must stay as it is
  const slots = Int32Array.of(0, 1, 2);
  cryptBatch({ op: 'seal', slots, count: 3, mtu: 1420 }, suite, inPlace, keys);
  cryptBatch({ op: 'seal', slots, count: 3, mtu: 1420 }, suite, scratch, keys, true);
  sizes.forEach((n, s) => {
    const len = scratch.get(s, META_RESULT);
    assert.equal(len, sealedSize(n, 1420));
    assert.deepEqual(scratch.slot(s).bytes.subarray(0, len), inPlace.slot(s).bytes.subarray(0, len), `size ${n}: same message`);
    assert.equal(scratch.slot(s).has(len - 16), false, `size ${n}: no payload view was made`);
  });
  assert.ok(scratch.slot(3).bytes.every((x) => x === 0x33), 'the next slot is untouched');
  // Opened through the scratch slot too, with the other side's key; a corrupted one fails and stays -1.
  for (const s of [0, 1, 2]) scratch.set(s, META_LEN, scratch.get(s, META_RESULT));
  for (const s of [0, 1, 2]) scratch.set(s, META_KEY, kb);
  scratch.slot(2).bytes[40] ^= 1;
  cryptBatch({ op: 'open', slots, count: 3, mtu: 1420 }, suite, scratch, keys, true);
  [0, 1].forEach((s) => {
    const n = sizes[s];
    assert.equal(scratch.get(s, META_RESULT), sealedSize(n, 1420) - 32);
    for (let i = 0; i < n; i++) assert.equal(scratch.slot(s).bytes[16 + i], (i * 7 + s) & 0xff);
  });
  assert.equal(scratch.get(2, META_RESULT), -1, 'a corrupted message fails to open');
});

test('drainInto hands out the same slots in the same order as drain, into a caller array', () => {
  const board = new BatchBoard();
  const q = new SerialQueue(8);
  const b1 = board.open();
  const b2 = board.open();
  q.push(b1, 5);
  q.push(b2, 6);
  q.push(b2, 7);
  const out = new Int32Array(8).fill(-1);
  board.finish(b2);
  assert.equal(q.drainInto(board, out, 2), 0, 'batch 2 waits for batch 1');
  board.finish(b1);
  assert.equal(q.drainInto(board, out, 2), 3);
  assert.deepEqual([...out], [-1, -1, 5, 6, 7, -1, -1, -1]);
  assert.equal(q.size, 0);
});

test('batch jobs are reused: a peer enters a job once, done() reaches the completion with its job, clear() forgets', () => {
  const finished: [CryptJob<object, number>, unknown][] = [];
  let made = 0;
  const spares = new Spares(() => {
    made++;
    return new CryptJob<object, number>('seal', 4, (job, err) => finished.push([job, err]));
  });
  const peer = {};
  const job = spares.take();
  job.addPeer(peer, 1);
  job.addPeer(peer, 2);
  job.addPeer({}, 3);
  assert.equal(job.npeers, 2, 'the same peer once');
  assert.equal(job.values[0], 1, 'with the value it came with first');
  job.done();
  job.done('boom');
  assert.deepEqual(finished, [[job, undefined], [job, 'boom']]);
  job.clear();
  assert.equal(job.npeers, 0);
  assert.equal(job.peers[0], undefined, 'no reference to a peer is kept');
  spares.give(job);
  assert.equal(spares.take(), job, 'a given job comes back');
  assert.notEqual(spares.take(), job, 'and only once');
  assert.equal(made, 2);
});
