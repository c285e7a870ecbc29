// The Internet checksum (RFC 1071): 16-bit one's-complement sums, the TCP/UDP pseudo-header (RFC 9293 3.1,
// RFC 8200 8.1) and the IPv4 header checksum (RFC 791). Used by TUN offload (offload.ts) to finish the partial
// checksums of GSO super-packets and to prepare coalesced ones.

/**
 * Adds the big-endian 16-bit words of buf[off..off+len) to `initial` without folding; an odd trailing byte
 * is padded with a zero byte (RFC 1071 4.1). The result is a plain JS number: 64 KB of 0xffff words stays far
 * below 2^53, so the carries can be folded once at the end with `fold`.
 *
 * Long 4-byte-aligned runs (every TSO segment's TCP part in a slot) are summed as native little-endian 32-bit
 * words: one load per 4 bytes instead of four. The one's-complement sum does not depend on byte order (RFC
 * 1071 2(B)) and 2^16 = 1 modulo 0xffff, so folding the 32-bit sum gives the little-endian 16-bit sum, and a
 * byte swap makes it big-endian. This was ~2/3 of tsoSplit, itself ~18% of a TCP sender's control thread.
 */
export function sum16(buf: Uint8Array, off: number, len: number, initial = 0): number {
  let s = initial;
  let i = off;
  const abs = buf.byteOffset + off;
  if (len >= 64 && (abs & 3) === 0 && littleEndian) {
    const u32 = wordsOf(buf.buffer);
    const first = abs >>> 2;
    const words = len >>> 2;
    let w = 0;
    for (let k = first, end = first + words; k < end; k++) w += u32[k];
    w = fold(w);
    s += ((w & 0xff) << 8) | (w >>> 8);
    i += words * 4;
  }
  const end = off + (len & ~1);
  // Four bytes per iteration: fewer loop tests.
  for (; i + 3 < end; i += 4) s += ((buf[i] << 8) | buf[i + 1]) + ((buf[i + 2] << 8) | buf[i + 3]);
  for (; i < end; i += 2) s += (buf[i] << 8) | buf[i + 1];
  if (len & 1) s += buf[end] << 8;
  return s;
}

const littleEndian = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1;
// One 32-bit view per buffer, remembered for the last one: packet slots all live in one arena.
let wordsBuffer: ArrayBufferLike | null = null;
let wordsView: Uint32Array<ArrayBufferLike> = new Uint32Array(0);
function wordsOf(ab: ArrayBufferLike): Uint32Array {
  if (ab !== wordsBuffer) {
    wordsBuffer = ab;
    wordsView = new Uint32Array(ab, 0, ab.byteLength >>> 2);
  }
  return wordsView;
}

// Both paths run once at load, and fold() sees a sum beyond 2^31 (not a small integer): a daemon that receives a
// TCP stream sums only short headers until the stream ends, and V8's optimised code for its TUN reader, which had
// never seen the word path, was thrown away then, just before a ping's (traced; needs node's
// --no-lazy-feedback-allocation, which bin/wgts sets, or the calls record nothing).
sum16(new Uint8Array(64).fill(0xff), 0, 64);

/** Folds the carries of an unfolded sum into 16 bits (end-around carry); the result is NOT complemented. */
export function fold(sum: number): number {
  // Division rather than >>> so sums at or beyond 2^32 (possible when many sums are added) stay exact.
  while (sum > 0xffff) sum = (sum % 0x10000) + Math.floor(sum / 0x10000);
  return sum;
}

/** The checksum to store in a header: the complement of the folded sum. */
export function finish(sum: number): number {
  return ~fold(sum) & 0xffff;
}

/**
 * Unfolded sum of the TCP/UDP pseudo-header: source and destination addresses (4 bytes each for IPv4, 16 for
 * IPv6), the protocol number and the transport length (upper-layer packet length). For IPv6 the length is a
 * 32-bit field, which for lengths below 2^16 sums the same as IPv4's 16-bit one.
 */
export function pseudoHeaderSum(proto: number, src: Uint8Array, dst: Uint8Array, length: number): number {
  return sum16(src, 0, src.length) + sum16(dst, 0, dst.length) + proto + (length >>> 16) + (length & 0xffff);
}

/**
 * The IPv4 header checksum for the header at buf[off..] (length from IHL), computed as if the checksum field
 * (bytes 10-11) were zero. Returns the value to store; the buffer is not modified.
 */
export function ipv4HeaderChecksum(buf: Uint8Array, off: number): number {
  const hl = (buf[off] & 0x0f) * 4;
  return finish(sum16(buf, off, 10) + sum16(buf, off + 12, hl - 12));
}
