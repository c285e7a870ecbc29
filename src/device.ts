// The protocol engine of one interface (the kernel's struct wg_device without its sockets and TUN): peers,
// the index table, cookie checker, ratelimiter and under-load state; the handshake receive rules and the
// timer actions (protocol.md "Receive-path rules"). Pure: datagrams and packets go in and out through
// DeviceIO, time and randomness are injected. Nothing thrown escapes receive() or sendPacket().

import { systemClock, systemRandom, type Clock, type RandomSource } from './clock.js';
import {
  DEFAULT_MTU, MAX_PEERS_PER_DEVICE, MESSAGE_COOKIE_REPLY, MESSAGE_DATA, MESSAGE_INITIATION, REJECT_AFTER_TIME,
  UNDER_LOAD_AFTER_TIME, UNDER_LOAD_QUEUE_LEN,
} from './constants.js';
import { defaultSuite } from './crypto/index.js';
import { equal, type CipherSuite } from './crypto/suite.js';
import { Errno, WgError, type Reason } from './errors.js';
import { CookieChecker, sourceBytes } from './handshake/cookie.js';
import { IndexTable } from './handshake/indextable.js';
import { Data, messageType, readU32 } from './handshake/messages.js';
import {
  consumeInitiation, consumeResponse, createInitiation, createResponse, deriveSession, LocalStatic, type NoiseContext,
} from './handshake/noise.js';
import { AllowedIPs } from './dataplane/allowedips.js';
import { addressLength, destinationOffset, ipPacketLength, sourceOffset } from './dataplane/ippacket.js';
import { Keypair } from './dataplane/keypair.js';
import { Ratelimiter } from './dataplane/ratelimiter.js';
import { openData, PacketBuffer, sealData, sealedSize } from './dataplane/transport.js';
import { keyToHex } from './keys.js';
import { Peer, type Endpoint } from './peer.js';

export interface DeviceIO {
  /** A WireGuard datagram for the network. */
  send(datagram: Uint8Array, to: Endpoint): void;
  /** A decrypted inner IP packet for the TUN (a view, valid only during the call). */
  deliver(packet: Uint8Array, from: Peer): void;
}

export interface DeviceOptions {
  io: DeviceIO;
  suite?: CipherSuite;
  clock?: Clock;
  random?: RandomSource;
  mtu?: number;
  /** Test-only: multiplies every protocol time constant (see PeerTimers). */
  timerScale?: number;
  log?: (level: 'error' | 'verbose', msg: string) => void;
}

/** What a receiver index names: a peer's pending handshake (keypair null) or one of its keypairs. */
interface IndexEntry {
  peer: Peer;
  keypair: Keypair | null;
}

export class Device {
  readonly allowedIps = new AllowedIPs<Peer>();
  readonly ctx: NoiseContext;
  readonly checker: CookieChecker;
  readonly ratelimiter: Ratelimiter;
  readonly drops = new Map<Reason, number>();
  mtu: number;
  private local: LocalStatic | null = null;
  private readonly peers = new Map<string, Peer>();
  private readonly index: IndexTable<IndexEntry>;
  private readonly io: DeviceIO;
  private readonly timerScale: number;
  private readonly rejectAfterTime: number;
  private underLoadUntil = -Infinity;
  private readonly log: (level: 'error' | 'verbose', msg: string) => void;

  constructor(opts: DeviceOptions) {
    this.io = opts.io;
    this.ctx = { suite: opts.suite ?? defaultSuite(), clock: opts.clock ?? systemClock, random: opts.random ?? systemRandom };
    this.mtu = opts.mtu ?? DEFAULT_MTU;
    this.timerScale = opts.timerScale ?? 1;
    this.rejectAfterTime = REJECT_AFTER_TIME * this.timerScale;
    this.index = new IndexTable(this.ctx.random);
    this.checker = new CookieChecker(this.ctx.suite, this.ctx.clock, this.ctx.random);
    this.ratelimiter = new Ratelimiter(this.ctx.clock);
    this.log = opts.log ?? (() => {});
  }

  // ---- configuration ------------------------------------------------------------------------------------

  get publicKey(): Uint8Array | null {
    return this.local?.publicKey ?? null;
  }

  get privateKey(): Uint8Array | null {
    return this.local?.privateKey ?? null;
  }

  /** Sets (clamped) or removes our private key. A peer whose public key becomes ours is removed. */
  setPrivateKey(key: Uint8Array | null): void {
    const next = key ? new LocalStatic(this.ctx.suite, key) : null;
    if (next && this.local && equal(next.privateKey, this.local.privateKey)) return;
    if (next) {
      const self = this.peer(next.publicKey);
      if (self) this.removePeer(self);
    }
    this.local?.zero();
    this.local = next;
    this.checker.setPublicKey(next?.publicKey ?? null);
    for (const peer of this.peers.values()) {
      peer.handshake.precompute(this.ctx.suite, next);
      this.forgetSessions(peer);
    }
  }

  peer(publicKey: Uint8Array): Peer | undefined {
    return this.peers.get(keyToHex(publicKey));
  }

  allPeers(): IterableIterator<Peer> {
    return this.peers.values();
  }

  get peerCount(): number {
    return this.peers.size;
  }

  /** Creates the peer (or returns the existing one); undefined when the key is our own (ignored, as wg does). */
  addPeer(publicKey: Uint8Array): Peer | undefined {
    if (this.local && equal(publicKey, this.local.publicKey)) return undefined;
    const existing = this.peer(publicKey);
    if (existing) return existing;
    if (this.peers.size >= MAX_PEERS_PER_DEVICE) throw new WgError('too-many-peers', 'too many peers', Errno.EINVAL);
    const peer = new Peer(Uint8Array.from(publicKey), this.ctx.suite, this.ctx.clock, this.ctx.random, this.local, this.timerScale);
    this.peers.set(keyToHex(publicKey), peer);
    return peer;
  }

  removePeer(peer: Peer): void {
    if (this.peers.get(keyToHex(peer.publicKey)) !== peer) return;
    peer.timers.stop();
    this.forgetSessions(peer);
    this.allowedIps.removeByPeer(peer);
    peer.staged.clear();
    peer.presharedKey = new Uint8Array(32);
    this.peers.delete(keyToHex(peer.publicKey));
  }

  /** Persistent keepalive setter that also sends the immediate keepalive wg users expect. */
  setPersistentKeepalive(peer: Peer, seconds: number): void {
    if (peer.timers.setPersistentKeepalive(seconds)) this.sendKeepalive(peer);
  }

  // ---- outbound ------------------------------------------------------------------------------------------

  /** An IP packet from the TUN: route by destination, stage, and send or start a handshake. */
  sendPacket(pkt: Uint8Array): Reason | null {
    try {
      const len = ipPacketLength(pkt, 0, pkt.length);
      if (len < 0) return this.drop('bad-packet');
      const peer = this.allowedIps.lookupAt(pkt, destinationOffset(pkt, 0), addressLength(pkt, 0) as 4 | 16);
      if (!peer) return this.drop('no-route');
      if (peer.staged.push(pkt.slice(0, len))) this.drop('no-keypair');
      this.sendStaged(peer);
      return null;
    } catch (e) {
      return this.internal(e);
    }
  }

  /** A keepalive: flushes staged packets, or sends an empty data message (starting a handshake if needed). */
  sendKeepalive(peer: Peer): void {
    if (peer.staged.size === 0) peer.staged.push(new Uint8Array(0));
    this.sendStaged(peer);
  }

  private sendStaged(peer: Peer): void {
    const kp = peer.keypairs.current;
    const now = this.ctx.clock.now();
    if (!kp || kp.expired(now, this.rejectAfterTime) || !peer.endpoint) {
      this.initiate(peer, false);
      return;
    }
    const pkts = peer.staged.drain();
    for (let i = 0; i < pkts.length; i++) {
      const p = pkts[i];
      const buf = Buffer.alloc(sealedSize(p.length, this.mtu));
      buf.set(p, Data.payload);
      const r = sealData(this.ctx.suite, kp, new PacketBuffer(buf), p.length, this.mtu, now, this.rejectAfterTime);
      if (!r.ok) {
        peer.staged.requeue(pkts.slice(i));
        this.initiate(peer, false);
        return;
      }
      this.transmit(peer, buf.subarray(0, r.value));
      if (p.length > 0) peer.timers.dataSent();
    }
    if (peer.timers.rekeyOnSend(kp)) this.initiate(peer, false);
  }

  /** Sends an authenticated datagram to the peer's endpoint and runs the "sent" timer hooks. */
  private transmit(peer: Peer, datagram: Uint8Array): void {
    peer.timers.authenticatedTraversal();
    peer.timers.authenticatedSent();
    if (!peer.endpoint) return void this.drop('no-endpoint');
    this.io.send(datagram, peer.endpoint);
    peer.txBytes += BigInt(datagram.length);
  }

  /** Sends a handshake initiation unless one went out less than REKEY_TIMEOUT ago (retries excepted). */
  initiate(peer: Peer, isRetry: boolean): void {
    if (!this.local || !peer.timers.requestInitiation(isRetry)) return;
    const hs = peer.handshake;
    if (hs.localIndex) this.index.delete(hs.localIndex);
    const idx = this.index.allocate({ peer, keypair: null });
    const r = createInitiation(this.ctx, this.local, hs, idx);
    if (!r.ok) {
      this.index.delete(idx);
      this.log('error', `${peer.name}: cannot create initiation: ${r.reason}`);
      return;
    }
    peer.cookies.addMacs(r.value);
    this.log('verbose', `${peer.name}: sending handshake initiation`);
    this.transmit(peer, r.value);
    peer.timers.handshakeInitiated();
  }

  // ---- inbound ---------------------------------------------------------------------------------------------

  /**
   * A datagram from the network. handshakeBacklog is how many handshake messages wait behind this one (the
   * endpoint's queue); at UNDER_LOAD_QUEUE_LEN the device is under load for UNDER_LOAD_AFTER_TIME after.
   * Returns null when the datagram was used, else why it was dropped.
   */
  receive(msg: Uint8Array, from: Endpoint, handshakeBacklog = 0): Reason | null {
    try {
      const type = messageType(msg);
      if (typeof type === 'string') return this.drop(type);
      if (type === MESSAGE_DATA) return this.receiveData(msg, from);
      if (type === MESSAGE_COOKIE_REPLY) {
        const entry = this.index.get(readU32(msg, 4));
        if (!entry) return this.drop('unknown-index');
        const r = entry.peer.cookies.consumeReply(msg);
        return r.ok ? null : this.drop(r.reason);
      }
      return this.receiveHandshake(msg, type, from, handshakeBacklog);
    } catch (e) {
      return this.internal(e);
    }
  }

  /** True while recently or currently past UNDER_LOAD_QUEUE_LEN queued handshakes. */
  underLoad(handshakeBacklog: number): boolean {
    const now = this.ctx.clock.now();
    if (handshakeBacklog >= UNDER_LOAD_QUEUE_LEN) this.underLoadUntil = now + UNDER_LOAD_AFTER_TIME;
    return now < this.underLoadUntil;
  }

  private receiveHandshake(msg: Uint8Array, type: number, from: Endpoint, backlog: number): Reason | null {
    if (!this.checker.checkMac1(msg)) return this.drop('bad-mac1');
    if (this.underLoad(backlog)) {
      const src = sourceBytes(from.addr, from.port);
      if (!this.checker.checkMac2(msg, src)) {
        this.io.send(this.checker.createReply(msg, src), from);
        return this.drop('need-cookie');
      }
      if (!this.ratelimiter.allow(from.addr)) return this.drop('ratelimited');
    }
    return type === MESSAGE_INITIATION ? this.receiveInitiation(msg, from) : this.receiveResponse(msg, from);
  }

  private receiveInitiation(msg: Uint8Array, from: Endpoint): Reason | null {
    let peer: Peer | undefined;
    const r = consumeInitiation(this.ctx, this.local, msg, (pub) => {
      peer = this.peer(pub);
      return peer?.handshake;
    });
    if (!r.ok || !peer) return this.drop(r.ok ? 'unknown-peer' : r.reason);
    this.authenticated(peer, from, msg.length);
    this.log('verbose', `${peer.name}: received handshake initiation`);

    const hs = peer.handshake;
    const idx = this.index.allocate({ peer, keypair: null });
    const resp = createResponse(this.ctx, hs, idx);
    if (!resp.ok) {
      this.index.delete(idx);
      return this.drop(resp.reason);
    }
    peer.cookies.addMacs(resp.value);
    this.installSession(peer);
    peer.timers.handshakeResponseSent();
    this.transmit(peer, resp.value);
    return null;
  }

  private receiveResponse(msg: Uint8Array, from: Endpoint): Reason | null {
    let peer: Peer | undefined;
    const r = consumeResponse(this.ctx, this.local, msg, (idx) => {
      const entry = this.index.get(idx);
      if (!entry || entry.keypair) return undefined;
      peer = entry.peer;
      return peer.handshake;
    });
    if (!r.ok || !peer) return this.drop(r.ok ? 'unknown-index' : r.reason);
    this.authenticated(peer, from, msg.length);
    this.log('verbose', `${peer.name}: received handshake response`);
    this.installSession(peer);
    peer.timers.handshakeComplete();
    this.sendKeepalive(peer); // confirms the keypair to the responder, or flushes what was staged
    return null;
  }

  /** Turns a finished handshake into a keypair, moving the handshake's index over to it. */
  private installSession(peer: Peer): void {
    const keys = deriveSession(peer.handshake);
    if (!keys.ok) return;
    const kp = new Keypair(keys.value, this.ctx.clock.now());
    this.index.replace(kp.localIndex, { peer, keypair: kp });
    for (const old of peer.keypairs.install(kp)) this.index.delete(old.localIndex);
    peer.timers.sessionDerived();
  }

  private receiveData(msg: Uint8Array, from: Endpoint): Reason | null {
    const entry = this.index.get(readU32(msg, Data.receiver));
    if (!entry || !entry.keypair) return this.drop('unknown-index');
    const { peer, keypair: kp } = entry;
    const r = openData(this.ctx.suite, kp, PacketBuffer.wrap(msg), msg.length, this.ctx.clock.now(), this.rejectAfterTime);
    if (!r.ok) return this.drop(r.reason);
    this.authenticated(peer, from, 0);

    if (kp === peer.keypairs.next) {
      for (const old of peer.keypairs.confirm(kp)) this.index.delete(old.localIndex);
      peer.timers.handshakeComplete();
      this.sendStaged(peer);
    }
    if (peer.timers.rekeyOnReceive(peer.keypairs.current ?? undefined)) this.initiate(peer, false);

    const n = r.value;
    if (n === 0) {
      peer.rxBytes += BigInt(msg.length);
      return null; // keepalive
    }
    peer.timers.dataReceived();
    const len = ipPacketLength(msg, Data.payload, n);
    if (len < 0) return this.drop('bad-packet');
    if (this.allowedIps.lookupAt(msg, sourceOffset(msg, Data.payload), addressLength(msg, Data.payload) as 4 | 16) !== peer) {
      return this.drop('allowed-ips');
    }
    peer.rxBytes += BigInt(msg.length);
    this.io.deliver(msg.subarray(Data.payload, Data.payload + len), peer);
    return null;
  }

  /** Any authenticated packet: learn the endpoint (roaming), count it, and run the "received" timer hooks. */
  private authenticated(peer: Peer, from: Endpoint, bytes: number): void {
    const ep = peer.endpoint;
    if (!ep || ep.port !== from.port || !equal(ep.addr, from.addr)) {
      peer.endpoint = { addr: Uint8Array.from(from.addr), port: from.port };
    }
    if (bytes) peer.rxBytes += BigInt(bytes);
    peer.timers.authenticatedReceived();
    peer.timers.authenticatedTraversal();
  }

  // ---- timers ------------------------------------------------------------------------------------------

  /** Runs every peer's due timers. The caller arms one real timer at nextDeadline(). */
  tick(): void {
    for (const peer of this.peers.values()) {
      for (const action of peer.timers.poll()) {
        try {
          switch (action.kind) {
            case 'retransmit-initiation':
              this.log('verbose', `${peer.name}: handshake did not complete after ${this.timerSeconds(5)} seconds, retrying (try ${peer.timers.handshakeAttempts + 1})`);
              this.initiate(peer, true);
              break;
            case 'new-handshake':
              this.initiate(peer, false);
              break;
            case 'give-up':
              this.log('verbose', `${peer.name}: handshake did not complete after ${peer.timers.handshakeAttempts + 2} attempts, giving up`);
              peer.staged.clear();
              break;
            case 'send-keepalive':
              this.sendKeepalive(peer);
              break;
            case 'zero-keys':
              this.log('verbose', `${peer.name}: removing all keys, since we haven't received a new one in ${this.timerSeconds(540)} seconds`);
              this.forgetSessions(peer);
              break;
          }
        } catch (e) {
          this.internal(e);
        }
      }
    }
  }

  nextDeadline(): number | undefined {
    let best: number | undefined;
    for (const peer of this.peers.values()) {
      const d = peer.timers.nextDeadline();
      if (d !== undefined && (best === undefined || d < best)) best = d;
    }
    return best;
  }

  // ---- helpers -----------------------------------------------------------------------------------------

  /** Erases every keypair and the in-flight handshake of a peer, freeing their indices. */
  private forgetSessions(peer: Peer): void {
    for (const kp of peer.keypairs.clear()) this.index.delete(kp.localIndex);
    if (peer.handshake.localIndex) this.index.delete(peer.handshake.localIndex);
    peer.handshake.clear();
  }

  private timerSeconds(s: number): string {
    return String(+(s * this.timerScale).toFixed(3));
  }

  private drop(reason: Reason): Reason {
    this.drops.set(reason, (this.drops.get(reason) ?? 0) + 1);
    return reason;
  }

  private internal(e: unknown): Reason {
    this.log('error', `internal error on the packet path: ${e instanceof Error ? e.stack ?? e.message : String(e)}`);
    return this.drop('internal');
  }
}
