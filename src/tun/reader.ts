// The TUN reader thread: runs TunIngest (ingest.ts), which places each packet in a free slot of the outbound
// arena and hands slots to the control thread through an SPSC queue. It waits for free slots when all are
// in use, which pushes back on the TUN's own queue instead of growing memory. With WGTS_IO=threads it owns
// the TUN for good and blocks in read(2). Otherwise (tunfeed.ts) it reads only while the control thread has
// handed it the TUN under a flood of small packets: then the fd is non-blocking, it waits in poll(2), and it
// hands the TUN back once fewer than HANDBACK_RATE reads/s arrive.

import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { SlotArena, type SlotArenaShape } from '../queues/slots.js';
import { SpscQueue } from '../queues/spsc.js';
import { EMPTY, NO_SLOTS, TunIngest } from './ingest.js';
import { CMemory, POLLFD_SIZE } from './msghdr.js';
import { POLLIN, poll } from './sys.js';

export interface TunReaderData {
  fd: number;
  /** Reads carry a virtio_net_hdr and may be TCP super-packets to split (IFF_VNET_HDR + TUNSETOFFLOAD). */
  vnetHdr: boolean;
  arena: SlotArenaShape;
  ready: SharedArrayBuffer;
  free: SharedArrayBuffer;
  /** Word 0: who reads the TUN (OWNER_*); word 1: non-zero when the thread must end; word 2: set here once running. */
  owner: SharedArrayBuffer;
  /** The control thread reads the TUN too, at other times: read only while owning it. */
  shared: boolean;
}

/** A read failed for good: `errno` is negative (-EBADFD once the interface is gone). */
export type TunReaderMessage = { kind: 'error'; errno: number };

export const OWNER_MAIN = 0;
export const OWNER_THREAD = 1;
/** Below this many reads per second the thread gives the TUN back to the control thread. */
const HANDBACK_RATE = 5_000;
const WINDOW_MS = 100;

function run(data: TunReaderData): void {
  const free = new SpscQueue(data.free);
  const ingest = new TunIngest(data.fd, data.vnetHdr, SlotArena.attach(data.arena), new SpscQueue(data.ready), free);
  const owner = new Int32Array(data.owner);
  const pfd = new CMemory(POLLFD_SIZE);
  pfd.i32[0] = data.fd;
  pfd.u16[2] = POLLIN;
  let windowStart = performance.now();
  let windowReads = 0;
  Atomics.store(owner, 2, 1);
  for (;;) {
    if (Atomics.load(owner, 1) !== 0) return;
    if (Atomics.load(owner, 0) !== OWNER_THREAD) {
      Atomics.wait(owner, 0, OWNER_MAIN);
      windowStart = performance.now();
      windowReads = ingest.reads;
      continue;
    }
    const r = ingest.read(64);
    if (r === NO_SLOTS) free.waitSync(100);
    else if (r < 0) {
      // The control thread decides what that means (tunfeed.ts), as for its own reads.
      parentPort?.postMessage({ kind: 'error', errno: r } satisfies TunReaderMessage);
      return;
    } else if (r === EMPTY) {
      // Only on a non-blocking fd: wait for more, but not past the end of the rate window.
      pfd.u16[3] = 0;
      poll(pfd.u8, 1, data.shared ? WINDOW_MS : 1_000);
    }
    if (!data.shared) continue;
    const now = performance.now();
    if (now - windowStart < WINDOW_MS) continue;
    const rate = ((ingest.reads - windowReads) * 1000) / (now - windowStart);
    windowStart = now;
    windowReads = ingest.reads;
    if (rate < HANDBACK_RATE && !ingest.holding) {
      Atomics.store(owner, 0, OWNER_MAIN);
      Atomics.notify(owner, 0);
    }
  }
}

// The control thread imports this module for its constants only.
if (!isMainThread) run(workerData as TunReaderData);
