// The receiver index table (whitepaper §5.4.2): random 32-bit indices naming our side of each handshake
// and keypair, so incoming responses and data find their state without revealing a peer's identity.

import type { RandomSource } from '../clock.js';

export class IndexTable<T> {
  private readonly map = new Map<number, T>();
  private readonly buf = new Uint8Array(4);

  constructor(private readonly random: RandomSource) {}

  /** A fresh index not in use, now naming value. */
  allocate(value: T): number {
    for (;;) {
      this.random(this.buf);
      const idx = (this.buf[0] | (this.buf[1] << 8) | (this.buf[2] << 16) | (this.buf[3] << 24)) >>> 0;
      if (!this.map.has(idx)) {
        this.map.set(idx, value);
        return idx;
      }
    }
  }

  /** Points an existing index at a new value (a handshake's index passes to the keypair it made). */
  replace(idx: number, value: T): void {
    if (this.map.has(idx)) this.map.set(idx, value);
  }

  get(idx: number): T | undefined {
    return this.map.get(idx);
  }

  delete(idx: number): void {
    this.map.delete(idx);
  }

  get size(): number {
    return this.map.size;
  }
}
