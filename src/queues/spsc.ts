// A single-producer single-consumer queue of slot numbers in a SharedArrayBuffer: the hand-off between the
// TUN reader thread and the control thread (and back, for free slots). Lock-free: the producer only writes
// the tail, the consumer only the head. A consumer that is about to sleep says so in `parked`, so producers
// notify only then: a wake-up costs ~13 us here, far too much to pay per packet (performance.md).
// Head and tail are int32 counters that never reset, so they wrap past 2^31 (a queue that takes every packet
// gets there after ~4.5 hours at 1.5 Gbit/s): the capacity is a power of two, positions are the counters
// masked, and sizes are int32 differences, all of which stay right across the wrap.

const HEAD = 0;
const TAIL = 1;
const PARKED = 2;
const HEADER = 4;

export class SpscQueue {
  readonly words: Int32Array;
  /** At least what was asked for: the next power of two. */
  readonly capacity: number;
  private readonly mask: number;

  constructor(sabOrCapacity: SharedArrayBuffer | number) {
    const sab =
      typeof sabOrCapacity === 'number' ? new SharedArrayBuffer((HEADER + powerOfTwo(sabOrCapacity)) * 4) : sabOrCapacity;
    this.words = new Int32Array(sab);
    this.capacity = this.words.length - HEADER;
    if (this.capacity !== powerOfTwo(this.capacity)) throw new RangeError(`SPSC queue capacity ${this.capacity} is not a power of two`);
    this.mask = this.capacity - 1;
  }

  get sab(): SharedArrayBuffer {
    return this.words.buffer as SharedArrayBuffer;
  }

  get size(): number {
    return (Atomics.load(this.words, TAIL) - Atomics.load(this.words, HEAD)) | 0;
  }

  /** Producer side. False when full. */
  push(v: number): boolean {
    const w = this.words;
    const tail = w[TAIL];
    if (((tail - Atomics.load(w, HEAD)) | 0) >= this.capacity) return false;
    w[HEADER + (tail & this.mask)] = v;
    Atomics.store(w, TAIL, tail + 1); // an Int32Array store wraps 2^31 to -2^31
    return true;
  }

  /**
   * Producer side: takes back the newest entry (-1 when empty). For a thread that is, for the moment, also
   * the queue's only consumer (the control thread while it reads the TUN or the sockets itself): the slot it
   * freed last, still mapped and in cache, is used next. pop()'s FIFO order cycles through every slot, so on
   * an idle tunnel each packet landed on memory untouched since the slot's last use, and on a fresh daemon
   * on a page never touched at all (~2 page faults per ping, measured). Never while another thread may pop:
   * both could take the same entry.
   */
  takeNewest(): number {
    const w = this.words;
    const tail = w[TAIL];
    if (tail === Atomics.load(w, HEAD)) return -1;
    const v = w[HEADER + ((tail - 1) & this.mask)];
    Atomics.store(w, TAIL, tail - 1);
    return v;
  }

  /** Producer side, after a burst of pushes: wakes the consumer if it sleeps. */
  wake(): void {
    if (Atomics.load(this.words, PARKED) !== 0) Atomics.notify(this.words, TAIL);
  }

  /** Consumer side. -1 when empty. */
  pop(): number {
    const w = this.words;
    const head = w[HEAD];
    if (head === Atomics.load(w, TAIL)) return -1;
    const v = w[HEADER + (head & this.mask)];
    Atomics.store(w, HEAD, head + 1);
    return v;
  }

  /** Consumer side, in a worker: sleeps until something is pushed (or timeoutMs passes). */
  waitSync(timeoutMs: number): void {
    const w = this.words;
    const tail = Atomics.load(w, TAIL);
    if (tail !== Atomics.load(w, HEAD)) return;
    Atomics.store(w, PARKED, 1);
    if (Atomics.load(w, TAIL) === tail) Atomics.wait(w, TAIL, tail, timeoutMs);
    Atomics.store(w, PARKED, 0);
  }

  /** Consumer side, on an event loop: resolves once something is pushed. */
  async waitAsync(): Promise<void> {
    const w = this.words;
    const tail = Atomics.load(w, TAIL);
    if (tail !== Atomics.load(w, HEAD)) return;
    Atomics.store(w, PARKED, 1);
    try {
      if (Atomics.load(w, TAIL) !== tail) return;
      const r = Atomics.waitAsync(w, TAIL, tail);
      if (r.async) await r.value;
    } finally {
      Atomics.store(w, PARKED, 0);
    }
  }
}

function powerOfTwo(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}
