// The sodium-native cipher suite: the data path's AEAD. The nonce buffer is reused and Buffers pass straight
// through, so a seal or open of views the caller keeps allocates nothing.

import type { CipherSuite } from './suite.js';
import { isZero } from './suite.js';

type Sodium = typeof import('sodium-native');

export function makeSodiumSuite(sodium: Sodium): CipherSuite {
  const nonce = Buffer.alloc(12);
  // The counter goes straight into the nonce's u32 words on little-endian hosts (all this project targets);
  // DataView keeps big-endian hosts correct at a small cost.
  const words = new Uint32Array(nonce.buffer, nonce.byteOffset, 3);
  const view = new DataView(nonce.buffer, nonce.byteOffset, 12);
  const littleEndian = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1;
  const asBuf = (u: Uint8Array): Buffer => (Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.length));
  const setNonce = littleEndian
    ? (lo: number, hi: number): void => {
        words[1] = lo;
        words[2] = hi;
      }
    : (lo: number, hi: number): void => {
        view.setUint32(4, lo >>> 0, true);
        view.setUint32(8, hi >>> 0, true);
      };
  return {
    name: 'sodium-native',
    seal(out, key, lo, hi, plaintext, ad) {
      setNonce(lo, hi);
      return sodium.crypto_aead_chacha20poly1305_ietf_encrypt(
        asBuf(out), asBuf(plaintext), ad ? asBuf(ad) : null, null, nonce, asBuf(key));
    },
    open(out, key, lo, hi, ciphertext, ad) {
      if (ciphertext.length < 16 || out.length !== ciphertext.length - 16) return false;
      setNonce(lo, hi);
      try {
        sodium.crypto_aead_chacha20poly1305_ietf_decrypt(
          asBuf(out), null, asBuf(ciphertext), ad ? asBuf(ad) : null, nonce, asBuf(key));
        return true;
      } catch {
        return false;
      }
    },
    xseal(out, key, n, plaintext, ad) {
      return sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(
        asBuf(out), asBuf(plaintext), asBuf(ad), null, asBuf(n), asBuf(key));
    },
    xopen(out, key, n, ciphertext, ad) {
      if (ciphertext.length < 16 || out.length !== ciphertext.length - 16) return false;
      try {
        sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(
          asBuf(out), null, asBuf(ciphertext), asBuf(ad), asBuf(n), asBuf(key));
        return true;
      } catch {
        return false;
      }
    },
    x25519(out, priv, pub) {
      try {
        sodium.crypto_scalarmult(asBuf(out), asBuf(priv), asBuf(pub));
      } catch {
        out.fill(0); // libsodium refuses an all-zero result
        return false;
      }
      return !isZero(out);
    },
    x25519Base(out, priv) {
      sodium.crypto_scalarmult_base(asBuf(out), asBuf(priv));
    },
    // libsodium's getrandom(2) straight into the buffer: a handshake draws four times, and node's
    // randomFillSync took 60-80 us a call after 20 ms idle against ~30 here (with the daemon's node flags).
    random(out) {
      sodium.randombytes_buf(asBuf(out));
    },
  };
}
