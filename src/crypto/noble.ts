// The pure-JS cipher suite: @noble/ciphers for the AEADs and node:crypto for X25519 (raw keys wrapped in
// their fixed DER prefixes). Used only when sodium-native cannot load; ~10x slower, same bytes.

import { chacha20poly1305, xchacha20poly1305 } from '@noble/ciphers/chacha.js';
import { createPrivateKey, createPublicKey, diffieHellman, randomFillSync } from 'node:crypto';
import type { CipherSuite } from './suite.js';
import { isZero } from './suite.js';

const PKCS8_X25519 = Buffer.from('302e020100300506032b656e04220420', 'hex');
const SPKI_X25519 = Buffer.from('302a300506032b656e032100', 'hex');

const privKey = (priv: Uint8Array) =>
  createPrivateKey({ key: Buffer.concat([PKCS8_X25519, priv]), format: 'der', type: 'pkcs8' });
const pubKey = (pub: Uint8Array) =>
  createPublicKey({ key: Buffer.concat([SPKI_X25519, pub]), format: 'der', type: 'spki' });

function nonce12(lo: number, hi: number): Uint8Array {
  const n = new Uint8Array(12);
  const v = new DataView(n.buffer);
  v.setUint32(4, lo >>> 0, true);
  v.setUint32(8, hi >>> 0, true);
  return n;
}

// The same contract sodium-native enforces, so a caller bug shows up on both paths alike.
function sized(out: Uint8Array, n: number): void {
  if (out.length !== n) throw new RangeError(`output must be ${n} bytes, got ${out.length}`);
}

export function makeNobleSuite(): CipherSuite {
  return {
    name: 'noble',
    seal(out, key, lo, hi, plaintext, ad) {
      sized(out, plaintext.length + 16);
      const c = chacha20poly1305(key, nonce12(lo, hi), ad ?? undefined).encrypt(plaintext);
      out.set(c);
      return c.length;
    },
    open(out, key, lo, hi, ciphertext, ad) {
      if (ciphertext.length < 16 || out.length !== ciphertext.length - 16) return false;
      try {
        out.set(chacha20poly1305(key, nonce12(lo, hi), ad ?? undefined).decrypt(ciphertext));
        return true;
      } catch {
        return false;
      }
    },
    xseal(out, key, n, plaintext, ad) {
      sized(out, plaintext.length + 16);
      const c = xchacha20poly1305(key, n, ad).encrypt(plaintext);
      out.set(c);
      return c.length;
    },
    xopen(out, key, n, ciphertext, ad) {
      if (ciphertext.length < 16 || out.length !== ciphertext.length - 16) return false;
      try {
        out.set(xchacha20poly1305(key, n, ad).decrypt(ciphertext));
        return true;
      } catch {
        return false;
      }
    },
    x25519(out, priv, pub) {
      try {
        out.set(diffieHellman({ privateKey: privKey(priv), publicKey: pubKey(pub) }));
      } catch {
        out.fill(0); // OpenSSL refuses an all-zero shared secret
        return false;
      }
      return !isZero(out);
    },
    x25519Base(out, priv) {
      const der = createPublicKey(privKey(priv)).export({ format: 'der', type: 'spki' });
      out.set(der.subarray(der.length - 32));
    },
    random(out) {
      randomFillSync(out);
    },
  };
}
