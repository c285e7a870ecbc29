// The part of sodium-native's API this project uses (the package ships no types).
declare module 'sodium-native' {
  type B = Buffer | Uint8Array;
  export function crypto_aead_chacha20poly1305_ietf_encrypt(c: B, m: B, ad: B | null, nsec: null, npub: B, k: B): number;
  export function crypto_aead_chacha20poly1305_ietf_decrypt(m: B, nsec: null, c: B, ad: B | null, npub: B, k: B): number;
  export function crypto_aead_xchacha20poly1305_ietf_encrypt(c: B, m: B, ad: B | null, nsec: null, npub: B, k: B): number;
  export function crypto_aead_xchacha20poly1305_ietf_decrypt(m: B, nsec: null, c: B, ad: B | null, npub: B, k: B): number;
  export function crypto_scalarmult(q: B, n: B, p: B): void;
  export function crypto_scalarmult_base(q: B, n: B): void;
  export function randombytes_buf(b: B): void;
  export function sodium_memzero(b: B): void;
}
