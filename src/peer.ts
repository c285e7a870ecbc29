// A configured peer: its identity and handshake, keypairs, cookie state, timers, staged packets, endpoint
// and transfer counters (the kernel's struct wg_peer). Pure state; the device drives it.

import type { Clock, RandomSource } from './clock.js';
import type { CipherSuite } from './crypto/suite.js';
import { CookieGenerator } from './handshake/cookie.js';
import { Handshake, type LocalStatic } from './handshake/noise.js';
import { Keypairs } from './dataplane/keypair.js';
import { PeerTimers } from './dataplane/timers.js';
import { StagedQueue } from './queues/staged.js';
import { peerName } from './keys.js';

export interface Endpoint {
  /** 4 (IPv4) or 16 (IPv6) address bytes. */
  addr: Uint8Array;
  port: number;
  /**
   * Our own address that the peer's last authenticated datagram was sent to (IP_PKTINFO), so replies leave
   * from it, as the kernel's sticky endpoint source does. Absent for configured endpoints.
   */
  src?: Uint8Array;
  /** The interface that datagram came in on: the source is used only while replies would leave through it. */
  srcIf?: number;
}

const FOLD_AT = 2 ** 52;

export class Peer {
  readonly name: string;
  readonly handshake: Handshake;
  readonly keypairs = new Keypairs();
  readonly cookies: CookieGenerator;
  readonly timers: PeerTimers;
  readonly staged = new StagedQueue<Uint8Array>();
  endpoint: Endpoint | null = null;
  // WireGuard UDP payload bytes, as `wg show` reports them (u64): a BigInt base plus a Number the packet
  // path adds to, exact below 2^53 and folded into the base long before, so no packet allocates a BigInt.
  private rxBase = 0n;
  private rxAdd = 0;
  private txBase = 0n;
  private txAdd = 0;

  constructor(
    readonly publicKey: Uint8Array,
    suite: CipherSuite,
    clock: Clock,
    random: RandomSource,
    local: LocalStatic | null,
    timerScale: number,
  ) {
    this.name = peerName(publicKey);
    this.handshake = new Handshake(publicKey);
    this.handshake.precompute(suite, local);
    this.cookies = new CookieGenerator(suite, clock, publicKey);
    this.timers = new PeerTimers(clock, random, { timerScale });
  }

  get presharedKey(): Uint8Array {
    return this.handshake.presharedKey;
  }

  set presharedKey(k: Uint8Array) {
    this.handshake.presharedKey.fill(0);
    this.handshake.presharedKey = Uint8Array.from(k);
  }

  toString(): string {
    return this.name;
  }

  get rxBytes(): bigint {
    return this.rxBase + BigInt(this.rxAdd);
  }

  get txBytes(): bigint {
    return this.txBase + BigInt(this.txAdd);
  }

  set rxBytes(v: bigint) {
    this.rxBase = v;
    this.rxAdd = 0;
  }

  set txBytes(v: bigint) {
    this.txBase = v;
    this.txAdd = 0;
  }

  countRx(bytes: number): void {
    this.rxAdd += bytes;
    if (this.rxAdd >= FOLD_AT) {
      this.rxBase += BigInt(this.rxAdd);
      this.rxAdd = 0;
    }
  }

  countTx(bytes: number): void {
    this.txAdd += bytes;
    if (this.txAdd >= FOLD_AT) {
      this.txBase += BigInt(this.txAdd);
      this.txAdd = 0;
    }
  }
}
