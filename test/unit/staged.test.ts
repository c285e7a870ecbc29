// Unit tests for the per-peer staged queue (src/queues/staged.ts): FIFO order, the 128-packet cap with
// drop-oldest, drain/clear/requeue and the drop count.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MAX_STAGED_PACKETS } from '../../src/constants.js';
import { StagedQueue } from '../../src/queues/staged.js';

const range = (a: number, b: number) => Array.from({ length: b - a }, (_, i) => a + i);

test('drain returns packets in FIFO order and empties the queue', () => {
  const q = new StagedQueue<string>();
  assert.equal(q.size, 0);
  assert.deepEqual(q.drain(), []);
  q.push('a');
  q.push('b');
  q.push('c');
  assert.equal(q.size, 3);
  assert.deepEqual(q.drain(), ['a', 'b', 'c']);
  assert.equal(q.size, 0);
  assert.deepEqual(q.drain(), []);
  q.push('d');
  assert.deepEqual(q.drain(), ['d']);
  assert.equal(q.dropped, 0);
});

test('holds at most 128 packets and drops the OLDEST to make room', () => {
  const q = new StagedQueue<number>();
  assert.equal(q.capacity, MAX_STAGED_PACKETS);
  assert.equal(MAX_STAGED_PACKETS, 128);
  for (const i of range(0, 128)) assert.equal(q.push(i), undefined);
  assert.equal(q.size, 128);
  assert.equal(q.dropped, 0);
  assert.equal(q.push(128), 0, 'evicts the oldest');
  assert.equal(q.push(129), 1);
  assert.equal(q.size, 128);
  assert.equal(q.dropped, 2);
  for (const i of range(130, 1000)) q.push(i);
  assert.equal(q.size, 128);
  assert.equal(q.dropped, 1000 - 128);
  assert.deepEqual(q.drain(), range(1000 - 128, 1000));
});

test('ring wrap-around keeps FIFO order across partial drains', () => {
  const q = new StagedQueue<number>(4);
  q.push(1);
  q.push(2);
  q.push(3);
  assert.deepEqual(q.drain(), [1, 2, 3]);
  for (const i of [4, 5, 6, 7, 8, 9]) q.push(i);
  assert.deepEqual(q.drain(), [6, 7, 8, 9]);
  assert.equal(q.dropped, 2);
  assert.throws(() => new StagedQueue(0));
});

test('clear discards everything and counts it as dropped', () => {
  const q = new StagedQueue<Uint8Array>();
  for (let i = 0; i < 5; i++) q.push(new Uint8Array([i]));
  assert.equal(q.clear(), 5);
  assert.equal(q.size, 0);
  assert.equal(q.dropped, 5);
  assert.deepEqual(q.drain(), []);
  assert.equal(q.clear(), 0);
  q.push(new Uint8Array([9]));
  assert.deepEqual(q.drain(), [new Uint8Array([9])]);
});

test('requeue puts drained packets back before newer ones, dropping the oldest on overflow', () => {
  const q = new StagedQueue<number>(5);
  q.push(1);
  q.push(2);
  const taken = q.drain();
  q.push(3);
  q.requeue(taken);
  assert.deepEqual(q.drain(), [1, 2, 3]);
  q.push(3);
  q.push(4);
  q.push(5);
  q.push(6);
  q.requeue([1, 2]);
  assert.equal(q.size, 5);
  assert.equal(q.dropped, 1);
  assert.deepEqual(q.drain(), [2, 3, 4, 5, 6]);
});
