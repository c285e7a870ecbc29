// Transport keys shared with the crypto workers: a SharedArrayBuffer of key slots (send key, receive key),
// filled by the control thread when a keypair comes into use and zeroed when it is let go. Workers read a
// key by slot number from the batch metadata; no key ever travels in a message.

const SLOT_BYTES = 64;
const COOL_MS = 1_000;

export class KeyTable {
  readonly bytes: Buffer;
  private readonly send: Buffer[] = [];
  private readonly receive: Buffer[] = [];
  private readonly free: number[] = [];
  /** Released slots and when: a batch already in a worker may still read one, so reuse waits a while. */
  private readonly cooling: { slot: number; at: number }[] = [];

  constructor(readonly sab: SharedArrayBuffer) {
    this.bytes = Buffer.from(sab);
  }

  static create(slots: number): KeyTable {
    const t = new KeyTable(new SharedArrayBuffer(slots * SLOT_BYTES));
    for (let i = slots - 1; i >= 0; i--) t.free.push(i);
    return t;
  }

  get slots(): number {
    return this.bytes.length / SLOT_BYTES;
  }

  /** Control thread: stores a keypair's keys; -1 when the table is full (the control thread seals itself). */
  put(sendKey: Uint8Array, receiveKey: Uint8Array, now = performance.now()): number {
    while (this.cooling.length && now - this.cooling[0].at >= COOL_MS) this.free.push(this.cooling.shift()!.slot);
    const i = this.free.pop();
    if (i === undefined) return -1;
    this.bytes.set(sendKey, i * SLOT_BYTES);
    this.bytes.set(receiveKey, i * SLOT_BYTES + 32);
    return i;
  }

  /** Control thread: zeroes a slot at once (keys must not outlive their keypair) and frees it later. */
  release(i: number, now = performance.now()): void {
    if (i < 0) return;
    this.bytes.fill(0, i * SLOT_BYTES, (i + 1) * SLOT_BYTES);
    this.cooling.push({ slot: i, at: now });
  }

  sendKey(i: number): Buffer {
    return (this.send[i] ??= this.bytes.subarray(i * SLOT_BYTES, i * SLOT_BYTES + 32));
  }

  receiveKey(i: number): Buffer {
    return (this.receive[i] ??= this.bytes.subarray(i * SLOT_BYTES + 32, (i + 1) * SLOT_BYTES));
  }
}
