// Wire layouts of the four WireGuard messages (protocol.md "Messages"): offsets, sizes and the type check.
// The first four bytes are the type as a little-endian u32, so reserved bytes must be zero.

import {
  COOKIE_REPLY_SIZE, DATA_MIN_SIZE, INITIATION_SIZE, MESSAGE_COOKIE_REPLY, MESSAGE_DATA, MESSAGE_INITIATION,
  MESSAGE_RESPONSE, RESPONSE_SIZE,
} from '../constants.js';
import type { Reason } from '../errors.js';

export const Initiation = {
  sender: 4,
  ephemeral: 8,
  static: 40, // 32 + 16
  timestamp: 88, // 12 + 16
  mac1: 116,
  mac2: 132,
} as const;

export const Response = {
  sender: 4,
  receiver: 8,
  ephemeral: 12,
  empty: 44, // 0 + 16
  mac1: 60,
  mac2: 76,
} as const;

export const CookieReply = {
  receiver: 4,
  nonce: 8,
  cookie: 32, // 16 + 16
} as const;

export const Data = {
  receiver: 4,
  counter: 8,
  payload: 16,
} as const;

export const readU32 = (b: Uint8Array, off: number): number =>
  (b[off] | (b[off + 1] << 8) | (b[off + 2] << 16) | (b[off + 3] << 24)) >>> 0;

export function writeU32(b: Uint8Array, off: number, v: number): void {
  b[off] = v & 0xff;
  b[off + 1] = (v >>> 8) & 0xff;
  b[off + 2] = (v >>> 16) & 0xff;
  b[off + 3] = (v >>> 24) & 0xff;
}

/** Classifies a datagram by type and length; anything else is rejected with a reason. */
export function messageType(msg: Uint8Array): number | Reason {
  if (msg.length < 4) return 'short';
  const type = readU32(msg, 0);
  switch (type) {
    case MESSAGE_INITIATION:
      return msg.length === INITIATION_SIZE ? type : 'bad-length';
    case MESSAGE_RESPONSE:
      return msg.length === RESPONSE_SIZE ? type : 'bad-length';
    case MESSAGE_COOKIE_REPLY:
      return msg.length === COOKIE_REPLY_SIZE ? type : 'bad-length';
    case MESSAGE_DATA:
      return msg.length >= DATA_MIN_SIZE ? type : 'short';
    default:
      return 'bad-type';
  }
}
