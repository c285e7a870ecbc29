// mac1, mac2 and cookie replies (protocol.md "Messages"; whitepaper §5.4.4-5.4.7). The checker is ours as a
// recipient: it verifies macs and, under load, answers with a cookie bound to the sender's address. The
// generator is per peer: it stamps macs on what we send and keeps the cookie that peer gave us.

import type { Clock, RandomSource } from '../clock.js';
import {
  COOKIE_NONCE_SIZE, COOKIE_REPLY_SIZE, COOKIE_SECRET_LATENCY, COOKIE_SECRET_MAX_AGE, LABEL_COOKIE, LABEL_MAC1,
  MAC_SIZE, MESSAGE_COOKIE_REPLY,
} from '../constants.js';
import { fail, ok, type Result } from '../errors.js';
import { hash, mac } from '../crypto/blake2s.js';
import { equal, type CipherSuite } from '../crypto/suite.js';
import { CookieReply, readU32, writeU32 } from './messages.js';

const enc = new TextEncoder();
const LABEL_MAC1_BYTES = enc.encode(LABEL_MAC1);
const LABEL_COOKIE_BYTES = enc.encode(LABEL_COOKIE);

export const mac1Key = (pub: Uint8Array): Uint8Array => hash(LABEL_MAC1_BYTES, pub);
export const cookieKey = (pub: Uint8Array): Uint8Array => hash(LABEL_COOKIE_BYTES, pub);

/** The bytes a cookie is bound to: the source address followed by the port, big-endian as on the wire. */
export function sourceBytes(addr: Uint8Array, port: number): Uint8Array {
  const b = new Uint8Array(addr.length + 2);
  b.set(addr);
  b[addr.length] = port >>> 8;
  b[addr.length + 1] = port & 0xff;
  return b;
}

const mac1Offset = (msg: Uint8Array) => msg.length - 2 * MAC_SIZE;
const mac2Offset = (msg: Uint8Array) => msg.length - MAC_SIZE;

export class CookieChecker {
  private mac1Key: Uint8Array | null = null;
  private encryptionKey: Uint8Array | null = null;
  private readonly secret = new Uint8Array(32);
  private secretSetAt = -Infinity;

  constructor(
    private readonly suite: CipherSuite,
    private readonly clock: Clock,
    private readonly random: RandomSource,
  ) {}

  /** Our static public key, or null when the device has no private key (then nothing verifies). */
  setPublicKey(pub: Uint8Array | null): void {
    this.mac1Key = pub ? mac1Key(pub) : null;
    this.encryptionKey = pub ? cookieKey(pub) : null;
  }

  checkMac1(msg: Uint8Array): boolean {
    if (!this.mac1Key) return false;
    const off = mac1Offset(msg);
    return equal(mac(this.mac1Key, msg.subarray(0, off)), msg.subarray(off, off + MAC_SIZE));
  }

  checkMac2(msg: Uint8Array, src: Uint8Array): boolean {
    const off = mac2Offset(msg);
    return equal(mac(this.cookie(src), msg.subarray(0, off)), msg.subarray(off, off + MAC_SIZE));
  }

  /** The cookie reply to a handshake message (whose mac1 already verified) from src. */
  createReply(msg: Uint8Array, src: Uint8Array): Uint8Array {
    const out = new Uint8Array(COOKIE_REPLY_SIZE);
    writeU32(out, 0, MESSAGE_COOKIE_REPLY);
    writeU32(out, CookieReply.receiver, readU32(msg, 4)); // the sender index of the message answered
    const nonce = out.subarray(CookieReply.nonce, CookieReply.nonce + COOKIE_NONCE_SIZE);
    this.random(nonce);
    const off = mac1Offset(msg);
    this.suite.xseal(out.subarray(CookieReply.cookie), this.encryptionKey ?? new Uint8Array(32), nonce,
      this.cookie(src), msg.subarray(off, off + MAC_SIZE));
    return out;
  }

  private cookie(src: Uint8Array): Uint8Array {
    const now = this.clock.now();
    if (now - this.secretSetAt > COOKIE_SECRET_MAX_AGE) {
      this.random(this.secret);
      this.secretSetAt = now;
    }
    return mac(this.secret, src);
  }
}

export class CookieGenerator {
  private readonly mac1Key: Uint8Array;
  private readonly decryptionKey: Uint8Array;
  private cookie: Uint8Array | null = null;
  private cookieSetAt = 0;
  private lastMac1: Uint8Array | null = null;

  constructor(
    private readonly suite: CipherSuite,
    private readonly clock: Clock,
    peerPublic: Uint8Array,
  ) {
    this.mac1Key = mac1Key(peerPublic);
    this.decryptionKey = cookieKey(peerPublic);
  }

  /** Writes mac1 and mac2 into the last 32 bytes of an outgoing handshake message. */
  addMacs(msg: Uint8Array): void {
    const off1 = mac1Offset(msg);
    const m1 = mac(this.mac1Key, msg.subarray(0, off1));
    msg.set(m1, off1);
    this.lastMac1 = m1;
    const off2 = mac2Offset(msg);
    const fresh = this.cookie && this.clock.now() - this.cookieSetAt <= COOKIE_SECRET_MAX_AGE - COOKIE_SECRET_LATENCY;
    msg.set(fresh ? mac(this.cookie!, msg.subarray(0, off2)) : new Uint8Array(MAC_SIZE), off2);
  }

  /** Takes the cookie out of a reply to the last message we stamped. */
  consumeReply(reply: Uint8Array): Result<void> {
    if (!this.lastMac1) return fail('wrong-state');
    const cookie = new Uint8Array(MAC_SIZE);
    const nonce = reply.subarray(CookieReply.nonce, CookieReply.nonce + COOKIE_NONCE_SIZE);
    if (!this.suite.xopen(cookie, this.decryptionKey, nonce, reply.subarray(CookieReply.cookie), this.lastMac1)) {
      return fail('decrypt-failed');
    }
    this.cookie = cookie;
    this.cookieSetAt = this.clock.now();
    this.lastMac1 = null; // one reply per stamped message: a replayed reply finds nothing to open
    return ok(undefined);
  }

  get hasCookie(): boolean {
    return this.cookie !== null;
  }
}
