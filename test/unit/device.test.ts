// Two in-process devices over the in-memory network: handshake, transport both ways, keypair confirmation,
// rekey and reject-after limits on the fake clock, roaming, the allowed-IPs source check and the timers.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Network, pair, key } from '../helpers/net.js';
import { ipv4 } from '../helpers/packets.js';
import { readU32 } from '../../src/handshake/messages.js';
import { REJECT_AFTER_MESSAGES, REKEY_AFTER_MESSAGES } from '../../src/constants.js';
import { loadSodium } from '../../src/crypto/index.js';
import { makeNobleSuite } from '../../src/crypto/noble.js';
import { makeSodiumSuite } from '../../src/crypto/sodium.js';

const typeOf = (d: { data: Uint8Array }) => readU32(d.data, 0);

function established() {
  const net = new Network();
  const p = pair(net, key(1), key(2));
  assert.equal(p.a.device.sendPacket(ipv4('203.0.113.1', '203.0.113.2')), null);
  net.run();
  return { net, ...p };
}

test('handshake then transport both ways; the responder keypair waits for confirmation', () => {
  const net = new Network();
  const { a, b, pa, pb } = pair(net, key(1), key(2));
  const pkt = ipv4('203.0.113.1', '203.0.113.2', new Uint8Array(100).fill(0xab));
  assert.equal(a.device.sendPacket(pkt), null);
  assert.equal(pa.staged.size, 1, 'packet staged while the handshake runs');
  assert.deepEqual(a.sent.map(typeOf), [1]);

  // Deliver just the initiation: b answers and holds its keypair as "next".
  net.run(1);
  assert.deepEqual(b.sent.map(typeOf), [2]);
  assert.ok(pb.keypairs.next && !pb.keypairs.current);

  // The response: a derives keys, flushes the staged packet; b confirms on receipt.
  net.run();
  assert.equal(pa.staged.size, 0);
  assert.ok(pa.keypairs.current?.isInitiator);
  assert.ok(pb.keypairs.current && !pb.keypairs.next, 'first data packet confirms the responder keypair');
  assert.equal(b.delivered.length, 1);
  assert.deepEqual(b.delivered[0].packet, pkt);
  assert.equal(b.delivered[0].peer, pb);

  // And back.
  const reply = ipv4('203.0.113.2', '203.0.113.1', new Uint8Array(33).fill(1));
  assert.equal(b.device.sendPacket(reply), null);
  net.run();
  assert.deepEqual(a.delivered.map((d) => d.packet), [reply]);

  // Counters: WireGuard UDP payload bytes on both sides agree.
  assert.equal(pa.txBytes, pb.rxBytes);
  assert.equal(pb.txBytes, pa.rxBytes);
  assert.ok(pa.txBytes > 148n);
  assert.ok(pa.timers.lastHandshakeAt !== undefined && pb.timers.lastHandshakeAt !== undefined);
});

test('padding: data messages are 16-aligned and capped at the MTU; a keepalive is 32 bytes', () => {
  const { net, a, b } = established();
  a.sent.length = 0;
  for (const n of [1, 15, 16, 17, 100]) a.device.sendPacket(ipv4('203.0.113.1', '203.0.113.2', new Uint8Array(n)));
  const sizes = a.sent.map((d) => d.data.length - 32);
  assert.deepEqual(sizes, [32, 48, 48, 48, 128]); // 20-byte header + n, rounded up to 16
  net.run();
  assert.equal(b.delivered.length, 6);
  a.sent.length = 0;
  a.device.sendKeepalive(a.device.allPeers().next().value!);
  assert.equal(a.sent[0].data.length, 32);
  const before = b.delivered.length;
  assert.deepEqual(net.run(), [null]);
  assert.equal(b.delivered.length, before, 'a keepalive delivers nothing');
});

test('pre-shared key: same key works, a mismatch fails the response', () => {
  const net = new Network();
  const { a, pa, pb } = pair(net, key(3), key(4));
  pa.presharedKey = new Uint8Array(32).fill(5);
  pb.presharedKey = new Uint8Array(32).fill(5);
  a.device.sendPacket(ipv4('203.0.113.1', '203.0.113.2'));
  assert.deepEqual(net.run(), [null, null, null]);

  const net2 = new Network();
  const q = pair(net2, key(3), key(4));
  q.pa.presharedKey = new Uint8Array(32).fill(5);
  q.a.device.sendPacket(ipv4('203.0.113.1', '203.0.113.2'));
  assert.deepEqual(net2.run(), [null, 'decrypt-failed']);
  assert.equal(q.pa.keypairs.current, null);
});

test('initiator rekeys after REKEY_AFTER_TIME on send; keys are rejected after REJECT_AFTER_TIME', () => {
  const { net, a, b, pa, pb } = established();
  const first = pa.keypairs.current!;
  net.clock.advance(119_000);
  a.sent.length = 0;
  a.device.sendPacket(ipv4('203.0.113.1', '203.0.113.2'));
  assert.deepEqual(a.sent.map(typeOf), [4], 'no rekey before 120 s');
  net.run();
  net.clock.advance(1_001);
  a.sent.length = 0;
  a.device.sendPacket(ipv4('203.0.113.1', '203.0.113.2'));
  assert.deepEqual(a.sent.map(typeOf), [4, 1], 'data goes out with the old key, then an initiation');
  net.run();
  assert.notEqual(pa.keypairs.current, first);
  assert.equal(pa.keypairs.previous, first);

  // A keypair 180 s old is not used to send: the packet is staged and a handshake starts.
  net.clock.advance(180_000);
  b.sent.length = 0;
  b.device.sendPacket(ipv4('203.0.113.2', '203.0.113.1'));
  assert.deepEqual(b.sent.map(typeOf), [1]);
  assert.equal(pb.staged.size, 1);
});

test('rekey after REKEY_AFTER_MESSAGES and no sending past REJECT_AFTER_MESSAGES', () => {
  const { a, pa, net: n1 } = established();
  const kp = pa.keypairs.current!;
  kp.sendCounter = REKEY_AFTER_MESSAGES;
  n1.clock.advance(5_000); // past the initiation rate limit (one per REKEY_TIMEOUT) of the first handshake
  a.sent.length = 0;
  a.device.sendPacket(ipv4('203.0.113.1', '203.0.113.2'));
  assert.deepEqual(a.sent.map(typeOf), [4, 1], 'past 2^60 messages the sender initiates');

  const e = established();
  const k2 = e.pa.keypairs.current!;
  k2.sendCounter = REJECT_AFTER_MESSAGES - 1n;
  e.net.clock.advance(5_000);
  e.a.sent.length = 0;
  e.a.device.sendPacket(ipv4('203.0.113.1', '203.0.113.2'));
  e.a.device.sendPacket(ipv4('203.0.113.1', '203.0.113.2'));
  const types = e.a.sent.map(typeOf);
  assert.equal(types.filter((t) => t === 4).length, 1, 'exactly one more message under this key');
  assert.ok(types.includes(1));
  assert.equal(k2.sendCounter, REJECT_AFTER_MESSAGES);
  assert.equal(e.pa.staged.size, 1);
});

test('receiving under an expired keypair is refused with "expired"', () => {
  const { net, a, b } = established();
  a.sent.length = 0;
  a.device.sendPacket(ipv4('203.0.113.1', '203.0.113.2'));
  const msg = a.sent[0].data;
  net.queue.length = 0;
  net.clock.advance(180_000);
  assert.equal(b.device.receive(msg, a.endpoint), 'expired');
});

test('replayed and forged transport packets are dropped and do not count', () => {
  const { net, a, b, pb } = established();
  a.sent.length = 0;
  a.device.sendPacket(ipv4('203.0.113.1', '203.0.113.2'));
  const msg = Uint8Array.from(a.sent[0].data);
  net.run();
  const rx = pb.rxBytes;
  const delivered = b.delivered.length;
  assert.equal(b.device.receive(Uint8Array.from(msg), { addr: Uint8Array.of(198, 51, 100, 9), port: 1 }), 'replay');
  assert.equal(pb.rxBytes, rx);
  assert.deepEqual(pb.endpoint?.addr, a.endpoint.addr, 'a replay does not move the endpoint');
  const forged = Uint8Array.from(msg);
  forged[40] ^= 0x80;
  assert.equal(b.device.receive(forged, a.endpoint), 'decrypt-failed');
  assert.equal(b.delivered.length, delivered);
});

test('roaming: the endpoint follows authenticated packets', () => {
  const { net, a, b, pb } = established();
  const moved = { addr: Uint8Array.of(198, 51, 100, 77), port: 4444 };
  a.sent.length = 0;
  a.device.sendPacket(ipv4('203.0.113.1', '203.0.113.2'));
  net.queue.length = 0;
  assert.equal(b.device.receive(a.sent[0].data, moved), null);
  assert.deepEqual(pb.endpoint, moved);
});

test('allowed-IPs source check: a peer may not send from addresses it does not own', () => {
  const { net, a, b } = established();
  const before = b.delivered.length;
  a.device.allowedIps.insert(Uint8Array.of(198, 18, 0, 0), 15, a.device.allPeers().next().value!);
  a.sent.length = 0;
  a.device.sendPacket(ipv4('198.18.0.9', '198.18.0.1')); // routed by a, but b does not allow 198.18.0.9 from a
  assert.deepEqual(net.run(), ['allowed-ips']);
  assert.equal(b.delivered.length, before);
  assert.equal(a.device.sendPacket(ipv4('203.0.113.1', '198.51.100.200')), 'no-route');
});

test('private keys read back clamped; own key as peer is ignored; a matching private key removes the peer', () => {
  const net = new Network();
  const raw = new Uint8Array(32).fill(0xff);
  const n = net.add(raw);
  assert.equal(n.device.privateKey![0], 0xf8);
  assert.equal(n.device.privateKey![31], 0x7f);
  assert.equal(n.device.addPeer(n.device.publicKey!), undefined);
  const other = net.add(key(9));
  const p = n.device.addPeer(other.device.publicKey!);
  assert.ok(p);
  n.device.setPrivateKey(key(9));
  assert.equal(n.device.peerCount, 0);
});

test('a low-order peer key never produces a handshake message', () => {
  const net = new Network();
  const n = net.add(key(1));
  const p = n.device.addPeer(new Uint8Array(32))!;
  p.endpoint = { addr: Uint8Array.of(198, 51, 100, 2), port: 1 };
  n.device.allowedIps.insert(Uint8Array.of(203, 0, 113, 2), 32, p);
  n.device.sendPacket(ipv4('203.0.113.1', '203.0.113.2'));
  assert.equal(n.sent.length, 0);
});

test('timers through the device: retransmit, give up and drop staged, then erase keys', () => {
  const net = new Network();
  const { a, pa } = pair(net, key(1), key(2));
  net.nodes.pop(); // b vanishes: nothing answers
  a.device.sendPacket(ipv4('203.0.113.1', '203.0.113.2'));
  net.queue.length = 0;
  net.advance(60_000, 250);
  const inits = a.sent.filter((d) => typeOf(d) === 1).length;
  assert.ok(inits >= 11 && inits <= 13, `~12 initiations in 60 s, got ${inits}`);
  assert.equal(pa.staged.size, 1);
  net.advance(50_000, 250);
  assert.equal(a.sent.filter((d) => typeOf(d) === 1).length, 20, '20 initiations, then give up');
  assert.equal(pa.staged.size, 0, 'staged packets dropped on give-up');
});

test('passive keepalive after receiving data and sending nothing; persistent keepalive', () => {
  const { net, a, b, pa } = established();
  b.sent.length = 0;
  net.advance(10_100);
  assert.deepEqual(b.sent.map((d) => d.data.length), [32], 'one keepalive 10 s after data arrived');
  a.sent.length = 0;
  a.device.setPersistentKeepalive(pa, 25);
  assert.equal(a.sent.length, 1, 'turning persistent keepalive on sends one at once');
  net.advance(25_100, 100);
  assert.equal(a.sent.length, 2);
  void b;
});

test('keys are erased 3 x REJECT_AFTER_TIME after the last handshake', () => {
  const { net, pa, pb } = established();
  net.nodes.pop();
  net.advance(539_000, 1000);
  assert.ok(pa.keypairs.current || pa.keypairs.previous);
  net.advance(2_000, 1000);
  assert.equal(pa.keypairs.current, null);
  assert.equal(pa.keypairs.previous, null);
  void pb;
});

test('the pure-JS fallback suite interoperates with sodium-native end to end', () => {
  const net = new Network();
  const a = net.add(key(11), { suite: makeNobleSuite() });
  const b = net.add(key(12), { suite: makeSodiumSuite(loadSodium()!) });
  assert.equal(a.device.ctx.suite.name, 'noble');
  assert.equal(b.device.ctx.suite.name, 'sodium-native');
  const pa = a.device.addPeer(b.device.publicKey!)!;
  const pb = b.device.addPeer(a.device.publicKey!)!;
  pa.endpoint = { ...b.endpoint };
  a.device.allowedIps.insert(Uint8Array.of(203, 0, 113, 2), 32, pa);
  b.device.allowedIps.insert(Uint8Array.of(203, 0, 113, 1), 32, pb);
  const pkt = ipv4('203.0.113.1', '203.0.113.2', new Uint8Array(300).fill(3));
  a.device.sendPacket(pkt);
  net.run();
  assert.deepEqual(b.delivered.map((d) => d.packet), [pkt]);
  const back = ipv4('203.0.113.2', '203.0.113.1', new Uint8Array(77).fill(4));
  b.device.sendPacket(back);
  net.run();
  assert.deepEqual(a.delivered.map((d) => d.packet), [back]);
});

test('interface down then up within REKEY_TIMEOUT of the last handshake: the next packet starts a handshake at once', () => {
  const { net, a, b, pa } = established();
  const delivered = b.delivered.length;
  net.clock.advance(1000); // well inside REKEY_TIMEOUT (5 s) of the initiation above
  a.device.down();
  assert.equal(pa.keypairs.current, null, 'down forgets the session');
  a.device.up();
  const sent = a.sent.length;
  assert.equal(a.device.sendPacket(ipv4('203.0.113.1', '203.0.113.2')), null);
  assert.deepEqual(a.sent.slice(sent).map(typeOf), [1], 'an initiation leaves with the first packet after up');
  net.run();
  assert.ok(pa.keypairs.current, 'a new session');
  assert.equal(b.delivered.length, delivered + 1, 'the staged packet arrives');
});
