// The injectable clock and random source. The protocol core never reads time or entropy directly, so tests
// drive rekeys, reject-after limits, cookie rotation and timers with a fake clock and seeded randomness.

import { randomFillSync } from 'node:crypto';

export interface Clock {
  /** Monotonic milliseconds (fractional allowed); only differences matter. */
  now(): number;
  /** Wall-clock time for TAI64N timestamps: whole seconds since the Unix epoch and nanoseconds. */
  wall(): { sec: bigint; nsec: number };
}

export type RandomSource = (out: Uint8Array) => void;

export const systemClock: Clock = {
  now: () => performance.now(),
  wall: () => {
    const ns = process.hrtime.bigint() - hrtimeAtEpoch;
    return { sec: ns / 1_000_000_000n, nsec: Number(ns % 1_000_000_000n) };
  },
};

// hrtime is monotonic with an arbitrary origin; anchor it once to the epoch so wall() has ns resolution.
const hrtimeAtEpoch = process.hrtime.bigint() - BigInt(Date.now()) * 1_000_000n;

export const systemRandom: RandomSource = (out) => {
  randomFillSync(out);
};

/** A clock tests move by hand. */
export class FakeClock implements Clock {
  constructor(public ms = 1_000_000, public epochSec = 1_700_000_000n) {}
  now(): number {
    return this.ms;
  }
  wall(): { sec: bigint; nsec: number } {
    const total = BigInt(Math.floor(this.ms * 1_000_000));
    return { sec: this.epochSec + total / 1_000_000_000n, nsec: Number(total % 1_000_000_000n) };
  }
  advance(ms: number): void {
    this.ms += ms;
  }
}

/** Deterministic random bytes (xorshift32); for tests and fixtures only, never for keys in production. */
export function seededRandom(seed: number): RandomSource {
  let s = seed >>> 0 || 0x9e3779b9;
  return (out) => {
    for (let i = 0; i < out.length; i++) {
      s ^= s << 13;
      s >>>= 0;
      s ^= s >>> 17;
      s ^= s << 5;
      s >>>= 0;
      out[i] = s & 0xff;
    }
  };
}
