// The UDP receive ring: buffers in a SharedArrayBuffer that the UDP receive thread fills with recvmmsg(2) and
// the control thread drains, plus the SPSC queues that pass buffer numbers both ways (the stand-in for the
// kernel's socket receive queue feeding wg_packet_receive). With UDP_GRO one buffer holds up to 64 datagrams
// of one sender, back to back, each `SEG` bytes but the last; the sender's address travels in the metadata.

import { SpscQueue } from '../queues/spsc.js';

/** Per-buffer metadata words. */
export const RX_LEN = 0; // bytes received
export const RX_SEG = 1; // UDP_GRO segment size, 0 when the buffer holds one datagram
export const RX_FAMILY = 2; // 4 or 6
export const RX_PORT = 3;
export const RX_ADDR = 4; // 4 words: the source address bytes (first word only for IPv4)
export const RX_HAS_DST = 8; // 1 when RX_DST holds the local address the datagram was sent to (IP_PKTINFO)
export const RX_DST = 9; // 4 words, like RX_ADDR
export const RX_IFINDEX = 13; // the interface it came in on (IP_PKTINFO)
const RX_WORDS = 16;

/** Control words. */
export const CTL_STOP = 0;
export const CTL_ERRNO = 1;

export interface RxRingShape {
  data: SharedArrayBuffer;
  meta: SharedArrayBuffer;
  ctl: SharedArrayBuffer;
  ready: SharedArrayBuffer;
  free: SharedArrayBuffer;
  count: number;
  size: number;
}

export class RxRing {
  readonly data: Buffer;
  readonly meta: Int32Array;
  readonly ctl: Int32Array;
  readonly ready: SpscQueue;
  readonly free: SpscQueue;

  private constructor(readonly shape: RxRingShape) {
    this.data = Buffer.from(shape.data);
    this.meta = new Int32Array(shape.meta);
    this.ctl = new Int32Array(shape.ctl);
    this.ready = new SpscQueue(shape.ready);
    this.free = new SpscQueue(shape.free);
  }

  /** `count` buffers of `size` bytes, all free. */
  static create(count: number, size: number): RxRing {
    const ring = new RxRing({
      data: new SharedArrayBuffer(count * size),
      meta: new SharedArrayBuffer(count * RX_WORDS * 4),
      ctl: new SharedArrayBuffer(16),
      ready: new SpscQueue(count).sab,
      free: new SpscQueue(count).sab,
      count,
      size,
    });
    for (let i = 0; i < count; i++) ring.free.push(i);
    return ring;
  }

  static attach(shape: RxRingShape): RxRing {
    return new RxRing(shape);
  }

  get count(): number {
    return this.shape.count;
  }

  get size(): number {
    return this.shape.size;
  }

  get(b: number, word: number): number {
    return this.meta[b * RX_WORDS + word];
  }

  set(b: number, word: number, v: number): void {
    this.meta[b * RX_WORDS + word] = v;
  }
}
