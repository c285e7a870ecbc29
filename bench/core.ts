// Protocol-core benchmarks (issue: protocol core): full handshakes per second on one core, and sealing
// 1420-byte packets through our transport wrapper as a fraction of raw sodium-native in the same run.
// Rounds alternate between the two AEAD variants so machine noise hits both alike.

import { defaultSuite, loadSodium } from '../src/crypto/index.js';
import { systemClock } from '../src/clock.js';
import { CookieChecker, CookieGenerator } from '../src/handshake/cookie.js';
import {
  consumeInitiation, consumeResponse, createInitiation, createResponse, deriveSession, Handshake, LocalStatic,
  type NoiseContext,
} from '../src/handshake/noise.js';
import { PacketBuffer, sealPayload } from '../src/dataplane/transport.js';

export interface CoreBenchResult {
  handshakesPerSecond: number;
  sealWrapperGbps: number;
  sealRawGbps: number;
  sealRatio: number;
  packetSize: number;
}

function handshakesPerSecond(seconds: number): number {
  const suite = defaultSuite();
  const ctx: NoiseContext = { suite, clock: systemClock, random: suite.random };
  const key = (n: number) => new Uint8Array(32).fill(n);
  const a = new LocalStatic(suite, key(1));
  const b = new LocalStatic(suite, key(2));
  const checkerB = new CookieChecker(suite, systemClock, suite.random);
  checkerB.setPublicKey(b.publicKey);
  const checkerA = new CookieChecker(suite, systemClock, suite.random);
  checkerA.setPublicKey(a.publicKey);
  const genToB = new CookieGenerator(suite, systemClock, b.publicKey);
  const genToA = new CookieGenerator(suite, systemClock, a.publicKey);
  const hsA = new Handshake(b.publicKey);
  hsA.precompute(suite, a);
  const hsB = new Handshake(a.publicKey);
  hsB.precompute(suite, b);
  let n = 0;
  const start = performance.now();
  const end = start + seconds * 1000;
  while (performance.now() < end) {
    const init = createInitiation(ctx, a, hsA, 1);
    if (!init.ok) throw new Error(init.reason);
    genToB.addMacs(init.value);
    if (!checkerB.checkMac1(init.value)) throw new Error('mac1');
    hsB.lastInitiationConsumption = -Infinity; // the flood limit is per peer; this loop is one peer on purpose
    hsB.lastTimestamp.fill(0);
    const got = consumeInitiation(ctx, b, init.value, () => hsB);
    if (!got.ok) throw new Error(got.reason);
    const resp = createResponse(ctx, hsB, 2);
    if (!resp.ok) throw new Error(resp.reason);
    genToA.addMacs(resp.value);
    if (!checkerA.checkMac1(resp.value)) throw new Error('mac1');
    const done = consumeResponse(ctx, a, resp.value, () => hsA);
    if (!done.ok) throw new Error(done.reason);
    if (!deriveSession(hsA).ok || !deriveSession(hsB).ok) throw new Error('derive');
    n++;
  }
  return n / ((performance.now() - start) / 1000);
}

function sealRates(packetSize: number, rounds: number, perRound: number): { wrapper: number; raw: number } {
  const sodium = loadSodium();
  if (!sodium) throw new Error('sodium-native is not available');
  const suite = defaultSuite();
  const key = Buffer.alloc(32, 7);
  const buf = Buffer.alloc(16 + packetSize + 16);
  const pb = new PacketBuffer(buf);
  const nonce = Buffer.alloc(12);
  const rawOut = Buffer.alloc(packetSize + 16);
  const rawIn = Buffer.alloc(packetSize, 1);
  let tWrap = 0;
  let tRaw = 0;
  for (let r = 0; r < rounds; r++) {
    let t = performance.now();
    for (let i = 0; i < perRound; i++) {
      buf.writeUInt32LE(i, 8);
      sealPayload(suite, key, pb, packetSize, 1420);
    }
    tWrap += performance.now() - t;
    t = performance.now();
    for (let i = 0; i < perRound; i++) {
      nonce.writeUInt32LE(i, 4);
      sodium.crypto_aead_chacha20poly1305_ietf_encrypt(rawOut, rawIn, null, null, nonce, key);
    }
    tRaw += performance.now() - t;
  }
  const bits = rounds * perRound * packetSize * 8;
  return { wrapper: bits / (tWrap / 1000) / 1e9, raw: bits / (tRaw / 1000) / 1e9 };
}

export function runCoreBench(quick = false): CoreBenchResult {
  const packetSize = 1420;
  sealRates(packetSize, 2, 5_000); // warm-up for the JIT
  const seal = sealRates(packetSize, quick ? 4 : 20, 20_000);
  return {
    handshakesPerSecond: handshakesPerSecond(quick ? 1 : 3),
    sealWrapperGbps: seal.wrapper,
    sealRawGbps: seal.raw,
    sealRatio: seal.wrapper / seal.raw,
    packetSize,
  };
}
