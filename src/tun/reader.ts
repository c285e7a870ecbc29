// The TUN reader thread (the kernel's xmit entry): blocks in read(2) on the TUN fd and places each packet in a
// free slot of the outbound arena at the payload offset, so it can be sealed where it lies. It hands slots to
// the control thread through an SPSC queue and waits for free ones when all are in use, which pushes back on
// the TUN's own queue instead of growing memory.

import { parentPort, workerData } from 'node:worker_threads';
import { AEAD_TAG_SIZE, DATA_HEADER_SIZE } from '../constants.js';
import { META_LEN, SlotArena, type SlotArenaShape } from '../queues/slots.js';
import { SpscQueue } from '../queues/spsc.js';
import { tunRead } from './tun.js';
import { E } from './libc.js'; // constants only: ffi-rs itself loads lazily, on the main thread
import { GRO_MAX_PACKET, parseVnetHdr, tsoSplit, VNET_HDR_GSO_NONE, VNET_HDR_LEN, type VnetHdr } from '../dataplane/offload.js';

export interface TunReaderData {
  fd: number;
  /** Reads carry a virtio_net_hdr and may be TCP super-packets to split (IFF_VNET_HDR + TUNSETOFFLOAD). */
  vnetHdr: boolean;
  arena: SlotArenaShape;
  ready: SharedArrayBuffer;
  free: SharedArrayBuffer;
}

export type TunReaderMessage = { kind: 'error'; code: string; message: string };

/** More segments than this from one read is refused (64 KB in 536-byte segments is 123). */
const MAX_SEGMENTS = 160;

function fail(n: number): void {
  // -EBADFD: the interface was deleted. The control thread decides what that means.
  parentPort?.postMessage({ kind: 'error', code: n === -E.EBADFD ? 'EBADFD' : `errno ${-n}`, message: 'TUN read failed' } satisfies TunReaderMessage);
}

/**
 * Offload mode: one read is a super-packet of up to 64 KB; it is split into MTU-sized segments written
 * straight into free slots at the payload offset, checksums completed, so the rest of the path is unchanged.
 */
function runOffload(data: TunReaderData): void {
  const arena = SlotArena.attach(data.arena);
  const ready = new SpscQueue(data.ready);
  const free = new SpscQueue(data.free);
  const stage = Buffer.alloc(VNET_HDR_LEN + GRO_MAX_PACKET);
  const hdr: VnetHdr = { flags: 0, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 0, csumOffset: 0 };
  const outs: Uint8Array[] = [];
  const outLens = new Int32Array(MAX_SEGMENTS);
  const taken: number[] = []; // slots popped from the free queue and not yet filled
  for (;;) {
    const n = tunRead(data.fd, stage, 0, stage.length);
    if (n < 0) {
      if (n === -E.EAGAIN) continue;
      return fail(n);
    }
    if (n <= VNET_HDR_LEN || !parseVnetHdr(stage, 0, hdr)) continue;
    const len = n - VNET_HDR_LEN;
    const want = hdr.gsoType === VNET_HDR_GSO_NONE || hdr.gsoSize === 0 ? 1 : Math.ceil(len / hdr.gsoSize) + 1;
    if (want > MAX_SEGMENTS) continue;
    while (taken.length < want) {
      const s = free.pop();
      if (s < 0) free.waitSync(100);
      else taken.push(s);
    }
    outs.length = want;
    for (let i = 0; i < want; i++) outs[i] = arena.slot(taken[i]).bytes;
    const segs = tsoSplit(stage, VNET_HDR_LEN, len, hdr, outs, DATA_HEADER_SIZE, outLens);
    if (segs <= 0) continue; // malformed: the slots stay taken for the next read
    for (let i = 0; i < segs; i++) {
      arena.set(taken[i], META_LEN, outLens[i]);
      ready.push(taken[i]); // never full: it holds every slot there is
    }
    taken.splice(0, segs);
    ready.wake();
  }
}

function run(data: TunReaderData): void {
  if (data.vnetHdr) return runOffload(data);
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
      if (n === -E.EAGAIN) continue; // keeps the slot; cannot happen on a blocking fd
      return fail(n);
    }
    arena.set(s, META_LEN, n);
    ready.push(s); // never full: it holds every slot there is
    ready.wake();
    s = -1;
  }
}

run(workerData as TunReaderData);
