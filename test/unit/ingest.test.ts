// Taking packets off the TUN into outbound slots (src/tun/ingest.ts), no root needed: a FIFO stands in for a
// TUN without IFF_VNET_HDR (one write, read whole, is one packet). Each packet lands after the data header
// room of a free slot with its length in the slot's metadata; an empty fd is EMPTY and an empty free queue
// NO_SLOTS; and on the control thread (newestFirst) a slot given back is the next one used, while the reader
// thread's order cycles through them all.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DATA_HEADER_SIZE } from '../../src/constants.js';
import { META_LEN, SlotArena } from '../../src/queues/slots.js';
import { SpscQueue } from '../../src/queues/spsc.js';
import { BUDGET, EMPTY, NO_SLOTS, TunIngest } from '../../src/tun/ingest.js';

function withFifo(fn: (fd: number) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'wgts-ingest-'));
  const path = join(dir, 'tun');
  execFileSync('mkfifo', [path]);
  const fd = openSync(path, constants.O_RDWR | constants.O_NONBLOCK);
  try {
    fn(fd);
  } finally {
    closeSync(fd);
    rmSync(dir, { recursive: true });
  }
}

function setUp(count: number): { arena: SlotArena; ready: SpscQueue; free: SpscQueue } {
  const arena = SlotArena.create(count, 2048);
  const ready = new SpscQueue(count);
  const free = new SpscQueue(count);
  for (let i = 0; i < count; i++) free.push(i);
  return { arena, ready, free };
}

test('TunIngest: a packet lands in a free slot behind the header room; EMPTY when drained, NO_SLOTS without slots', () => {
  withFifo((fd) => {
    const { arena, ready, free } = setUp(4);
    const ingest = new TunIngest(fd, false, arena, ready, free);
    assert.equal(ingest.read(8), EMPTY);
    const packet = Buffer.from('450000148899000040110000c0000201c0000202', 'hex');
    writeSync(fd, packet);
    assert.equal(ingest.read(8), EMPTY, 'read, then the fd is empty');
    const s = ready.pop();
    assert.ok(s >= 0);
    assert.equal(arena.get(s, META_LEN), packet.length);
    const at = arena.offset(s) + DATA_HEADER_SIZE;
    assert.deepEqual(arena.bytes.subarray(at, at + packet.length), packet);
    // A reader with no free slot: the packet stays in the fd until one is free.
    const none = setUp(4);
    while (none.free.pop() >= 0);
    const starved = new TunIngest(fd, false, none.arena, none.ready, none.free);
    writeSync(fd, packet);
    assert.equal(starved.read(8), NO_SLOTS, 'no free slot: the packet stays in the fd');
    none.free.push(2);
    assert.equal(starved.read(1), BUDGET);
    assert.equal(none.ready.pop(), 2, 'and is read once a slot is free');
    assert.equal(none.arena.get(2, META_LEN), packet.length);
  });
});

test('TunIngest: newestFirst reuses the slot given back last; the reader thread cycles through every slot', () => {
  const slotsUsed = (newestFirst: boolean): number[] => {
    const used: number[] = [];
    withFifo((fd) => {
      const { arena, ready, free } = setUp(16);
      const ingest = new TunIngest(fd, false, arena, ready, free, newestFirst);
      for (let i = 0; i < 8; i++) {
        writeSync(fd, Buffer.alloc(60, i));
        assert.equal(ingest.read(4), EMPTY);
        const s = ready.pop();
        assert.ok(s >= 0 && ready.pop() === -1, 'one packet, one slot');
        used.push(s);
        free.push(s); // as the send path does once the packet is sent
      }
    });
    return used;
  };
  const newest = slotsUsed(true);
  assert.equal(new Set(newest).size, 1, `one warm slot for a packet at a time: ${newest}`);
  assert.equal(new Set(slotsUsed(false)).size, 8, 'FIFO order: a fresh slot each time');
});
