// The protocol engine of one interface (the kernel's struct wg_device without its sockets and TUN): peers,
// the index table, cookie checker, ratelimiter and under-load state; the handshake receive rules and the
// timer actions (protocol.md "Receive-path rules"). Pure: datagrams and packets go in and out through
// DeviceIO, time and randomness are injected. Nothing thrown escapes receive() or sendPacket().

import { systemClock, type Clock, type RandomSource } from './clock.js';
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
import { copyOf, openPayload, PacketBuffer, sealData, sealedSize } from './dataplane/transport.js';
import { keyToHex } from './keys.js';
import { Peer, type Endpoint } from './peer.js';
import { earliestDeadline, runDueTimers, type TimerHost } from './dataplane/timeractions.js';

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
  /** Told when a keypair comes into use and when it is let go (the data plane mirrors keys for its workers). */
  keypairHooks?: KeypairHooks;
}

export interface KeypairHooks {
  installed(kp: Keypair): void;
  dropped(kp: Keypair): void;
}

/** A data message's receiver index resolved to its peer and keypair. */
export interface DataTarget {
  peer: Peer;
  keypair: Keypair;
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
  private isUp = true;
  private readonly log: (level: 'error' | 'verbose', msg: string) => void;
  private readonly timerHost: TimerHost = {
    initiate: (peer, isRetry) => this.initiate(peer, isRetry),
    sendKeepalive: (peer) => this.sendKeepalive(peer),
    forgetSessions: (peer) => this.forgetSessions(peer),
    timerSeconds: (s) => this.timerSeconds(s),
    log: (level, msg) => this.log(level, msg),
    internal: (e) => this.internal(e),
  };
  private readonly hooks: KeypairHooks | undefined;
  private timerArmed: ((deadline: number) => void) | null = null;
  private readonly armed = (deadline: number): void => this.timerArmed?.(deadline);

  constructor(opts: DeviceOptions) {
    this.io = opts.io;
    const suite = opts.suite ?? defaultSuite();
    this.ctx = { suite, clock: opts.clock ?? systemClock, random: opts.random ?? suite.random };
    this.mtu = opts.mtu ?? DEFAULT_MTU;
    this.timerScale = opts.timerScale ?? 1;
    this.rejectAfterTime = REJECT_AFTER_TIME * this.timerScale;
    this.index = new IndexTable(this.ctx.random);
    this.checker = new CookieChecker(this.ctx.suite, this.ctx.clock, this.ctx.random);
    this.ratelimiter = new Ratelimiter(this.ctx.clock);
    this.log = opts.log ?? (() => {});
    this.hooks = opts.keypairHooks;
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
    if (next && this.local && equal(next.privateKey, this.local.privateKey)) {
      next.zero(); // the unneeded copy of the same key
      return;
    }
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
    peer.timers.onArm = this.armed;
    if (!this.isUp) peer.timers.stop();
    return peer;
  }

  removePeer(peer: Peer): void {
    if (this.peers.get(keyToHex(peer.publicKey)) !== peer) return;
    peer.timers.stop();
    this.forgetSessions(peer);
    this.allowedIps.removeByPeer(peer);
    peer.staged.clear();
    peer.handshake.erase(); // pre-shared key and static-static DH overwritten, not just dropped
    this.peers.delete(keyToHex(peer.publicKey));
  }

  /** Interface up: timers run again, and peers with a persistent keepalive announce themselves at once. */
  up(): void {
    this.isUp = true;
    for (const peer of this.peers.values()) {
      peer.timers.start();
      if (peer.timers.persistentKeepalive > 0) this.sendKeepalive(peer);
      else if (peer.staged.size) this.sendStaged(peer); // what the TUN gave us before the link-up was seen
    }
  }

  /** Interface down: timers stop and sessions are forgotten, as wireguard-go does. */
  down(): void {
    this.isUp = false;
    for (const peer of this.peers.values()) {
      peer.timers.stop();
      peer.staged.clear();
      this.forgetSessions(peer);
    }
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
      const peer = this.route(pkt, 0);
      if (!peer) return this.drop('no-route');
      this.stage(peer, copyOf(pkt, 0, len)); // pkt may be a view of a buffer its caller reuses
      this.sendStaged(peer);
      return null;
    } catch (e) {
      return this.internal(e);
    }
  }

  /** The peer whose allowed IPs hold the destination of the IP packet at buf[off..]. */
  route(buf: Uint8Array, off: number): Peer | undefined {
    const alen = addressLength(buf, off);
    return alen ? this.allowedIps.lookupAt(buf, destinationOffset(buf, off), alen) : undefined;
  }

  /** Queues a packet (owned by the caller no more) until the peer has a usable keypair. */
  stage(peer: Peer, pkt: Uint8Array): void {
    if (peer.staged.push(pkt)) this.drop('no-keypair');
  }

  /** The keypair to send under now, or null: then packets wait staged while a handshake runs. */
  sendingKeypair(peer: Peer): Keypair | null {
    const kp = peer.keypairs.current;
    if (!kp || !peer.endpoint || kp.exhausted || kp.expired(this.ctx.clock.now(), this.rejectAfterTime)) return null;
    return kp;
  }

  /**
   * Bookkeeping after data messages went out under kp: `bytes` on the wire in all, `data` of them not
   * keepalives. Per batch, not per packet: the timers only care that something was sent.
   */
  sent(peer: Peer, kp: Keypair, bytes: number, data: number): void {
    peer.timers.authenticatedTraversal();
    peer.timers.authenticatedSent();
    if (data > 0) peer.timers.dataSent();
    peer.countTx(bytes);
    if (peer.timers.rekeyOnSend(kp)) this.initiate(peer, false);
  }

  /** A keepalive: flushes staged packets, or sends an empty data message (starting a handshake if needed). */
  sendKeepalive(peer: Peer): void {
    if (peer.staged.size === 0) peer.staged.push(new Uint8Array(0));
    this.sendStaged(peer);
  }

  /** Seals and sends what is staged, here on the control thread: staged traffic is small and rare. */
  sendStaged(peer: Peer): void {
    // Down, or up before the daemon's link poll noticed: the timers are stopped, so a handshake started now
    // would never be retransmitted. The packets stay staged and up() sends them.
    if (!this.isUp) return;
    const kp = this.sendingKeypair(peer);
    if (!kp) {
      if (peer.staged.size) this.initiate(peer, false);
      return;
    }
    const pkts = peer.staged.drain();
    if (pkts.length === 0) return;
    let bytes = 0;
    let data = 0;
    for (let i = 0; i < pkts.length; i++) {
      const p = pkts[i];
      const buf = Buffer.alloc(sealedSize(p.length, this.mtu));
      buf.set(p, Data.payload);
      const r = sealData(this.ctx.suite, kp, new PacketBuffer(buf), p.length, this.mtu, this.ctx.clock.now(), this.rejectAfterTime);
      if (!r.ok) {
        peer.staged.requeue(pkts.slice(i));
        break;
      }
      this.io.send(buf.subarray(0, r.value), peer.endpoint!);
      bytes += r.value;
      if (p.length > 0) data++;
    }
    this.sent(peer, kp, bytes, data);
    if (peer.staged.size) this.initiate(peer, false);
  }

  /**
   * Sends a handshake message to the peer's endpoint and runs the "sent" timer hooks. Bookkeeping and log
   * lines come after the send throughout the handshake: a tunnel's first packet waits for each step, and
   * after an idle spell each costs 3-5x its usual time (a log line ~100 us, a session's install ~150).
   */
  private transmit(peer: Peer, datagram: Uint8Array): void {
    if (peer.endpoint) {
      this.io.send(datagram, peer.endpoint);
      peer.countTx(datagram.length);
    } else this.drop('no-endpoint');
    peer.timers.authenticatedTraversal();
    peer.timers.authenticatedSent();
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
    this.transmit(peer, r.value);
    this.log('verbose', `${peer.name}: sending handshake initiation`);
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
    let ownPending = 0;
    const r = consumeInitiation(this.ctx, this.local, msg, (pub) => {
      peer = this.peer(pub);
      ownPending = peer?.handshake.localIndex ?? 0;
      return peer?.handshake;
    });
    if (!r.ok || !peer) return this.drop(r.ok ? 'unknown-peer' : r.reason);
    // Crossing initiations: consuming theirs wiped our own in-flight handshake, whose index would otherwise
    // stay in the table for good (one leaked entry, holding the peer, per crossing; issue 5 fuzzing).
    if (ownPending) this.index.delete(ownPending);
    this.authenticated(peer, from, msg.length);

    const hs = peer.handshake;
    const idx = this.index.allocate({ peer, keypair: null });
    const resp = createResponse(this.ctx, hs, idx);
    if (resp.ok) {
      peer.cookies.addMacs(resp.value);
      // Sent before the session is installed: nothing can arrive under it until this call returns.
      this.transmit(peer, resp.value);
      peer.timers.handshakeResponseSent();
      this.installSession(peer);
    } else this.index.delete(idx);
    this.log('verbose', `${peer.name}: received handshake initiation`);
    return resp.ok ? null : this.drop(resp.reason);
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
    this.installSession(peer);
    peer.timers.handshakeComplete();
    this.sendKeepalive(peer); // confirms the keypair to the responder, or flushes what was staged
    this.log('verbose', `${peer.name}: received handshake response`);
    return null;
  }

  /** Turns a finished handshake into a keypair, moving the handshake's index over to it. */
  private installSession(peer: Peer): void {
    const keys = deriveSession(peer.handshake);
    if (!keys.ok) return;
    const kp = new Keypair(keys.value, this.ctx.clock.now());
    this.index.replace(kp.localIndex, { peer, keypair: kp });
    this.hooks?.installed(kp);
    this.release(peer.keypairs.install(kp));
    peer.timers.sessionDerived();
  }

  /** Frees the indices (and the data plane's copies) of keypairs that are no longer held. */
  private release(dropped: Keypair[]): void {
    for (const kp of dropped) {
      this.index.delete(kp.localIndex);
      this.hooks?.dropped(kp);
    }
  }

  private receiveData(msg: Uint8Array, from: Endpoint): Reason | null {
    const target = this.dataTarget(msg);
    if (typeof target === 'string') return this.drop(target);
    const pb = PacketBuffer.wrap(msg);
    const n = openPayload(this.ctx.suite, target.keypair.receiveKey, pb, msg.length);
    if (n < 0) return this.drop('decrypt-failed');
    const len = this.received(target, from, msg, msg.length, n);
    if (typeof len === 'string') return len;
    if (len > 0) this.io.deliver(msg.subarray(Data.payload, Data.payload + len), target.peer);
    return null;
  }

  /** The peer and keypair a data message is for, if that keypair may still receive. */
  dataTarget(msg: Uint8Array): DataTarget | Reason {
    const entry = this.index.get(readU32(msg, Data.receiver));
    if (!entry || !entry.keypair) return 'unknown-index';
    if (entry.keypair.expired(this.ctx.clock.now(), this.rejectAfterTime)) return 'expired';
    return entry as DataTarget;
  }

  /**
   * The receive rules after the AEAD tag verified (protocol.md "Receive-path rules"): replay window,
   * roaming, keypair confirmation, timers, then the inner packet's length and source check. msg holds the
   * opened message (plaintext at offset 16, `plain` bytes). Returns the inner packet length to deliver,
   * 0 for a keepalive, or why it was dropped.
   */
  received(target: DataTarget, from: Endpoint, msg: Uint8Array, msgLen: number, plain: number): number | Reason {
    const { peer, keypair: kp } = target;
    if (!kp.replay.check(readU32(msg, Data.counter), readU32(msg, Data.counter + 4))) return this.drop('replay');
    this.authenticated(peer, from, 0);
    if (kp === peer.keypairs.next) {
      this.release(peer.keypairs.confirm(kp));
      peer.timers.handshakeComplete();
      this.sendStaged(peer);
    }
    if (peer.timers.rekeyOnReceive(peer.keypairs.current ?? undefined)) this.initiate(peer, false);
    if (plain === 0) {
      peer.countRx(msgLen);
      return 0;
    }
    peer.timers.dataReceived();
    const len = ipPacketLength(msg, Data.payload, plain);
    if (len <= 0) return this.drop('bad-packet');
    const alen = addressLength(msg, Data.payload);
    if (this.allowedIps.lookupAt(msg, sourceOffset(msg, Data.payload), alen as 4 | 16) !== peer) return this.drop('allowed-ips');
    peer.countRx(msgLen);
    return len;
  }

  /** Any authenticated packet: learn the endpoint (roaming), count it, and run the "received" timer hooks. */
  private authenticated(peer: Peer, from: Endpoint, bytes: number): void {
    const ep = peer.endpoint;
    if (!ep || ep.port !== from.port || !equal(ep.addr, from.addr) || !sameSource(ep.src, from.src) || ep.srcIf !== from.srcIf) {
      peer.endpoint = from.src
        ? { addr: Uint8Array.from(from.addr), port: from.port, src: Uint8Array.from(from.src), srcIf: from.srcIf }
        : { addr: Uint8Array.from(from.addr), port: from.port };
    }
    if (bytes) peer.countRx(bytes);
    peer.timers.authenticatedReceived();
    peer.timers.authenticatedTraversal();
  }

  // ---- timers ------------------------------------------------------------------------------------------

  /** Runs every peer's due timers. The caller arms one real timer at nextDeadline(). */
  tick(): void {
    // A real timer can fire a little early, or for a deadline since cancelled: then looking finds nothing due,
    // and looking allocates nothing where polling builds each peer's action list.
    const due = earliestDeadline(this.peers.values());
    if (due === undefined || due > this.ctx.clock.now()) return;
    runDueTimers(this.peers.values(), this.timerHost);
  }

  nextDeadline(): number | undefined {
    return earliestDeadline(this.peers.values());
  }

  /** `cb(deadline)` whenever any peer arms a timer, and at once for the earliest already armed. */
  onTimerArmed(cb: (deadline: number) => void): void {
    this.timerArmed = cb;
    const next = this.nextDeadline();
    if (next !== undefined) cb(next);
  }

  // ---- helpers -----------------------------------------------------------------------------------------

  /** Erases every keypair and the in-flight handshake of a peer, freeing their indices. */
  private forgetSessions(peer: Peer): void {
    this.release(peer.keypairs.clear());
    if (peer.handshake.localIndex) this.index.delete(peer.handshake.localIndex);
    peer.handshake.clear();
  }

  private timerSeconds(s: number): string {
    return String(+(s * this.timerScale).toFixed(3));
  }

  /** Counts a dropped packet by reason (the data plane reports its drops here too). */
  drop(reason: Reason): Reason {
    this.drops.set(reason, (this.drops.get(reason) ?? 0) + 1);
    return reason;
  }

  private internal(e: unknown): Reason {
    this.log('error', `internal error on the packet path: ${e instanceof Error ? e.stack ?? e.message : String(e)}`);
    return this.drop('internal');
  }
}

const sameSource = (a: Uint8Array | undefined, b: Uint8Array | undefined): boolean =>
  a === b || (a !== undefined && b !== undefined && equal(a, b));
