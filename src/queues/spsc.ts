// A single-producer single-consumer queue of slot numbers in a SharedArrayBuffer: the hand-off between the
// TUN reader thread and the control thread (and back, for free slots). Lock-free: the producer only writes
// the tail, the consumer only the head. A consumer that is about to sleep says so in `parked`, so producers
// notify only then: a wake-up costs ~13 us here, far too much to pay per packet (performance.md).

const HEAD = 0;
const TAIL = 1;
const PARKED = 2;
const HEADER = 4;

export class SpscQueue {
  readonly words: Int32Array;
  readonly capacity: number;

  constructor(sabOrCapacity: SharedArrayBuffer | number) {
    const sab =
      typeof sabOrCapacity === 'number' ? new SharedArrayBuffer((HEADER + sabOrCapacity) * 4) : sabOrCapacity;
    this.words = new Int32Array(sab);
    this.capacity = this.words.length - HEADER;
  }

  get sab(): SharedArrayBuffer {
    return this.words.buffer as SharedArrayBuffer;
  }

  get size(): number {
    return Atomics.load(this.words, TAIL) - Atomics.load(this.words, HEAD);
  }

  /** Producer side. False when full. */
  push(v: number): boolean {
    const w = this.words;
    const tail = w[TAIL];
    if (tail - Atomics.load(w, HEAD) >= this.capacity) return false;
    w[HEADER + (tail % this.capacity)] = v;
    Atomics.store(w, TAIL, tail + 1);
    return true;
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
    const v = w[HEADER + (head % this.capacity)];
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
