// The TUN reader thread (the kernel's xmit entry): blocks in read(2) on the TUN fd and places each packet in a
// free slot of the outbound arena at the payload offset, so it can be sealed where it lies. It hands slots to
// the control thread through an SPSC queue and waits for free ones when all are in use, which pushes back on
// the TUN's own queue instead of growing memory.

import { parentPort, workerData } from 'node:worker_threads';
import { AEAD_TAG_SIZE, DATA_HEADER_SIZE } from '../constants.js';

const EAGAIN = 11;
const EBADFD = 77;
import { META_LEN, SlotArena, type SlotArenaShape } from '../queues/slots.js';
import { SpscQueue } from '../queues/spsc.js';
import { tunRead } from './tun.js';

export interface TunReaderData {
  fd: number;
  arena: SlotArenaShape;
  ready: SharedArrayBuffer;
  free: SharedArrayBuffer;
}

export type TunReaderMessage = { kind: 'error'; code: string; message: string };

function run(data: TunReaderData): void {
  const arena = SlotArena.attach(data.arena);
  const ready = new SpscQueue(data.ready);
  const free = new SpscQueue(data.free);
  const room = arena.slotSize - DATA_HEADER_SIZE - AEAD_TAG_SIZE - 16; // header, tag and padding
  let s = -1;
  for (;;) {
    if (s < 0) s = free.pop();
    if (s < 0) {
      free.waitSync(100);
      continue;
    }
    const n = tunRead(data.fd, arena.bytes, arena.offset(s) + DATA_HEADER_SIZE, room);
    if (n < 0) {
      if (n === -EAGAIN) continue; // keeps the slot; cannot happen on a blocking fd
      // -EBADFD: the interface was deleted. The control thread decides what that means.
      parentPort?.postMessage({ kind: 'error', code: n === -EBADFD ? 'EBADFD' : `errno ${-n}`, message: 'TUN read failed' } satisfies TunReaderMessage);
      return;
    }
    arena.set(s, META_LEN, n);
    ready.push(s); // never full: it holds every slot there is
    ready.wake();
    s = -1;
  }
}

run(workerData as TunReaderData);
