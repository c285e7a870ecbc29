// The TUN reader thread, used when the control thread does not read the TUN itself (WGTS_IO=threads): blocks
// in read(2) on the TUN fd and runs TunIngest (ingest.ts), which places each packet in a free slot of the
// outbound arena and hands slots to the control thread through an SPSC queue. It waits for free slots when
// all are in use, which pushes back on the TUN's own queue instead of growing memory.

import { parentPort, workerData } from 'node:worker_threads';
import { SlotArena, type SlotArenaShape } from '../queues/slots.js';
import { SpscQueue } from '../queues/spsc.js';
import { E } from './libc.js'; // constants only
import { EMPTY, NO_SLOTS, TunIngest } from './ingest.js';

export interface TunReaderData {
  fd: number;
  /** Reads carry a virtio_net_hdr and may be TCP super-packets to split (IFF_VNET_HDR + TUNSETOFFLOAD). */
  vnetHdr: boolean;
  arena: SlotArenaShape;
  ready: SharedArrayBuffer;
  free: SharedArrayBuffer;
}

export type TunReaderMessage = { kind: 'error'; code: string; message: string };

function run(data: TunReaderData): void {
  const free = new SpscQueue(data.free);
  const ingest = new TunIngest(data.fd, data.vnetHdr, SlotArena.attach(data.arena), new SpscQueue(data.ready), free);
  for (;;) {
    const r = ingest.read(64);
    if (r === NO_SLOTS) free.waitSync(100);
    else if (r < 0) {
      // -EBADFD: the interface was deleted. The control thread decides what that means.
      parentPort?.postMessage({ kind: 'error', code: r === -E.EBADFD ? 'EBADFD' : `errno ${-r}`, message: 'TUN read failed' } satisfies TunReaderMessage);
      return;
    } else if (r === EMPTY) free.waitSync(1); // cannot happen on a blocking fd; never spin if it does
  }
}

run(workerData as TunReaderData);
