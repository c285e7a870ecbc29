// Fuzz inputs for the WireGuard receive paths (issue 5 item 1): a seeded PRNG, so any failure replays from
// the printed seed, and generators of random, truncated and mutated datagrams (protocol.md "Messages").
// Mutations start from valid messages (bit flips, truncation, extension, type swaps, index and counter
// changes, other types' lengths); handshake mutations may get their macs recomputed by the caller so they
// reach the Noise code instead of stopping at mac1.

import {
  COOKIE_REPLY_SIZE, DATA_MIN_SIZE, INITIATION_SIZE, MESSAGE_COOKIE_REPLY, MESSAGE_DATA, MESSAGE_INITIATION,
  MESSAGE_RESPONSE, RESPONSE_SIZE,
} from '../../src/constants.js';

/** mulberry32: tiny, fast, and good enough to spread inputs; the same seed gives the same inputs. */
export class Rng {
  private s: number;

  constructor(readonly seed: number) {
    this.s = seed >>> 0;
  }

  u32(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** Uniform in [0, n). */
  int(n: number): number {
    return n <= 1 ? 0 : Math.floor((this.u32() / 0x1_0000_0000) * n);
  }

  /** Uniform in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  chance(p: number): boolean {
    return this.u32() / 0x1_0000_0000 < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }

  fill(b: Uint8Array): Uint8Array {
    for (let i = 0; i < b.length; i++) b[i] = this.u32() & 0xff;
    return b;
  }

  bytes(n: number): Uint8Array {
    return this.fill(new Uint8Array(n));
  }
}

/** A fresh seed: from WGTS_FUZZ_SEED when set (to replay a failure), else random. */
export function fuzzSeed(): number {
  const env = process.env.WGTS_FUZZ_SEED;
  if (env !== undefined && /^\d+$/.test(env)) return Number(env) >>> 0;
  return (Math.random() * 0x1_0000_0000) >>> 0;
}

export const TYPE_SIZES: Record<number, number> = {
  [MESSAGE_INITIATION]: INITIATION_SIZE,
  [MESSAGE_RESPONSE]: RESPONSE_SIZE,
  [MESSAGE_COOKIE_REPLY]: COOKIE_REPLY_SIZE,
  [MESSAGE_DATA]: DATA_MIN_SIZE,
};

const putU32 = (b: Uint8Array, off: number, v: number): void => {
  if (off + 4 > b.length) return;
  b[off] = v & 0xff;
  b[off + 1] = (v >>> 8) & 0xff;
  b[off + 2] = (v >>> 16) & 0xff;
  b[off + 3] = (v >>> 24) & 0xff;
};

/** Interesting 32-bit values for index fields. */
const edgeU32 = (rng: Rng): number => rng.pick([0, 1, 0xffffffff, 0x80000000, 0x7fffffff, rng.u32()]);

/** Random bytes of a random length in 0..1500, the common MTU-sized range. */
export function randomDatagram(rng: Rng): Uint8Array {
  return rng.bytes(rng.pick([0, 1, 3, 4, 5, 31, 32, 33, rng.int(64), rng.int(1501)]));
}

/** A datagram that claims a message type (right header) with a random body of the right or a wrong size. */
export function typedRandom(rng: Rng): Uint8Array {
  const type = rng.pick([MESSAGE_INITIATION, MESSAGE_RESPONSE, MESSAGE_COOKIE_REPLY, MESSAGE_DATA]);
  const exact = TYPE_SIZES[type];
  const len = type === MESSAGE_DATA
    ? rng.pick([exact - 1, exact, exact + 16 * rng.int(90), rng.range(4, 1500)])
    : rng.pick([exact, exact, exact - 1, exact + 1, exact - 16, exact + 16, rng.range(4, 200)]);
  const b = rng.bytes(Math.max(4, len));
  putU32(b, 0, type);
  return b;
}

/** The mutation operators, by name (the counts per operator are reported). */
export const MUTATIONS = [
  'bitflip', 'bitflips', 'byteset', 'truncate', 'extend', 'splice', 'type-swap', 'reserved', 'resize-other-type',
  'index', 'counter', 'tail', 'duplicate', 'zero-run',
] as const;
export type Mutation = (typeof MUTATIONS)[number];

/** A mutated copy of a (valid) message; op names the operator used. */
export function mutate(rng: Rng, base: Uint8Array, op: Mutation = rng.pick(MUTATIONS)): { data: Uint8Array; op: Mutation } {
  let m = Uint8Array.from(base);
  const bit = (): void => {
    if (m.length) m[rng.int(m.length)] ^= 1 << rng.int(8);
  };
  switch (op) {
    case 'bitflip':
      bit();
      break;
    case 'bitflips':
      for (let i = rng.range(2, 16); i > 0; i--) bit();
      break;
    case 'byteset':
      for (let i = rng.range(1, 8); i > 0 && m.length; i--) m[rng.int(m.length)] = rng.pick([0, 0xff, 0x7f, 0x80, rng.u32() & 0xff]);
      break;
    case 'truncate':
      m = m.slice(0, rng.pick([0, 1, 3, 4, 15, 16, 31, rng.int(m.length)]));
      break;
    case 'extend': {
      const out = new Uint8Array(m.length + rng.pick([1, 15, 16, 17, rng.range(1, 256)]));
      out.set(m);
      rng.fill(out.subarray(m.length));
      m = out;
      break;
    }
    case 'splice': {
      if (m.length === 0) break;
      const at = rng.int(m.length);
      rng.fill(m.subarray(at, Math.min(m.length, at + rng.range(1, 64))));
      break;
    }
    case 'type-swap':
      if (m.length) m[0] = rng.pick([0, 1, 2, 3, 4, 5, 0xff]);
      break;
    case 'reserved':
      if (m.length >= 4) m[rng.range(1, 3)] = rng.range(1, 255);
      break;
    case 'resize-other-type': {
      // The body of one message type at the exact length of another: passes the length check, fails later.
      const len = rng.pick([INITIATION_SIZE, RESPONSE_SIZE, COOKIE_REPLY_SIZE, DATA_MIN_SIZE]);
      const out = new Uint8Array(len);
      out.set(m.subarray(0, len));
      if (len > m.length) rng.fill(out.subarray(m.length));
      if (rng.chance(0.5) && out.length >= 4) putU32(out, 0, rng.pick([1, 2, 3, 4]));
      m = out;
      break;
    }
    case 'index':
      // Sender/receiver fields at 4 (all types) and 8 (the response's receiver, the data counter's low half).
      putU32(m, rng.pick([4, 8]), edgeU32(rng));
      break;
    case 'counter':
      if (m.length >= 16) {
        putU32(m, 8, rng.pick([0, 1, 0xffffffff, rng.u32()]));
        putU32(m, 12, rng.pick([0, 0, 1, 0x7fffffff, 0xffffffff, rng.u32()]));
      }
      break;
    case 'tail':
      // The last 32 bytes are the macs of a handshake message and hold the AEAD tag of a data message.
      if (m.length) m[Math.max(0, m.length - 1 - rng.int(32))] ^= 1 << rng.int(8);
      break;
    case 'duplicate':
      break; // the valid message itself, sent again
    case 'zero-run': {
      if (m.length === 0) break;
      const at = rng.int(m.length);
      m.fill(0, at, Math.min(m.length, at + rng.range(1, 48)));
      break;
    }
  }
  return { data: m, op };
}

/** A handshake message type whose length matches, i.e. one whose macs a caller can recompute. */
export function handshakeShaped(m: Uint8Array): boolean {
  if (m.length < 4 || m[1] !== 0 || m[2] !== 0 || m[3] !== 0) return false;
  return (m[0] === MESSAGE_INITIATION && m.length === INITIATION_SIZE) || (m[0] === MESSAGE_RESPONSE && m.length === RESPONSE_SIZE);
}
