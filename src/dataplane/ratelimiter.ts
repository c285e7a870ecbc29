// Per-source token-bucket ratelimiter for handshake messages (protocol.md "ratelimiter": 20/s, burst 5, IPv4
// per address, IPv6 per /64, idle entries freed after 1 s; selftests.md "Ratelimiter"). Token arithmetic
// follows the kernel: tokens are elapsed time in ms, a packet costs 1/20 s, the bucket holds 5 packets.

import type { Clock } from '../clock.js';
import { RATELIMIT_BURST, RATELIMIT_GC_INTERVAL, RATELIMIT_PACKETS_PER_SECOND } from '../constants.js';

export const PACKET_COST_MS = 1000 / RATELIMIT_PACKETS_PER_SECOND; // 50 ms
export const TOKEN_MAX_MS = PACKET_COST_MS * RATELIMIT_BURST; // 250 ms
/** An entry idle for longer than this is dropped by gc(). */
export const RATELIMIT_IDLE_MS = RATELIMIT_GC_INTERVAL;
/**
 * Default table bound. The kernel sizes its table from RAM; a fixed bound keeps memory predictable. A
 * flood of spoofed sources can fill it, after which new sources are denied until gc() frees idle entries:
 * handshakes are then slowed, never the memory of the process blown up.
 */
export const RATELIMIT_DEFAULT_MAX_ENTRIES = 8192;

interface Entry {
  tokens: number;
  last: number;
}

/**
 * Keys, chosen so a lookup for a known source never allocates:
 * - IPv4: the address as an unsigned 32-bit number in `v4`.
 * - IPv6: the upper 64 bits split into two u32s, `v6.get(hi32).get(lo32)`. A string or BigInt key would
 *   allocate on every packet, and folding 64 bits into one double would lose bits and merge unrelated /64s
 *   into one bucket. Only a new source allocates (its entry, and an inner map for a new upper /32).
 * - IPv4-mapped IPv6 (::ffff:a.b.c.d, as a dual-stack socket reports IPv4 peers) is bucketed as the IPv4
 *   address: by the /64 rule every IPv4 client would otherwise share one bucket, ::/64.
 */
export class Ratelimiter {
  private readonly v4 = new Map<number, Entry>();
  private readonly v6 = new Map<number, Map<number, Entry>>();
  private count = 0;
  private readonly maxEntries: number;

  constructor(
    private readonly clock: Clock,
    opts?: { maxEntries?: number },
  ) {
    const max = opts?.maxEntries ?? RATELIMIT_DEFAULT_MAX_ENTRIES;
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`ratelimiter: bad maxEntries ${max}`);
    this.maxEntries = max;
  }

  /** addr: 4-byte IPv4 or 16-byte IPv6 address bytes (a view is fine). Any other length is denied. */
  allow(addr: Uint8Array): boolean {
    if (addr.length === 4) return this.allowV4(u32be(addr, 0));
    if (addr.length !== 16) return false;
    const hi = u32be(addr, 0);
    const lo = u32be(addr, 4);
    if (hi === 0 && lo === 0 && addr[8] === 0 && addr[9] === 0 && addr[10] === 0xff && addr[11] === 0xff) {
      return this.allowV4(u32be(addr, 12));
    }
    const now = this.clock.now();
    const inner = this.v6.get(hi);
    const e = inner?.get(lo);
    if (e !== undefined) return take(e, now);
    if (this.count >= this.maxEntries) return false;
    if (inner === undefined) this.v6.set(hi, new Map([[lo, fresh(now)]]));
    else inner.set(lo, fresh(now));
    this.count++;
    return true;
  }

  /** Frees entries that saw no packet for more than a second; the endpoint calls this every second. */
  gc(): void {
    const now = this.clock.now();
    for (const [k, e] of this.v4) {
      if (now - e.last > RATELIMIT_IDLE_MS) {
        this.v4.delete(k);
        this.count--;
      }
    }
    for (const [hi, inner] of this.v6) {
      for (const [lo, e] of inner) {
        if (now - e.last > RATELIMIT_IDLE_MS) {
          inner.delete(lo);
          this.count--;
        }
      }
      if (inner.size === 0) this.v6.delete(hi);
    }
  }

  /** Number of tracked sources (IPv4 addresses plus IPv6 /64s). */
  get size(): number {
    return this.count;
  }

  clear(): void {
    this.v4.clear();
    this.v6.clear();
    this.count = 0;
  }

  private allowV4(key: number): boolean {
    const now = this.clock.now();
    const e = this.v4.get(key);
    if (e !== undefined) return take(e, now);
    if (this.count >= this.maxEntries) return false;
    this.v4.set(key, fresh(now));
    this.count++;
    return true;
  }
}

// A new source is allowed at once and its first packet is paid from a full bucket.
function fresh(now: number): Entry {
  return { tokens: TOKEN_MAX_MS - PACKET_COST_MS, last: now };
}

// Refill by the elapsed time (capped at the burst), then pay one packet if the bucket holds one. The last
// time moves even on a denial, so a source that keeps sending stays tracked and is not reset by gc().
function take(e: Entry, now: number): boolean {
  const tokens = Math.min(TOKEN_MAX_MS, e.tokens + (now - e.last));
  e.last = now;
  if (tokens >= PACKET_COST_MS) {
    e.tokens = tokens - PACKET_COST_MS;
    return true;
  }
  e.tokens = tokens;
  return false;
}

function u32be(b: Uint8Array, off: number): number {
  return ((b[off] << 24) | (b[off + 1] << 16) | (b[off + 2] << 8) | b[off + 3]) >>> 0;
}
