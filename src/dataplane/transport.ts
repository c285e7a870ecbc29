// Transport data messages (protocol.md "Messages", type 4; whitepaper §5.4.6): header, padding to 16 capped
// at the MTU, seal and open in place. sealPayload/openPayload are the pieces crypto workers run; sealData adds
// key expiry and nonce assignment for the control thread's own sends (staged packets, keepalives).

import { AEAD_TAG_SIZE, DATA_HEADER_SIZE, MESSAGE_DATA, MESSAGE_PADDING_MULTIPLE, REJECT_AFTER_TIME } from '../constants.js';
import { fail, ok, type Result } from '../errors.js';
import { zeroRange, type CipherSuite } from '../crypto/suite.js';
import { Data, readU32, writeU32 } from '../handshake/messages.js';
import type { Keypair } from './keypair.js';

/**
 * A copy of `len` bytes at `off`. Not buf.slice(): on a Buffer (a slot, a receive-ring buffer) that is a view,
 * and the slot goes back to the free queue at once and is the next one filled (SpscQueue.takeNewest), so a
 * staged packet or a queued handshake kept as a view would be overwritten.
 */
export const copyOf = (buf: Uint8Array, off: number, len: number): Uint8Array => Uint8Array.prototype.slice.call(buf, off, off + len);

/** Plaintext length after padding: up to a multiple of 16, but never past the MTU (kernel rule). */
export function paddedLength(len: number, mtu: number): number {
  const mask = MESSAGE_PADDING_MULTIPLE - 1;
  if (mtu === 0) return (len + mask) & ~mask;
  const last = len > mtu ? len % mtu : len;
  const padded = Math.min((last + mask) & ~mask, mtu);
  return len + (padded - last);
}

/** Total wire size for a plaintext of len bytes. */
export const sealedSize = (len: number, mtu: number): number => DATA_HEADER_SIZE + paddedLength(len, mtu) + AEAD_TAG_SIZE;

export function writeDataHeader(buf: Uint8Array, receiver: number): void {
  writeU32(buf, 0, MESSAGE_DATA);
  writeU32(buf, Data.receiver, receiver);
}

/**
 * A packet buffer (a TUN read or ring slot) with its payload views cached by length. sodium-native takes every
 * length from the views it is given, so without the cache each packet would allocate two fresh views; with
 * it, sealing and opening where a packet lies allocates nothing once each padded size has been seen.
 */
export class PacketBuffer {
  /**
   * A Map, not an array indexed by length: an empty array and one holding a view at index ~1400 (a sparse,
   * dictionary-mode array) have different hidden classes, and the optimised seal saw the second kind only late
   * in a transfer and deoptimised there (traced). A Map's lookup is the same hash lookup.
   */
  private readonly views = new Map<number, Buffer>();

  constructor(readonly bytes: Buffer) {}

  static wrap(u: Uint8Array): PacketBuffer {
    return new PacketBuffer(Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.length));
  }

  /** Whether payload(len) would return a view made earlier (and so allocate nothing). */
  has(len: number): boolean {
    return this.views.has(len);
  }

  /** bytes[16, 16 + len): a transport message's payload area. */
  payload(len: number): Buffer {
    let v = this.views.get(len);
    if (v === undefined) this.views.set(len, (v = this.bytes.subarray(DATA_HEADER_SIZE, DATA_HEADER_SIZE + len)));
    return v;
  }
}

/**
 * Pads (with zeros) and seals the plaintext at bytes[16..16+len) in place with the nonce already in the
 * header. The buffer needs sealedSize(len, mtu) bytes. Returns the message length.
 */
export function sealPayload(suite: CipherSuite, key: Uint8Array, pb: PacketBuffer, len: number, mtu: number): number {
  const buf = pb.bytes;
  const padded = paddedLength(len, mtu);
  zeroRange(buf, DATA_HEADER_SIZE + len, DATA_HEADER_SIZE + padded);
  const lo = readU32(buf, Data.counter);
  const hi = readU32(buf, Data.counter + 4);
  return DATA_HEADER_SIZE + suite.seal(pb.payload(padded + AEAD_TAG_SIZE), key, lo, hi, pb.payload(padded), null);
}

/** Opens the msgLen-byte message in pb in place: plaintext at bytes[16..16+return). -1 on a bad tag. */
export function openPayload(suite: CipherSuite, key: Uint8Array, pb: PacketBuffer, msgLen: number): number {
  const buf = pb.bytes;
  const lo = readU32(buf, Data.counter);
  const hi = readU32(buf, Data.counter + 4);
  const n = msgLen - DATA_HEADER_SIZE - AEAD_TAG_SIZE;
  return suite.open(pb.payload(n), key, lo, hi, pb.payload(n + AEAD_TAG_SIZE), null) ? n : -1;
}

/** Header, next nonce, padding and seal: the plaintext is at offset 16. Returns the message length. */
export function sealData(
  suite: CipherSuite, kp: Keypair, pb: PacketBuffer, len: number, mtu: number, now: number, rejectAfterTime = REJECT_AFTER_TIME,
): Result<number> {
  if (kp.expired(now, rejectAfterTime)) return fail('expired');
  writeDataHeader(pb.bytes, kp.remoteIndex);
  if (!kp.takeNonce(pb.bytes, Data.counter)) return fail('expired');
  return ok(sealPayload(suite, kp.sendKey, pb, len, mtu));
}
