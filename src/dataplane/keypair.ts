// Transport keypairs and a peer's current/previous/next set (whitepaper §5.4.5, §6; kernel noise.c). The
// responder's new keypair waits as `next` until the initiator's first data packet confirms it. Send
// nonces are a u32 lo/hi pair so assigning one allocates nothing.

import { REJECT_AFTER_MESSAGES, REJECT_AFTER_TIME } from '../constants.js';
import type { SessionKeys } from '../handshake/noise.js';
import { ReplayWindow } from './replay.js';

const REJECT_HI = Number(REJECT_AFTER_MESSAGES >> 32n);
const REJECT_LO = Number(REJECT_AFTER_MESSAGES & 0xffffffffn);

export class Keypair {
  readonly sendKey: Uint8Array;
  readonly receiveKey: Uint8Array;
  readonly isInitiator: boolean;
  readonly localIndex: number;
  readonly remoteIndex: number;
  readonly replay = new ReplayWindow();
  /** Where the data plane's workers find this keypair's keys (-1 when not mirrored). */
  keySlot = -1;
  /** Next send nonce, low and high u32 halves. */
  sendLo = 0;
  sendHi = 0;

  constructor(keys: SessionKeys, readonly createdAt: number) {
    this.sendKey = keys.sendKey;
    this.receiveKey = keys.receiveKey;
    this.isInitiator = keys.isInitiator;
    this.localIndex = keys.localIndex;
    this.remoteIndex = keys.remoteIndex;
  }

  /** Writes the next send nonce (u64 LE) at out[off..off+8) and advances; false once it is exhausted. */
  takeNonce(out: Uint8Array, off: number): boolean {
    const lo = this.sendLo;
    const hi = this.sendHi;
    if (this.exhausted) return false;
    out[off] = lo & 0xff;
    out[off + 1] = (lo >>> 8) & 0xff;
    out[off + 2] = (lo >>> 16) & 0xff;
    out[off + 3] = lo >>> 24;
    out[off + 4] = hi & 0xff;
    out[off + 5] = (hi >>> 8) & 0xff;
    out[off + 6] = (hi >>> 16) & 0xff;
    out[off + 7] = hi >>> 24;
    if (lo === 0xffffffff) {
      this.sendLo = 0;
      this.sendHi = hi + 1;
    } else {
      this.sendLo = lo + 1;
    }
    return true;
  }

  /** No nonce left: REJECT_AFTER_MESSAGES were sent under this key. */
  get exhausted(): boolean {
    return this.sendHi === REJECT_HI && this.sendLo >= REJECT_LO;
  }

  get sendCounter(): bigint {
    return (BigInt(this.sendHi) << 32n) | BigInt(this.sendLo);
  }

  set sendCounter(v: bigint) {
    this.sendHi = Number(v >> 32n);
    this.sendLo = Number(v & 0xffffffffn);
  }


  /** Keys older than REJECT_AFTER_TIME are never used in either direction. */
  expired(now: number, rejectAfterTime = REJECT_AFTER_TIME): boolean {
    return now - this.createdAt >= rejectAfterTime;
  }

  zero(): void {
    this.sendKey.fill(0);
    this.receiveKey.fill(0);
  }
}

/** A peer's three keypair slots. Methods return the keypairs they let go; the caller frees their indices. */
export class Keypairs {
  current: Keypair | null = null;
  previous: Keypair | null = null;
  next: Keypair | null = null;

  /** A handshake just completed. An initiator may send at once; a responder waits for confirmation. */
  install(kp: Keypair): Keypair[] {
    const dropped: Keypair[] = [];
    const keep = (k: Keypair | null) => k && dropped.push(k);
    if (kp.isInitiator) {
      if (this.next) {
        // An unconfirmed responder keypair still outranks current as the one the peer may be using.
        keep(this.previous);
        keep(this.current);
        this.previous = this.next;
        this.next = null;
      } else {
        keep(this.previous);
        this.previous = this.current;
      }
      this.current = kp;
    } else {
      keep(this.next);
      keep(this.previous);
      this.next = kp;
      this.previous = null;
    }
    for (const k of dropped) k.zero();
    return dropped;
  }

  /** Data arrived under kp: if it is the waiting `next`, it becomes current. */
  confirm(kp: Keypair): Keypair[] {
    if (kp !== this.next) return [];
    const dropped = this.previous ? [this.previous] : [];
    this.previous = this.current;
    this.current = kp;
    this.next = null;
    for (const k of dropped) k.zero();
    return dropped;
  }

  /** Erases every key (3 x REJECT_AFTER_TIME without a handshake, peer removed, private key changed). */
  clear(): Keypair[] {
    const dropped = [this.current, this.previous, this.next].filter((k): k is Keypair => k !== null);
    this.current = this.previous = this.next = null;
    for (const k of dropped) k.zero();
    return dropped;
  }
}
