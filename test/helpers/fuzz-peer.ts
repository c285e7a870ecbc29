// The fuzzer of the daemon's UDP receive paths (issue 5 item 1), run as a child process inside a test
// namespace (`ip netns exec`). It is a configured peer of the target daemon: it holds real keys, so it can
// build valid messages with correct macs (and mac2 once the target sends it a cookie) and then mutate them:
//  1. response phase: the target initiates to us; we withhold our response and instead send mutations of it
//     (macs recomputed, so they reach the Noise code with the target's handshake still pending) and of a valid
//     cookie reply; then the real response completes the handshake.
//  2. main phase: random datagrams, typed random ones, and mutations of our valid initiations, data messages,
//     cookie replies and a captured corpus (the real peer's traffic), at a paced rate in waves high enough to
//     put the target under load and low enough to let it do full handshake processing; meanwhile fresh valid
//     initiations (handshake churn) and echo requests through the tunnel, whose replies prove the target
//     keeps serving us.
//  3. a final liveness check: echo requests after the fuzzing stopped must be answered.
// Config: the first stdin line (JSON, throwaway test key). Output: JSON lines on stdout, the last one `done`.

import { createSocket, type RemoteInfo } from 'node:dgram';
import { createInterface } from 'node:readline';
import { systemClock, systemRandom } from '../../src/clock.js';
import { MAC_SIZE, MESSAGE_COOKIE_REPLY, MESSAGE_DATA, MESSAGE_INITIATION, MESSAGE_RESPONSE } from '../../src/constants.js';
import { defaultSuite } from '../../src/crypto/index.js';
import { mac } from '../../src/crypto/blake2s.js';
import { cookieKey, mac1Key, sourceBytes } from '../../src/handshake/cookie.js';
import { CookieReply, readU32, writeU32 } from '../../src/handshake/messages.js';
import { createInitiation, Handshake, LocalStatic, type NoiseContext } from '../../src/handshake/noise.js';
import { Device } from '../../src/device.js';
import { formatIP, parseIP } from '../../src/ip.js';
import { keyFromBase64 } from '../../src/keys.js';
import { buildEchoRequest, parseIcmpEcho } from '../interop/wgts-udp-peer.js';
import { handshakeShaped, mutate, randomDatagram, Rng, typedRandom } from './fuzz.js';

export interface FuzzPeerConfig {
  seed: number;
  /** Ours (base64, throwaway). */
  privateKey: string;
  target: { publicKey: string; addr: string; port: number; tunnelAddr: string };
  bind: { addr: string; port: number };
  /** Our inner address: the target allows it for us and routes it back to us. */
  tunnelAddr: string;
  /** Hex datagrams captured between the target and its real peer. */
  corpus: string[];
  /** How long to wait for the target's first initiation. */
  waitInitiationMs: number;
  responsePhaseMs: number;
  durationMs: number;
  /** Inputs per second in the high and low waves. */
  highPps: number;
  lowPps: number;
}

export interface FuzzSummary {
  seed: number;
  total: number;
  byKind: Record<string, number>;
  byMutation: Record<string, number>;
  macsFixed: number;
  withMac2: number;
  validInitiations: number;
  echoSent: number;
  echoReplies: number;
  cookiesReceived: number;
  cookiesOpened: number;
  sendErrors: number;
  finalEchoSent: number;
  finalEchoReplies: number;
  responsePhase: { targetInitiations: number; inputs: number };
}

const BURST = 3000;
const emit = (ev: Record<string, unknown>): void => void process.stdout.write(`${JSON.stringify(ev)}\n`);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const inc = (o: Record<string, number>, k: string): void => void (o[k] = (o[k] ?? 0) + 1);

async function main(cfg: FuzzPeerConfig): Promise<void> {
  const rng = new Rng(cfg.seed);
  const suite = defaultSuite();
  const ctx: NoiseContext = { suite, clock: systemClock, random: systemRandom };
  const targetPub = keyFromBase64(cfg.target.publicKey);
  const targetAddr = parseIP(cfg.target.addr)!;
  const self = parseIP(cfg.tunnelAddr)!;
  const targetInner = parseIP(cfg.target.tunnelAddr)!;
  const sum: FuzzSummary = {
    seed: cfg.seed, total: 0, byKind: {}, byMutation: {}, macsFixed: 0, withMac2: 0, validInitiations: 0, echoSent: 0,
    echoReplies: 0, cookiesReceived: 0, cookiesOpened: 0, sendErrors: 0, finalEchoSent: 0, finalEchoReplies: 0,
    responsePhase: { targetInitiations: 0, inputs: 0 },
  };

  const sock = createSocket('udp4');
  let inflight = 0;
  const send = (d: Uint8Array): void => {
    inflight++;
    sock.send(d, cfg.target.port, cfg.target.addr, (err) => {
      inflight--;
      if (err) sum.sendErrors++;
    });
  };

  // ---- our protocol peer: a Device whose responses we may hold back, and what it sends as a corpus ----
  let holdResponses = true;
  let heldResponse: Uint8Array | null = null;
  const ownData: Uint8Array[] = [];
  const ownInitiations: Uint8Array[] = [];
  const device = new Device({
    io: {
      send: (d) => {
        const copy = Uint8Array.from(d);
        if (copy[0] === MESSAGE_RESPONSE && holdResponses) {
          heldResponse = copy;
          return;
        }
        if (copy[0] === MESSAGE_DATA && copy.length > 32) keep(ownData, copy, 64);
        if (copy[0] === MESSAGE_INITIATION) keep(ownInitiations, copy, 16);
        send(copy);
      },
      deliver: (pkt) => {
        const e = parseIcmpEcho(pkt);
        if (e?.type === 0 && e.src === cfg.target.tunnelAddr) echoReplies++;
      },
    },
  });
  device.setPrivateKey(keyFromBase64(cfg.privateKey));
  const peer = device.addPeer(targetPub)!;
  peer.endpoint = { addr: targetAddr, port: cfg.target.port };
  device.allowedIps.insert(targetInner, 32, peer);
  let echoReplies = 0;
  let echoSeq = 0;
  const ping = (): void => {
    device.sendPacket(buildEchoRequest(self, targetInner, 0x5a5a, ++echoSeq & 0xffff));
  };

  // ---- macs as the target checks them; mac2 once a cookie reply of the target's has been opened ----
  const m1key = mac1Key(targetPub);
  const ckey = cookieKey(targetPub);
  const stamped = new Map<number, Uint8Array>(); // sender index -> mac1, to open the cookie replies they draw
  let cookie: Uint8Array | null = null;
  const fixMacs = (m: Uint8Array): void => {
    const off1 = m.length - 2 * MAC_SIZE;
    const m1 = mac(m1key, m.subarray(0, off1));
    m.set(m1, off1);
    if (stamped.size > 4096) stamped.clear();
    stamped.set(readU32(m, 4), m1);
    m.set(cookie ? mac(cookie, m.subarray(0, m.length - MAC_SIZE)) : new Uint8Array(MAC_SIZE), m.length - MAC_SIZE);
    if (cookie) sum.withMac2++;
    sum.macsFixed++;
  };
  const openCookie = (reply: Uint8Array): boolean => {
    const m1 = stamped.get(readU32(reply, CookieReply.receiver));
    if (!m1) return false;
    const out = new Uint8Array(MAC_SIZE);
    const nonce = reply.subarray(CookieReply.nonce, CookieReply.nonce + 24);
    if (!suite.xopen(out, ckey, nonce, reply.subarray(CookieReply.cookie), m1)) return false;
    cookie = out;
    return true;
  };

  // Fresh valid initiations of our own making (not the Device's, which rate-limits itself): handshake churn.
  const local = new LocalStatic(suite, keyFromBase64(cfg.privateKey));
  const crafted = new Handshake(targetPub);
  crafted.precompute(suite, local);
  const craftInitiation = (): Uint8Array | null => {
    const r = createInitiation(ctx, local, crafted, rng.u32() || 1);
    if (!r.ok) return null;
    fixMacs(r.value);
    return r.value;
  };

  let targetInit: { msg: Uint8Array; from: RemoteInfo } | null = null;
  let cookieBase: Uint8Array | null = null;
  sock.on('message', (msg: Buffer, rinfo: RemoteInfo) => {
    const m = new Uint8Array(msg.buffer, msg.byteOffset, msg.length);
    const from = { addr: parseIP(rinfo.address)!, port: rinfo.port };
    if (m[0] === MESSAGE_COOKIE_REPLY && m.length === 64) {
      sum.cookiesReceived++;
      if (openCookie(m)) sum.cookiesOpened++;
    }
    if (m[0] === MESSAGE_INITIATION) {
      sum.responsePhase.targetInitiations++;
      targetInit = { msg: Uint8Array.from(m), from: rinfo };
      // A valid cookie reply to the target's own initiation (it holds the handshake that can open it).
      cookieBase = device.checker.createReply(m, sourceBytes(from.addr, from.port));
    }
    device.receive(m, from);
  });
  sock.on('error', (e) => {
    emit({ ev: 'error', where: 'socket', message: e.message });
    process.exit(1);
  });
  await new Promise<void>((r) => sock.bind({ address: cfg.bind.addr, port: cfg.bind.port, exclusive: true }, r));
  const tick = setInterval(() => device.tick(), 20);
  emit({ ev: 'ready', port: sock.address().port });

  // ---- 1. response phase ----
  const until = Date.now() + cfg.waitInitiationMs;
  while (!targetInit && Date.now() < until) await sleep(20);
  if (!targetInit || !heldResponse) {
    emit({ ev: 'error', where: 'response-phase', message: `no initiation from the target within ${cfg.waitInitiationMs} ms` });
    process.exit(1);
  }
  emit({ ev: 'phase', name: 'response' });
  const respEnd = Date.now() + cfg.responsePhaseMs;
  let sentValidCookie = false;
  while (Date.now() < respEnd) {
    for (let i = 0; i < 20; i++) {
      const useCookie = cookieBase && rng.chance(0.3);
      const base = useCookie ? cookieBase! : heldResponse!;
      // Never the exact held response: that would complete the handshake the phase keeps pending.
      const { data, op } = mutate(rng, base, useCookie ? undefined : rng.pick(['bitflip', 'bitflips', 'byteset', 'splice', 'tail', 'zero-run', 'counter'] as const));
      // A response whose bytes 8..59 (receiver, ephemeral, sealed empty) are intact is still valid if its mac1
      // is (or is fixed): Noise does not cover the sender index, and mac2 is only checked under load. Such a
      // mutation would complete the handshake this phase keeps pending, so its ephemeral is damaged too.
      if (!useCookie && sameNoiseBody(data, base)) data[12 + rng.int(48)] ^= 1 << rng.int(8);
      if (!useCookie && handshakeShaped(data) && rng.chance(0.7)) fixMacs(data);
      inc(sum.byMutation, op);
      inc(sum.byKind, useCookie ? 'mutated-cookie-reply' : 'mutated-response');
      send(data);
      sum.responsePhase.inputs++;
    }
    if (cookieBase && !sentValidCookie && rng.chance(0.01)) {
      send(cookieBase);
      sentValidCookie = true;
      inc(sum.byKind, 'valid-cookie-reply');
    }
    await sleep(2);
  }
  holdResponses = false;
  send(heldResponse!);
  inc(sum.byKind, 'valid-response');
  sum.total += sum.responsePhase.inputs + 1 + (sentValidCookie ? 1 : 0);

  // ---- 2. main phase ----
  emit({ ev: 'phase', name: 'main' });
  const corpus = cfg.corpus.map((h) => Uint8Array.from(Buffer.from(h, 'hex')));
  const bases = (): Uint8Array[][] => [ownData, ownInitiations, corpus, cookieBase ? [cookieBase] : [], heldResponse ? [heldResponse] : []];
  const start = Date.now();
  const end = start + cfg.durationMs;
  let lastPing = 0;
  let lastInit = 0;
  let lastBurst = 0;
  const ownInitiationsCrafted: Uint8Array[] = [];
  let lastProgress = start;
  let budget = 0;
  let lastBudgetAt = start;
  while (Date.now() < end) {
    const now = Date.now();
    // Waves: 3 s at the high rate (cookies, ratelimiter, queue limits), 2 s at the low one (full processing).
    const high = (now - start) % 5000 < 3000;
    budget = Math.min(budget + ((now - lastBudgetAt) * (high ? cfg.highPps : cfg.lowPps)) / 1000, 2000);
    lastBudgetAt = now;
    if (now - lastPing >= 100) {
      lastPing = now;
      ping();
      sum.echoSent++;
    }
    if (high && now - lastBurst >= 5000 && ownInitiationsCrafted.length) {
      // A burst of initiations whose mac1 verifies but whose sealed static key does not: each costs the target
      // a DH, so its handshake queue backs up, it goes under load and must answer with cookie replies (which
      // we open, after which our macs carry a valid mac2 and meet the ratelimiter instead).
      lastBurst = now;
      for (let i = 0; i < BURST; i++) {
        const m = Uint8Array.from(rng.pick(ownInitiationsCrafted));
        m[40 + rng.int(48)] ^= 1 << rng.int(8);
        writeU32(m, 4, rng.u32());
        fixMacs(m);
        send(m);
      }
      sum.total += BURST;
      sum.byKind['under-load-burst'] = (sum.byKind['under-load-burst'] ?? 0) + BURST;
    }
    if (now - lastInit >= 50) {
      lastInit = now;
      const init = craftInitiation();
      if (init) {
        keep(ownInitiationsCrafted, init, 16);
        send(init);
        sum.validInitiations++;
      }
    }
    while (budget >= 1 && inflight < 1024) {
      budget--;
      sum.total++;
      const r = rng.u32() % 100;
      if (r < 12) {
        inc(sum.byKind, 'random');
        send(randomDatagram(rng));
      } else if (r < 24) {
        inc(sum.byKind, 'typed-random');
        send(typedRandom(rng));
      } else if (r < 28 && ownData.length) {
        inc(sum.byKind, 'replayed-data');
        send(rng.pick(ownData));
      } else {
        const pool = bases().filter((p) => p.length);
        const src = rng.pick(pool);
        const { data, op } = mutate(rng, rng.pick(src));
        inc(sum.byMutation, op);
        inc(sum.byKind, src === corpus ? 'mutated-corpus' : 'mutated-own');
        if (handshakeShaped(data) && rng.chance(0.5)) fixMacs(data);
        send(data);
      }
    }
    if (now - lastProgress >= 1000) {
      lastProgress = now;
      emit({ ev: 'progress', t: now - start, total: sum.total, echoSent: sum.echoSent, echoReplies, cookiesOpened: sum.cookiesOpened });
    }
    await new Promise((r) => setImmediate(r));
  }
  sum.echoReplies = echoReplies;

  // ---- 3. after: our session with the target must still carry traffic ----
  emit({ ev: 'phase', name: 'final' });
  await sleep(500);
  const before = echoReplies;
  for (let i = 0; i < 10; i++) {
    ping();
    sum.finalEchoSent++;
    await sleep(100);
  }
  for (let i = 0; i < 40 && echoReplies - before < sum.finalEchoSent; i++) await sleep(50);
  sum.finalEchoReplies = echoReplies - before;
  clearInterval(tick);
  emit({ ev: 'done', summary: sum, peerEndpoint: peer.endpoint && `${formatIP(peer.endpoint.addr)}:${peer.endpoint.port}` });
  sock.close();
}

/** Responses equal where the responder's Noise state is checked (receiver index to the sealed empty payload). */
function sameNoiseBody(m: Uint8Array, base: Uint8Array): boolean {
  if (m.length !== base.length) return false;
  for (let i = 8; i < 60; i++) if (m[i] !== base[i]) return false;
  return true;
}

function keep(list: Uint8Array[], m: Uint8Array, max: number): void {
  list.push(m);
  if (list.length > max) list.shift();
}

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
lines.next().then(async (first) => {
  if (first.done) throw new Error('expected the config as the first stdin line');
  await main(JSON.parse(first.value) as FuzzPeerConfig);
  process.exit(0);
}).catch((e: unknown) => {
  emit({ ev: 'error', where: 'main', message: e instanceof Error ? e.stack ?? e.message : String(e) });
  process.exit(1);
});
