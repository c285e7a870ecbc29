// Key encodings (base64 as `wg` shows them, hex as the UAPI carries them) and the only way a peer is ever
// named in logs: peer(AbCd…WxYz), the first and last four base64 characters, never the key itself.

import { KEY_SIZE } from './constants.js';
import { WgError, Errno } from './errors.js';

export const keyToBase64 = (k: Uint8Array): string => Buffer.from(k.buffer, k.byteOffset, k.length).toString('base64');
export const keyToHex = (k: Uint8Array): string => Buffer.from(k.buffer, k.byteOffset, k.length).toString('hex');

export function keyFromBase64(s: string): Uint8Array {
  const t = s.trim();
  if (!/^[A-Za-z0-9+/]{43}=$/.test(t)) throw new WgError('bad-key', 'key is not 32 bytes of base64', Errno.EINVAL);
  return new Uint8Array(Buffer.from(t, 'base64'));
}

export function keyFromHex(s: string): Uint8Array {
  if (s.length !== KEY_SIZE * 2 || !/^[0-9a-fA-F]+$/.test(s)) {
    throw new WgError('bad-key', 'key is not 64 hex characters', Errno.EINVAL);
  }
  return new Uint8Array(Buffer.from(s, 'hex'));
}

/** Log-safe short name of a peer's public key. */
export function peerName(publicKey: Uint8Array): string {
  const b = keyToBase64(publicKey);
  return `peer(${b.slice(0, 4)}…${b.slice(-5, -1)})`;
}
