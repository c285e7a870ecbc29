// Offline interop with the real wireguard-go, from a recorded exchange (test/fixtures/wggo-handshake.json):
// its initiation verifies and decrypts with our code, a Device with the same keys and seeded randomness
// makes the byte-identical response wireguard-go accepted, and its transport data then decrypts.
//
// Regenerate the fixture (root; needs wireguard-go, wireguard-tools, iproute2, iputils-ping):
//   cd /work/main && npx tsc -p . && node dist/test/interop/capture-wggo.js
// It runs wireguard-go and our Device in throw-away namespaces (test/interop/wggo-peer.ts), pings from the
// wireguard-go side, and waits ~12 s for wireguard-go's passive keepalive before writing the file.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { FakeClock, seededRandom } from '../../src/clock.js';
import { defaultSuite } from '../../src/crypto/index.js';
import type { Device } from '../../src/device.js';
import { Initiation, Response, readU32 } from '../../src/handshake/messages.js';
import { consumeInitiation, Handshake, LocalStatic } from '../../src/handshake/noise.js';
import { parseIP } from '../../src/ip.js';
import { keyFromBase64 } from '../../src/keys.js';
import type { Endpoint } from '../../src/peer.js';
import {
  buildDevice, echoReplyFor, parseEndpoint, parseIcmpEcho, type ChildConfig,
} from '../interop/wgts-udp-peer.js';

interface Side {
  privateKey: string;
  publicKey: string;
  tunnel: string;
  endpoint: string;
}
interface Fixture {
  wireguardGoVersion: string;
  capturedAt: string;
  seed: number;
  wgts: Side;
  wggo: Side;
  initiation: string;
  response: string;
  transport: { kind: 'data' | 'keepalive'; hex: string }[];
  wgtsTransport: string[];
  echoRequestSeqs: number[];
}

// From dist/test/unit/ to the source tree's fixture (fixtures are not copied into dist).
const fx = JSON.parse(readFileSync(new URL('../../../test/fixtures/wggo-handshake.json', import.meta.url), 'utf8')) as Fixture;
const bytes = (hex: string): Uint8Array => new Uint8Array(Buffer.from(hex, 'hex'));
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const initiation = bytes(fx.initiation);
const wggoEndpoint: Endpoint = parseEndpoint(fx.wggo.endpoint);
const wggoPublic = keyFromBase64(fx.wggo.publicKey);
const ourTunnel = parseIP(fx.wgts.tunnel)!;

/** Our side exactly as the capture's child built it (same config, same seed, same call order). */
function ourDevice(): { device: Device; sent: Uint8Array[]; delivered: Uint8Array[] } {
  const sent: Uint8Array[] = [];
  const delivered: Uint8Array[] = [];
  const cfg: ChildConfig = {
    listen: { addr: '0.0.0.0', port: 0 }, // buildDevice ignores it: the socket is the child's business
    privateKey: fx.wgts.privateKey,
    tunnelAddr: fx.wgts.tunnel,
    peer: { publicKey: fx.wggo.publicKey, endpoint: fx.wggo.endpoint, allowedIps: [`${fx.wggo.tunnel}/32`] },
    seed: fx.seed,
  };
  const { device } = buildDevice(cfg, {
    send: (d) => void sent.push(Uint8Array.from(d)),
    deliver: (p) => void delivered.push(Uint8Array.from(p)),
  }, new FakeClock());
  return { device, sent, delivered };
}

test('fixture is a wireguard-go capture with the expected shape', () => {
  assert.match(fx.wireguardGoVersion, /^wireguard-go v\d/);
  assert.equal(initiation.length, 148);
  assert.equal(bytes(fx.response).length, 92);
  assert.ok(fx.transport.some((t) => t.kind === 'data'), 'at least one data datagram');
  assert.ok(fx.transport.some((t) => t.kind === 'keepalive'), 'wireguard-go\'s passive keepalive');
  assert.deepEqual(bytes(fx.initiation).subarray(Initiation.mac2), new Uint8Array(16), 'no cookie: mac2 is zero');
});

test('(a) mac1 of wireguard-go\'s initiation verifies against our public key, and only ours', () => {
  const { device } = ourDevice();
  assert.equal(device.checker.checkMac1(initiation), true);
  // mac1 is keyed by the recipient's public key: wireguard-go's own key must not verify it.
  const other = buildDevice({ listen: { addr: '0.0.0.0', port: 0 }, privateKey: fx.wggo.privateKey, tunnelAddr: fx.wggo.tunnel,
    peer: { publicKey: fx.wgts.publicKey, allowedIps: [] } }, { send() {}, deliver() {} }, new FakeClock()).device;
  assert.equal(other.checker.checkMac1(initiation), false);
});

test('(b) consumeInitiation decrypts wireguard-go\'s static key and a sane TAI64N timestamp', () => {
  const suite = defaultSuite();
  const local = new LocalStatic(suite, keyFromBase64(fx.wgts.privateKey));
  assert.equal(Buffer.from(local.publicKey).toString('base64'), fx.wgts.publicKey);
  let seen: Uint8Array | undefined;
  let hs: Handshake | undefined;
  const r = consumeInitiation({ suite, clock: new FakeClock(), random: seededRandom(1) }, local, initiation, (pub) => {
    seen = Uint8Array.from(pub);
    hs = new Handshake(pub);
    hs.precompute(suite, local);
    return hs;
  });
  assert.equal(r.ok, true, r.ok ? '' : r.reason);
  assert.deepEqual(seen, wggoPublic);
  assert.equal(hs!.remoteIndex, readU32(initiation, Initiation.sender));

  const ts = new DataView(hs!.lastTimestamp.buffer, hs!.lastTimestamp.byteOffset, 12);
  const sec = ts.getBigUint64(0, false) - (1n << 62n);
  const nsec = ts.getUint32(8, false);
  const when = Number(sec) * 1000;
  assert.ok(when > Date.UTC(2020, 0, 1) && when < Date.UTC(2100, 0, 1), `timestamp ${new Date(when).toISOString()}`);
  assert.ok(Math.abs(when - Date.parse(fx.capturedAt)) < 3600_000, 'taken around the capture');
  assert.ok(nsec < 1e9);
  assert.equal(nsec & 0xffffff, 0, 'wireguard-go rounds the nanoseconds down to 2^24 ns, as we do');
});

test('(c) the same keys and seed reproduce our recorded response byte for byte', () => {
  const { device, sent } = ourDevice();
  assert.equal(device.receive(initiation, wggoEndpoint), null);
  assert.equal(sent.length, 1);
  assert.equal(hex(sent[0]), fx.response);
  assert.equal(readU32(sent[0], Response.receiver), readU32(initiation, Initiation.sender));
});

test('(d) wireguard-go\'s transport data decrypts to its echo requests (it accepted our response)', () => {
  const { device, sent, delivered } = ourDevice();
  assert.equal(device.receive(initiation, wggoEndpoint), null);
  const responderIndex = readU32(sent[0], Response.sender);
  const replies: Uint8Array[] = [];
  for (const t of fx.transport) {
    const d = bytes(t.hex);
    assert.equal(readU32(d, 4), responderIndex, 'addressed to the index our response announced');
    const before = delivered.length;
    assert.equal(device.receive(d, wggoEndpoint), null);
    assert.equal(delivered.length - before, t.kind === 'keepalive' ? 0 : 1);
    if (t.kind === 'data') {
      const pkt = delivered[delivered.length - 1];
      const e = parseIcmpEcho(pkt);
      assert.ok(e, `an ICMP echo: ${hex(pkt)}`);
      assert.deepEqual({ type: e.type, src: e.src, dst: e.dst, ok: e.checksumsOk }, { type: 8, src: fx.wggo.tunnel, dst: fx.wgts.tunnel, ok: true });
      replies.push(echoReplyFor(pkt, ourTunnel)!);
    }
  }
  assert.deepEqual(delivered.map((p) => parseIcmpEcho(p)!.seq), fx.echoRequestSeqs);
  assert.equal(device.receive(bytes(fx.transport[0].hex), wggoEndpoint), 'replay');

  // Our echo replies, encrypted again with the same session, are the datagrams wireguard-go accepted.
  const sentBefore = sent.length;
  for (const r of replies) assert.equal(device.sendPacket(r), null);
  assert.deepEqual(sent.slice(sentBefore).map(hex), fx.wgtsTransport);
});

test('(e) a bit-flipped initiation fails mac1; a replayed one has a stale timestamp', () => {
  const { device, sent } = ourDevice();
  for (const at of [Initiation.ephemeral, Initiation.static + 3, Initiation.timestamp + 20, Initiation.mac1 + 15]) {
    const bad = Uint8Array.from(initiation);
    bad[at] ^= 0x01;
    assert.equal(device.receive(bad, wggoEndpoint), 'bad-mac1', `bit flipped at byte ${at}`);
  }
  assert.equal(sent.length, 0);
  assert.equal(device.receive(initiation, wggoEndpoint), null);
  assert.equal(device.receive(initiation, wggoEndpoint), 'stale-timestamp');
  assert.equal(sent.length, 1, 'no second response to a replay');
});
