// The receive-side replay (nonce) window for transport data: the kernel's counter algorithm (selftests.md
// "Counter"; protocol.md COUNTER_WINDOW_SIZE and REJECT_AFTER_MESSAGES), exact over the full u64 range.
// A nonce is carried as two u32 halves in plain numbers so the hot path never allocates a BigInt.

import { COUNTER_BITS_TOTAL, COUNTER_WINDOW_SIZE, REJECT_AFTER_MESSAGES } from '../constants.js';

const TWO_32 = 0x1_0000_0000;
const WORDS = COUNTER_BITS_TOTAL / 64; // 128 ring words of 64 bits
const WORD_MASK = WORDS - 1;
const W = COUNTER_WINDOW_SIZE;

// REJECT_AFTER_MESSAGES = 2^64 - 8130: its high half is all ones, so "n >= RAM" reduces to a low-half compare
// once the high half is 0xffffffff. Derived from the constant so the two can never drift apart.
const RAM_HI = Number(REJECT_AFTER_MESSAGES >> 32n);
const RAM_LO = Number(REJECT_AFTER_MESSAGES & 0xffff_ffffn);
if (RAM_HI !== 0xffff_ffff || RAM_LO === 0xffff_ffff) {
  // The fast compares below rely on this shape; fail loudly at load time rather than misjudge nonces.
  throw new Error('replay: REJECT_AFTER_MESSAGES must be in (2^64 - 2^32, 2^64 - 1)');
}

/**
 * The window state is `counter` = highest accepted nonce + 1 (0 when fresh) and an 8192-bit ring. Bit
 * (m & 63) of 64-bit word ((m >> 6) & 127) records nonce m - 1. Each 64-bit word is two u32 entries of
 * `bits`: [2w] holds bits 0..31 and [2w + 1] bits 32..63. One word is always partly ahead of the counter,
 * which is why the usable window (8128) is 64 less than the ring (8192).
 */
export class ReplayWindow {
  private cLo = 0;
  private cHi = 0;
  private readonly bits = new Uint32Array(WORDS * 2);

  /** Hot path: nonce given as u32 halves (as read from the packet with readUInt32LE at offsets 8 and 12). Returns true = accept (and marks it seen). */
  check(lo: number, hi: number): boolean {
    lo >>>= 0;
    hi >>>= 0;
    const cLo = this.cLo;
    const cHi = this.cHi;
    // Past the message limit nothing is accepted, and a nonce at or beyond it is never valid.
    if (cHi === RAM_HI && cLo > RAM_LO) return false;
    if (hi === RAM_HI && lo >= RAM_LO) return false;

    // m = n + 1 cannot overflow: n < RAM < 2^64 - 1.
    const mLo = (lo + 1) >>> 0;
    const mHi = mLo === 0 ? hi + 1 : hi;

    // Too old: m + W < counter. m + W <= RAM + W < 2^64, so the sum is exact in (hi, lo) form.
    const sLo = mLo + W;
    const pLo = sLo >= TWO_32 ? sLo - TWO_32 : sLo;
    const pHi = sLo >= TWO_32 ? mHi + 1 : mHi;
    if (pHi < cHi || (pHi === cHi && pLo < cLo)) return false;

    const bits = this.bits;
    if (mHi > cHi || (mHi === cHi && mLo > cLo)) {
      // Advancing: clear the ring words that now cover fresh nonces. Word indexes are 58-bit, so only the
      // distance (capped at the ring size) and the low 7 bits of the current index are ever computed.
      const dHi = mHi - cHi;
      let top = WORDS;
      if (dHi <= 1) {
        const d = dHi * 0x400_0000 + (mLo >>> 6) - (cLo >>> 6);
        if (d < WORDS) top = d;
      }
      const cur = cLo >>> 6;
      for (let i = 1; i <= top; i++) {
        const w = ((cur + i) & WORD_MASK) << 1;
        bits[w] = 0;
        bits[w + 1] = 0;
      }
      this.cLo = mLo;
      this.cHi = mHi;
    }

    const bit = mLo & 63;
    const idx = (((mLo >>> 6) & WORD_MASK) << 1) | (bit >>> 5);
    const mask = 1 << (bit & 31);
    const old = bits[idx];
    if ((old & mask) !== 0) return false;
    bits[idx] = old | mask;
    return true;
  }

  /** Convenience for tests / selftest. A value outside the u64 range is never a valid nonce. */
  checkBig(n: bigint): boolean {
    if (n < 0n || n > 0xffff_ffff_ffff_ffffn) return false;
    return this.check(Number(n & 0xffff_ffffn), Number(n >> 32n));
  }

  reset(): void {
    this.cLo = 0;
    this.cHi = 0;
    this.bits.fill(0);
  }
}
