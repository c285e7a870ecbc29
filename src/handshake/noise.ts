// Noise_IKpsk2 as WireGuard uses it (protocol.md "Cryptographic construction" and "Messages"; whitepaper
// §5.4.2-5.4.3): create and consume the initiation and the response, then derive the transport keys.
// Pure: time and randomness come from the context. macs are the cookie module's job (cookie.ts).
// Secrets are overwritten once used (issue 5 item 8, as the kernel's memzero_explicit): intermediate
// chaining keys, AEAD keys and DH results at once, replaced handshake state when it is replaced.

import type { Clock, RandomSource } from '../clock.js';
import {
  CONSTRUCTION, IDENTIFIER, INITIATION_SIZE, INITIATIONS_PER_SECOND, KEY_SIZE, MESSAGE_INITIATION,
  MESSAGE_RESPONSE, RESPONSE_SIZE, TAI64N_SIZE,
} from '../constants.js';
import { fail, ok, type Result } from '../errors.js';
import { hash, kdf } from '../crypto/blake2s.js';
import { clamp, type CipherSuite } from '../crypto/suite.js';
import { Initiation, Response, readU32, writeU32 } from './messages.js';
import { tai64n, tai64nAfter } from './tai64n.js';

export interface NoiseContext {
  readonly suite: CipherSuite;
  readonly clock: Clock;
  readonly random: RandomSource;
}

/** Our static identity. The private key is clamped on the way in (and so reads back clamped). */
export class LocalStatic {
  readonly privateKey: Uint8Array;
  readonly publicKey = new Uint8Array(KEY_SIZE);
  /** HASH(HASH(HASH(CONSTRUCTION) || IDENTIFIER) || our public key): the start of every initiation to us. */
  readonly initialHash: Uint8Array;

  constructor(suite: CipherSuite, privateKey: Uint8Array) {
    this.privateKey = clamp(Uint8Array.from(privateKey));
    suite.x25519Base(this.publicKey, this.privateKey);
    this.initialHash = hash(INITIAL_HASH, this.publicKey);
  }

  zero(): void {
    this.privateKey.fill(0);
  }
}

const enc = new TextEncoder();
const INITIAL_CHAIN_KEY = hash(enc.encode(CONSTRUCTION));
const INITIAL_HASH = hash(INITIAL_CHAIN_KEY, enc.encode(IDENTIFIER));
const EMPTY = new Uint8Array(0);
const INITIATION_INTERVAL = 1000 / INITIATIONS_PER_SECOND;

export enum HandshakeState {
  Zeroed,
  InitiationCreated,
  InitiationConsumed,
  ResponseCreated,
  ResponseConsumed,
}

/** One peer's handshake state. The remote static key is fixed for the peer's life. */
export class Handshake {
  state = HandshakeState.Zeroed;
  hash: Uint8Array = new Uint8Array(32);
  chainKey: Uint8Array = new Uint8Array(32);
  ephemeralPrivate: Uint8Array = new Uint8Array(32);
  remoteEphemeral: Uint8Array = new Uint8Array(32);
  localIndex = 0;
  remoteIndex = 0;
  presharedKey: Uint8Array = new Uint8Array(32);
  /** DH(our static, their static), or null when we have no key or theirs is low-order: then no handshake. */
  precomputedStaticStatic: Uint8Array | null = null;
  /** Newest TAI64N accepted from this peer; replays of older initiations are refused. */
  lastTimestamp: Uint8Array = new Uint8Array(TAI64N_SIZE);
  lastInitiationConsumption = -Infinity;

  constructor(readonly remoteStatic: Uint8Array) {}

  /** Recomputes the static-static DH after our private key changed. */
  precompute(suite: CipherSuite, local: LocalStatic | null): void {
    // The peer's old DH value is a long-term secret of the old identity: no copy of it may outlive it.
    this.precomputedStaticStatic?.fill(0);
    if (!local) {
      this.precomputedStaticStatic = null;
      return;
    }
    const ss = new Uint8Array(32);
    this.precomputedStaticStatic = suite.x25519(ss, local.privateKey, this.remoteStatic) ? ss : null;
  }

  /** Forgets the in-flight handshake (not the peer's identity, psk or timestamp history). */
  clear(): void {
    this.state = HandshakeState.Zeroed;
    this.hash.fill(0);
    this.chainKey.fill(0);
    this.ephemeralPrivate.fill(0);
    this.remoteEphemeral.fill(0);
    this.localIndex = 0;
    this.remoteIndex = 0;
  }

  /** The peer is gone: its in-flight handshake, pre-shared key and static-static DH are overwritten. */
  erase(): void {
    this.clear();
    this.presharedKey.fill(0);
    this.precomputedStaticStatic?.fill(0);
    this.precomputedStaticStatic = null;
  }
}

/** Zeroes secrets that are no longer needed (JS cannot free memory on demand, but it can overwrite it). */
function wipe(...bufs: (Uint8Array | null)[]): void {
  for (const b of bufs) b?.fill(0);
}

/** One KDF2 step of the chain that also wipes the chaining key it consumed (never a constant one). */
function chain(c: Uint8Array, input: Uint8Array): [Uint8Array, Uint8Array] {
  const out = kdf(2, c, input);
  c.fill(0);
  return out;
}

const mixHash = (h: Uint8Array, data: Uint8Array): Uint8Array => hash(h, data);

function dh(ctx: NoiseContext, priv: Uint8Array, pub: Uint8Array): Uint8Array | null {
  const out = new Uint8Array(32);
  return ctx.suite.x25519(out, priv, pub) ? out : null;
}

function newEphemeral(ctx: NoiseContext): { priv: Uint8Array; pub: Uint8Array } {
  const priv = new Uint8Array(32);
  ctx.random(priv);
  clamp(priv);
  const pub = new Uint8Array(32);
  ctx.suite.x25519Base(pub, priv);
  return { priv, pub };
}

/** Handshake initiation with mac1/mac2 left zero; sets hs to InitiationCreated with the given local index. */
export function createInitiation(ctx: NoiseContext, local: LocalStatic | null, hs: Handshake, localIndex: number): Result<Uint8Array> {
  if (!local) return fail('no-private-key');
  if (!hs.precomputedStaticStatic) return fail('low-order');
  const msg = new Uint8Array(INITIATION_SIZE);
  writeU32(msg, 0, MESSAGE_INITIATION);
  writeU32(msg, Initiation.sender, localIndex);

  let h = mixHash(INITIAL_HASH, hs.remoteStatic);
  const e = newEphemeral(ctx);
  msg.set(e.pub, Initiation.ephemeral);
  let [c] = kdf(1, INITIAL_CHAIN_KEY, e.pub);
  h = mixHash(h, e.pub);

  const es = dh(ctx, e.priv, hs.remoteStatic);
  if (!es) {
    wipe(c, e.priv);
    return fail('low-order');
  }
  let key: Uint8Array;
  [c, key] = chain(c, es);
  wipe(es);
  const encStatic = msg.subarray(Initiation.static, Initiation.static + 48);
  ctx.suite.seal(encStatic, key, 0, 0, local.publicKey, h);
  wipe(key);
  h = mixHash(h, encStatic);

  [c, key] = chain(c, hs.precomputedStaticStatic);
  const encTs = msg.subarray(Initiation.timestamp, Initiation.timestamp + TAI64N_SIZE + 16);
  ctx.suite.seal(encTs, key, 0, 0, tai64n(ctx.clock), h);
  wipe(key);
  h = mixHash(h, encTs);

  hs.clear();
  hs.ephemeralPrivate = e.priv;
  hs.hash = h;
  hs.chainKey = c;
  hs.localIndex = localIndex;
  hs.state = HandshakeState.InitiationCreated;
  return ok(msg);
}

/**
 * Consumes an initiation addressed to us (mac1 already checked). findPeer maps the decrypted static key
 * to that peer's Handshake. Nothing is changed unless every check passes.
 */
export function consumeInitiation(
  ctx: NoiseContext,
  local: LocalStatic | null,
  msg: Uint8Array,
  findPeer: (remoteStatic: Uint8Array) => Handshake | undefined,
): Result<Handshake> {
  if (!local) return fail('no-private-key');
  if (msg.length !== INITIATION_SIZE || readU32(msg, 0) !== MESSAGE_INITIATION) return fail('bad-length');
  const ephemeral = msg.slice(Initiation.ephemeral, Initiation.ephemeral + 32);
  let h = mixHash(local.initialHash, ephemeral);
  let [c] = kdf(1, INITIAL_CHAIN_KEY, ephemeral);

  const es = dh(ctx, local.privateKey, ephemeral);
  if (!es) {
    wipe(c);
    return fail('low-order');
  }
  let key: Uint8Array;
  [c, key] = chain(c, es);
  wipe(es);
  const encStatic = msg.subarray(Initiation.static, Initiation.static + 48);
  const remoteStatic = new Uint8Array(32);
  const opened = ctx.suite.open(remoteStatic, key, 0, 0, encStatic, h);
  wipe(key);
  h = mixHash(h, encStatic);
  const hs = opened ? findPeer(remoteStatic) : undefined;
  if (!hs || !hs.precomputedStaticStatic) {
    wipe(c);
    return fail(!opened ? 'decrypt-failed' : !hs ? 'unknown-peer' : 'low-order');
  }
  [c, key] = chain(c, hs.precomputedStaticStatic);
  const encTs = msg.subarray(Initiation.timestamp, Initiation.timestamp + TAI64N_SIZE + 16);
  const ts = new Uint8Array(TAI64N_SIZE);
  const tsOpened = ctx.suite.open(ts, key, 0, 0, encTs, h);
  wipe(key);
  h = mixHash(h, encTs);

  const now = ctx.clock.now();
  const refused = !tsOpened ? 'decrypt-failed' : !tai64nAfter(ts, hs.lastTimestamp) ? 'stale-timestamp'
    : now - hs.lastInitiationConsumption < INITIATION_INTERVAL ? 'flood' : null;
  if (refused) {
    wipe(c);
    return fail(refused);
  }

  hs.clear();
  hs.lastTimestamp = ts;
  hs.lastInitiationConsumption = now;
  hs.hash = h;
  hs.chainKey = c;
  hs.remoteEphemeral = ephemeral;
  hs.remoteIndex = readU32(msg, Initiation.sender);
  hs.state = HandshakeState.InitiationConsumed;
  return ok(hs);
}

/**
 * The response's key schedule, the same on both sides: mix in the responder's ephemeral, DH(ephemerals) and
 * DH(responder ephemeral, initiator static), then the pre-shared key (whitepaper §5.4.3). Each side
 * computes the two DH values with the private keys it has. null when either DH is all zero.
 */
function mixResponse(
  hs: Handshake, responderEphemeral: Uint8Array, ee: Uint8Array | null, se: Uint8Array | null,
): { h: Uint8Array; c: Uint8Array; key: Uint8Array } | null {
  if (!ee || !se) {
    wipe(ee, se);
    return null;
  }
  let h = mixHash(hs.hash, responderEphemeral);
  // hs.chainKey stays as it is: a response that fails later must leave the handshake untouched.
  const [c1] = kdf(1, hs.chainKey, responderEphemeral);
  const [c2] = kdf(1, c1, ee);
  const [c3] = kdf(1, c2, se);
  const [c, tau, key] = kdf(3, c3, hs.presharedKey);
  h = mixHash(h, tau);
  wipe(c1, c2, c3, tau, ee, se);
  return { h, c, key };
}

/** Handshake response to a consumed initiation, macs left zero; sets hs to ResponseCreated. */
export function createResponse(ctx: NoiseContext, hs: Handshake, localIndex: number): Result<Uint8Array> {
  if (hs.state !== HandshakeState.InitiationConsumed) return fail('wrong-state');
  const msg = new Uint8Array(RESPONSE_SIZE);
  writeU32(msg, 0, MESSAGE_RESPONSE);
  writeU32(msg, Response.sender, localIndex);
  writeU32(msg, Response.receiver, hs.remoteIndex);

  const e = newEphemeral(ctx);
  msg.set(e.pub, Response.ephemeral);
  const mixed = mixResponse(hs, e.pub, dh(ctx, e.priv, hs.remoteEphemeral), dh(ctx, e.priv, hs.remoteStatic));
  if (!mixed) {
    wipe(e.priv);
    return fail('low-order');
  }
  let { h } = mixed;
  const { c: c2, key } = mixed;
  const encEmpty = msg.subarray(Response.empty, Response.empty + 16);
  ctx.suite.seal(encEmpty, key, 0, 0, EMPTY, h);
  wipe(key);
  h = mixHash(h, encEmpty);

  wipe(hs.ephemeralPrivate, hs.hash, hs.chainKey);
  hs.ephemeralPrivate = e.priv;
  hs.hash = h;
  hs.chainKey = c2;
  hs.localIndex = localIndex;
  hs.state = HandshakeState.ResponseCreated;
  return ok(msg);
}

/** Consumes a response (mac1 already checked); findByIndex maps our receiver index to the handshake. */
export function consumeResponse(
  ctx: NoiseContext,
  local: LocalStatic | null,
  msg: Uint8Array,
  findByIndex: (localIndex: number) => Handshake | undefined,
): Result<Handshake> {
  if (!local) return fail('no-private-key');
  if (msg.length !== RESPONSE_SIZE || readU32(msg, 0) !== MESSAGE_RESPONSE) return fail('bad-length');
  const hs = findByIndex(readU32(msg, Response.receiver));
  if (!hs) return fail('unknown-index');
  if (hs.state !== HandshakeState.InitiationCreated) return fail('wrong-state');

  const ephemeral = msg.slice(Response.ephemeral, Response.ephemeral + 32);
  const mixed = mixResponse(hs, ephemeral, dh(ctx, hs.ephemeralPrivate, ephemeral), dh(ctx, local.privateKey, ephemeral));
  if (!mixed) return fail('low-order');
  let { h } = mixed;
  const { c: c2, key } = mixed;
  const encEmpty = msg.subarray(Response.empty, Response.empty + 16);
  const opened = ctx.suite.open(new Uint8Array(0), key, 0, 0, encEmpty, h);
  wipe(key);
  if (!opened) {
    wipe(c2);
    return fail('decrypt-failed');
  }
  h = mixHash(h, encEmpty);

  wipe(hs.hash, hs.chainKey, hs.remoteEphemeral);
  hs.hash = h;
  hs.chainKey = c2;
  hs.remoteEphemeral = ephemeral;
  hs.remoteIndex = readU32(msg, Response.sender);
  hs.state = HandshakeState.ResponseConsumed;
  return ok(hs);
}

export interface SessionKeys {
  sendKey: Uint8Array;
  receiveKey: Uint8Array;
  isInitiator: boolean;
  localIndex: number;
  remoteIndex: number;
}

/** Splits the final chaining key into transport keys and wipes the handshake (whitepaper §5.4.5). */
export function deriveSession(hs: Handshake): Result<SessionKeys> {
  let isInitiator: boolean;
  if (hs.state === HandshakeState.ResponseConsumed) isInitiator = true;
  else if (hs.state === HandshakeState.ResponseCreated) isInitiator = false;
  else return fail('wrong-state');
  const [first, second] = kdf(2, hs.chainKey, EMPTY);
  const keys: SessionKeys = {
    sendKey: isInitiator ? first : second,
    receiveKey: isInitiator ? second : first,
    isInitiator,
    localIndex: hs.localIndex,
    remoteIndex: hs.remoteIndex,
  };
  hs.clear();
  return ok(keys);
}
