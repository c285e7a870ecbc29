// The cipher suites: known answers for BLAKE2s and X25519, and sodium-native vs the @noble fallback producing
// byte-identical output for every primitive the protocol uses.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hash, hmac, kdf, mac } from '../../src/crypto/blake2s.js';
import { loadSodium } from '../../src/crypto/index.js';
import { makeNobleSuite } from '../../src/crypto/noble.js';
import { makeSodiumSuite } from '../../src/crypto/sodium.js';
import { clamp } from '../../src/crypto/suite.js';
import { seededRandom } from '../../src/clock.js';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const unhex = (s: string) => new Uint8Array(Buffer.from(s, 'hex'));
const enc = new TextEncoder();

const sodium = loadSodium();
test('sodium-native loads on this machine (the data path depends on it)', () => {
  assert.ok(sodium, 'sodium-native failed to load');
});
const native = makeSodiumSuite(sodium!);
const noble = makeNobleSuite();

test('BLAKE2s known answers (RFC 7693 "abc") and the WireGuard construction constants', () => {
  assert.equal(hex(hash(enc.encode('abc'))), '508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982');
  const ck = hash(enc.encode('Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s'));
  assert.equal(hex(ck), '60e26daef327efc02ec335e2a025d2d016eb4206f87277f52d38d1988b78cd36');
  assert.equal(hex(hash(ck, enc.encode('WireGuard v1 zx2c4 Jason@zx2c4.com'))),
    '2211b361081ac566691243db458ad5322d9c6c662293e8b70ee19c65ba079ef3');
  assert.equal(mac(new Uint8Array(32), enc.encode('x')).length, 16);
});

test('BLAKE2s, keyed MAC and HMAC are byte-identical to @noble/hashes for every length 0..300 and key 1..32', async () => {
  const { blake2s } = await import('@noble/hashes/blake2.js');
  const { hmac: nobleHmac } = await import('@noble/hashes/hmac.js');
  let seed = 7;
  const bytes = (n: number): Uint8Array => Uint8Array.from({ length: n }, () => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24);
  for (let len = 0; len <= 300; len++) {
    const msg = bytes(len);
    const key = bytes(1 + (len % 32));
    assert.deepEqual(hash(msg), blake2s(msg), `hash, ${len} bytes`);
    assert.deepEqual(mac(key, msg), blake2s(msg, { key, dkLen: 16 }), `mac, ${len} bytes, ${key.length}-byte key`);
    assert.deepEqual(hmac(key, msg), nobleHmac(blake2s, key, msg), `hmac, ${len} bytes`);
    // Split updates land on every block boundary.
    const cut = len >> 1;
    assert.deepEqual(hash(msg.subarray(0, cut), msg.subarray(cut)), blake2s(msg), `hash in two parts, ${len} bytes`);
  }
});

test('KDF chain: KDFn outputs are prefixes of each other and differ per counter', () => {
  const key = hash(enc.encode('key'));
  const input = enc.encode('input');
  const [a1] = kdf(1, key, input);
  const [b1, b2] = kdf(2, key, input);
  const [c1, c2, c3] = kdf(3, key, input);
  assert.deepEqual(a1, b1);
  assert.deepEqual(b1, c1);
  assert.deepEqual(b2, c2);
  assert.notDeepEqual(c2, c3);
  // T1 = HMAC(HMAC(key, input), 0x1) by definition.
  assert.deepEqual(a1, hmac(hmac(key, input), Uint8Array.of(1)));
});

test('X25519 RFC 7748 section 6.1 vectors, both suites', () => {
  const aPriv = unhex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a');
  const bPub = unhex('de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f');
  for (const s of [native, noble]) {
    const pub = new Uint8Array(32);
    s.x25519Base(pub, clamp(Uint8Array.from(aPriv)));
    assert.equal(hex(pub), '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a', s.name);
    const shared = new Uint8Array(32);
    assert.ok(s.x25519(shared, aPriv, bPub));
    assert.equal(hex(shared), '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742', s.name);
  }
});

test('X25519 with a low-order public key reports failure in both suites', () => {
  const priv = clamp(unhex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a'));
  const lowOrder = [
    new Uint8Array(32), // 0
    unhex('0100000000000000000000000000000000000000000000000000000000000000'), // 1
    unhex('e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800'), // order 8
  ];
  for (const s of [native, noble]) {
    for (const p of lowOrder) {
      const out = new Uint8Array(32).fill(7);
      assert.equal(s.x25519(out, priv, p), false, `${s.name} accepted a low-order point`);
    }
  }
});

test('sodium-native and noble are byte-identical for seal/open/xseal/xopen/x25519 on random inputs', () => {
  const rnd = seededRandom(42);
  for (let i = 0; i < 200; i++) {
    const key = new Uint8Array(32);
    rnd(key);
    const len = [0, 1, 15, 16, 17, 64, 1420, 1500][i % 8];
    const pt = new Uint8Array(len);
    rnd(pt);
    const ad = i % 2 ? new Uint8Array(32).fill(i) : null;
    const lo = (i * 2654435761) >>> 0;
    const hi = i % 3 === 0 ? 0xffffffff : i;
    const c1 = new Uint8Array(len + 16);
    const c2 = new Uint8Array(len + 16);
    assert.equal(native.seal(c1, key, lo, hi, pt, ad), len + 16);
    assert.equal(noble.seal(c2, key, lo, hi, pt, ad), len + 16);
    assert.deepEqual(c1, c2);
    for (const s of [native, noble]) {
      const out = new Uint8Array(len);
      assert.ok(s.open(out, key, lo, hi, c1, ad));
      assert.deepEqual(out, pt);
      const bad = Uint8Array.from(c1);
      bad[i % bad.length] ^= 1;
      assert.equal(s.open(out, key, lo, hi, bad, ad), false, `${s.name} opened a tampered message`);
      assert.equal(s.open(out, key, lo + 1, hi, c1, ad), false, `${s.name} opened with the wrong nonce`);
    }
    const nonce = new Uint8Array(24);
    rnd(nonce);
    const adx = new Uint8Array(16).fill(3);
    const x1 = new Uint8Array(len + 16);
    const x2 = new Uint8Array(len + 16);
    native.xseal(x1, key, nonce, pt, adx);
    noble.xseal(x2, key, nonce, pt, adx);
    assert.deepEqual(x1, x2);
    const back = new Uint8Array(len);
    assert.ok(noble.xopen(back, key, nonce, x1, adx));
    assert.deepEqual(back, pt);
    assert.equal(native.xopen(back, key, nonce, x1, new Uint8Array(16)), false);

    const priv = clamp(Uint8Array.from(key));
    const p1 = new Uint8Array(32);
    const p2 = new Uint8Array(32);
    native.x25519Base(p1, priv);
    noble.x25519Base(p2, priv);
    assert.deepEqual(p1, p2);
    const other = new Uint8Array(32);
    rnd(other);
    const s1 = new Uint8Array(32);
    const s2 = new Uint8Array(32);
    assert.equal(native.x25519(s1, priv, other), noble.x25519(s2, priv, other));
    assert.deepEqual(s1, s2);
  }
});

test('in-place seal and open (the data path seals packets where they lie)', () => {
  for (const s of [native, noble]) {
    const key = new Uint8Array(32).fill(9);
    const buf = new Uint8Array(100 + 16);
    for (let i = 0; i < 100; i++) buf[i] = i;
    const expect = new Uint8Array(116);
    s.seal(expect, key, 5, 0, buf.slice(0, 100), null);
    s.seal(buf, key, 5, 0, buf.subarray(0, 100), null);
    assert.deepEqual(buf, expect, s.name);
    assert.ok(s.open(buf.subarray(0, 100), key, 5, 0, buf, null));
    assert.deepEqual(buf.subarray(0, 100), Uint8Array.from({ length: 100 }, (_, i) => i));
  }
});

test('the process picks its suite as crypto/index.ts loads: sodium-native, or the pure-JS one with WGTS_CRYPTO=noble', async () => {
  const { spawnSync } = await import('node:child_process');
  const index = new URL('../../src/crypto/index.js', import.meta.url).href;
  const pick = (env: NodeJS.ProcessEnv): string => {
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', `const m = await import(${JSON.stringify(index)}); console.log(m.defaultSuite().name)`], { encoding: 'utf8', env, timeout: 20_000 });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout.trim();
  };
  const env = { ...process.env };
  delete env.WGTS_CRYPTO;
  assert.equal(pick(env), native.name);
  assert.equal(pick({ ...env, WGTS_CRYPTO: 'noble' }), noble.name);
  assert.notEqual(native.name, noble.name);
});

test('both suites draw random bytes: distinct draws, every byte value seen, the whole buffer filled', () => {
  for (const suite of [native, noble]) {
    const a = new Uint8Array(32);
    const b = new Uint8Array(32);
    suite.random(a);
    suite.random(b);
    assert.notDeepEqual(a, b, suite.name);
    const seen = new Set<number>();
    const big = new Uint8Array(65536);
    suite.random(big);
    for (const x of big) seen.add(x);
    assert.equal(seen.size, 256, `${suite.name}: 64 KiB hold every byte value`);
    assert.ok(big.subarray(65536 - 32).some((x) => x !== 0), `${suite.name}: the tail is filled`);
    // Views into a larger buffer are filled in place, not copied (the index table's and handshakes' scratch).
    const outer = new Uint8Array(48);
    suite.random(outer.subarray(8, 40));
    assert.ok(outer.subarray(0, 8).every((x) => x === 0) && outer.subarray(40).every((x) => x === 0), suite.name);
    assert.ok(outer.subarray(8, 40).some((x) => x !== 0), suite.name);
  }
});
