// TAI64N timestamps (protocol.md "Cryptographic construction"): 12 bytes, big-endian u64 seconds + 2^62
// then big-endian u32 nanoseconds. Responders accept an initiation only if its timestamp is newer.

import type { Clock } from '../clock.js';
import { TAI64N_SIZE } from '../constants.js';

const TAI64_BASE = 1n << 62n;

export function tai64n(clock: Clock, out: Uint8Array = new Uint8Array(TAI64N_SIZE)): Uint8Array {
  const { sec, nsec } = clock.wall();
  const v = new DataView(out.buffer, out.byteOffset, TAI64N_SIZE);
  v.setBigUint64(0, TAI64_BASE + sec, false);
  // Nanoseconds rounded down to 2^24 ns (~16.8 ms, the largest power of two under the 20 ms between
  // permitted initiations), as the kernel and wireguard-go do: finer precision would only leak the
  // sender's clock to an observer.
  v.setUint32(8, (nsec & ~0xffffff) >>> 0, false);
  return out;
}

/** True when a is strictly after b (both 12-byte TAI64N, compared as big-endian numbers). */
export function tai64nAfter(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = 0; i < TAI64N_SIZE; i++) {
    if (a[i] !== b[i]) return a[i] > b[i];
  }
  return false;
}
