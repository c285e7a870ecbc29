// The cipher suite seam: X25519, ChaCha20-Poly1305 (IETF, WireGuard nonce layout) and XChaCha20-Poly1305.
// sodium-native is the real path; @noble/ciphers plus node:crypto's X25519 is the fallback used when the
// native addon cannot load (or WGTS_CRYPTO=noble), and both must produce byte-identical output.

export interface CipherSuite {
  readonly name: 'sodium-native' | 'noble';
  /**
   * ChaCha20-Poly1305 IETF seal with nonce = 4 zero bytes || u64 LE counter (given as lo/hi u32 halves).
   * out must be exactly plaintext.length + 16 bytes (it may start where plaintext starts); returns that count.
   * Exact sizes let callers pass cached views: sodium-native takes every length from the views it is given.
   */
  seal(out: Uint8Array, key: Uint8Array, lo: number, hi: number, plaintext: Uint8Array, ad: Uint8Array | null): number;
  /** Opens ciphertext (with its tag) into out of exactly ciphertext.length - 16 bytes; false when the tag fails. */
  open(out: Uint8Array, key: Uint8Array, lo: number, hi: number, ciphertext: Uint8Array, ad: Uint8Array | null): boolean;
  /** XChaCha20-Poly1305 with a 24-byte nonce (cookie replies); the same exact-size rules. */
  xseal(out: Uint8Array, key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, ad: Uint8Array): number;
  xopen(out: Uint8Array, key: Uint8Array, nonce: Uint8Array, ciphertext: Uint8Array, ad: Uint8Array): boolean;
  /** X25519(priv, pub) into out; false when the result is all zero (low-order public key). */
  x25519(out: Uint8Array, priv: Uint8Array, pub: Uint8Array): boolean;
  /** Public key of a (clamped) private key. */
  x25519Base(out: Uint8Array, priv: Uint8Array): void;
  /** Fills out with random bytes from the system's CSPRNG (ephemeral keys, indices, cookie secrets). */
  random(out: Uint8Array): void;
}

/** RFC 7748 clamping; WireGuard stores and reports private keys clamped. */
export function clamp(key: Uint8Array): Uint8Array {
  key[0] &= 248;
  key[31] = (key[31] & 127) | 64;
  return key;
}

export function isZero(b: Uint8Array): boolean {
  let acc = 0;
  for (let i = 0; i < b.length; i++) acc |= b[i];
  return acc === 0;
}

/**
 * Zeroes b[from, to). For the few bytes a packet needs zeroed (padding, a virtio header, a sockaddr), plain
 * stores: Buffer#fill is node's argument checks plus a C++ call, and a ranged TypedArray#fill a C++ builtin,
 * on every packet.
 */
export function zeroRange(b: Uint8Array, from: number, to: number): void {
  for (let i = from; i < to; i++) b[i] = 0;
}

/** Constant-time equality for MACs and keys. */
export function equal(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let acc = 0;
  for (let i = 0; i < a.length; i++) acc |= a[i] ^ b[i];
  return acc === 0;
}
