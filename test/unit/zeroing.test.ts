// Key material is overwritten when it is replaced or erased (issue 5 item 8): each test keeps a reference
// to the old buffer, triggers the replacement through a public API (Device, Peer, UAPI, the noise
// functions, KeyTable) and checks the old bytes are all zero, and that buffers still in use are not.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Device, type KeypairHooks } from '../../src/device.js';
import { FakeClock, seededRandom } from '../../src/clock.js';
import { defaultSuite } from '../../src/crypto/index.js';
import {
  consumeInitiation, consumeResponse, createInitiation, createResponse, deriveSession, Handshake, LocalStatic,
} from '../../src/handshake/noise.js';
import { keyToHex } from '../../src/keys.js';
import type { Endpoint } from '../../src/peer.js';
import { UapiConnection, type UapiHost } from '../../src/uapi/uapi.js';
import { KeyTable } from '../../src/workers/keytable.js';
import { Network, pair, key } from '../helpers/net.js';
import { ipv4 } from '../helpers/packets.js';

const isZero = (b: Uint8Array): boolean => b.every((x) => x === 0);
const ping = () => ipv4('203.0.113.1', '203.0.113.2');
const pong = () => ipv4('203.0.113.2', '203.0.113.1');

function established() {
  const net = new Network();
  const p = pair(net, key(1), key(2));
  assert.equal(p.a.device.sendPacket(ping()), null);
  net.run();
  assert.ok(p.pa.keypairs.current && p.pb.keypairs.current, 'session up');
  return { net, ...p };
}

/** a initiates a new handshake 121 s on (REKEY_AFTER_TIME) and b confirms it with a packet back. */
function rekey(e: ReturnType<typeof established>): void {
  const before = e.pa.keypairs.current;
  e.net.clock.advance(121_000);
  e.a.device.sendPacket(ping());
  e.net.run();
  e.b.device.sendPacket(pong());
  e.net.run();
  assert.notEqual(e.pa.keypairs.current, before, 'a new keypair is current');
}

test('device private key: replaced and removed keys are zeroed; the caller\'s buffer and an unchanged key are not', () => {
  const d = new Device({ io: { send: () => {}, deliver: () => {} }, clock: new FakeClock(), random: seededRandom(3) });
  const k1 = key(1);
  const k1copy = Uint8Array.from(k1);
  d.setPrivateKey(k1);
  const held = d.privateKey!;
  assert.notEqual(held, k1, 'the device keeps its own copy');
  assert.ok(!isZero(held));
  d.setPrivateKey(k1); // the same key again: nothing is replaced, so the live buffer must survive
  assert.equal(d.privateKey, held);
  assert.ok(!isZero(held), 'the key in use is not wiped by a no-op set');
  d.setPrivateKey(key(2));
  assert.ok(isZero(held), 'the replaced private key is zeroed');
  assert.deepEqual(k1, k1copy, 'the caller\'s buffer is the caller\'s: untouched');
  const held2 = d.privateKey!;
  d.setPrivateKey(null);
  assert.ok(isZero(held2), 'a removed private key is zeroed');
  assert.equal(d.privateKey, null);
});

test('private key change: sessions and each peer\'s static-static DH of the old identity are zeroed', () => {
  const e = established();
  const kp = e.pa.keypairs.current!;
  const ss = e.pa.handshake.precomputedStaticStatic!;
  assert.ok(!isZero(kp.sendKey) && !isZero(kp.receiveKey) && !isZero(ss));
  e.a.device.setPrivateKey(key(9));
  assert.ok(isZero(kp.sendKey) && isZero(kp.receiveKey), 'keypair keys zeroed');
  assert.ok(isZero(ss), 'old static-static DH zeroed');
  assert.ok(e.pa.handshake.precomputedStaticStatic && !isZero(e.pa.handshake.precomputedStaticStatic), 'a fresh one was computed');
});

test('pre-shared key: the old one is zeroed on change and on peer removal; handshakes use the new one', () => {
  const net = new Network();
  const { a, b, pa, pb } = pair(net, key(3), key(4));
  const psk1 = new Uint8Array(32).fill(5);
  pa.presharedKey = psk1;
  pb.presharedKey = psk1;
  const held = pa.presharedKey;
  assert.notEqual(held, psk1, 'the peer copies the key');
  pa.presharedKey = new Uint8Array(32).fill(6);
  pb.presharedKey = new Uint8Array(32).fill(6);
  assert.ok(isZero(held), 'the replaced pre-shared key is zeroed');
  assert.ok(psk1.every((x) => x === 5), 'the caller\'s buffer is untouched');
  a.device.sendPacket(ping());
  net.run();
  assert.equal(b.delivered.length, 1, 'the handshake works with the new key (a wiped live key would break it)');

  const held2 = pa.presharedKey;
  const ss = pa.handshake.precomputedStaticStatic!;
  const kp = pa.keypairs.current!;
  a.device.removePeer(pa);
  assert.ok(isZero(held2), 'a removed peer\'s pre-shared key is zeroed');
  assert.ok(isZero(ss), 'and its static-static DH');
  assert.ok(isZero(kp.sendKey) && isZero(kp.receiveKey), 'and its keypairs');
});

test('keypairs: zeroed when dropped by the second rekey; one moved to previous stays intact', () => {
  const e = established();
  const first = e.pa.keypairs.current!;
  const firstB = e.pb.keypairs.current!;
  const keys = [first.sendKey, first.receiveKey, firstB.sendKey, firstB.receiveKey];
  rekey(e);
  assert.equal(e.pa.keypairs.previous, first);
  assert.ok(keys.every((k) => !isZero(k)), 'the previous keypair may still receive: not zeroed');
  rekey(e);
  assert.notEqual(e.pa.keypairs.previous, first);
  assert.ok(keys.every(isZero), 'dropped keypair keys are zeroed on both sides');
  const cur = e.pa.keypairs.current!;
  assert.ok(!isZero(cur.sendKey) && !isZero(cur.receiveKey), 'the current keys are intact');
  e.a.device.sendPacket(ping());
  e.net.run();
  assert.equal(e.b.delivered.length, 4, 'traffic still flows on the new keys');
});

test('keypairs: zeroed by the zero-keys timer (3 x REJECT_AFTER_TIME) and when the interface goes down', () => {
  const e = established();
  const kp = e.pa.keypairs.current!;
  e.net.nodes.pop(); // b goes silent
  e.net.advance(541_000, 1000);
  assert.equal(e.pa.keypairs.current, null);
  assert.ok(isZero(kp.sendKey) && isZero(kp.receiveKey), 'expired keys erased by the timer are zeroed');

  const f = established();
  const kb = f.pb.keypairs.current!;
  f.b.device.down();
  assert.ok(isZero(kb.sendKey) && isZero(kb.receiveKey), 'interface down forgets and zeroes sessions');
});

test('handshake state: chaining key, hash and ephemeral are zeroed once the session is derived (Device)', () => {
  const net = new Network();
  const { a, pa } = pair(net, key(1), key(2));
  a.device.sendPacket(ping()); // a's initiation is now in flight
  const hs = pa.handshake;
  const held = [hs.chainKey, hs.hash, hs.ephemeralPrivate];
  assert.ok(held.every((b) => !isZero(b)));
  net.run();
  assert.ok(pa.keypairs.current);
  assert.ok(held.every(isZero), 'initiator handshake secrets zeroed after the response');
});

test('handshake state: every replaced intermediate is zeroed; derived keys and a failed message leave live state alone', () => {
  const suite = defaultSuite();
  const ctx = { suite, clock: new FakeClock(), random: seededRandom(11) };
  const la = new LocalStatic(suite, key(1));
  const lb = new LocalStatic(suite, key(2));
  const hsA = new Handshake(lb.publicKey);
  hsA.precompute(suite, la);
  const hsB = new Handshake(la.publicKey);
  hsB.precompute(suite, lb);

  const first = createInitiation(ctx, la, hsA, 1);
  assert.ok(first.ok);
  const eph0 = hsA.ephemeralPrivate;
  ctx.clock.advance(1000);
  const init = createInitiation(ctx, la, hsA, 1); // a retry replaces the whole state
  assert.ok(init.ok);
  assert.ok(isZero(eph0), 'a retried initiation zeroes the previous ephemeral');
  const [aChain, aHash, aEph] = [hsA.chainKey, hsA.hash, hsA.ephemeralPrivate];

  assert.ok(consumeInitiation(ctx, lb, init.value, () => hsB).ok);
  const [bChain1, bHash1] = [hsB.chainKey, hsB.hash];
  const resp = createResponse(ctx, hsB, 2);
  assert.ok(resp.ok);
  assert.ok(isZero(bChain1) && isZero(bHash1), 'the responder zeroes the chaining key it replaced');
  const [bChain2, bEph] = [hsB.chainKey, hsB.ephemeralPrivate];

  const bad = Uint8Array.from(resp.value);
  bad[bad.length - 40] ^= 1; // inside the encrypted empty payload's tag
  assert.equal(consumeResponse(ctx, la, bad, () => hsA).ok, false);
  assert.ok([aChain, aHash, aEph].every((b) => !isZero(b)), 'a rejected response leaves the live handshake intact');

  assert.ok(consumeResponse(ctx, la, resp.value, () => hsA).ok);
  assert.ok(isZero(aChain) && isZero(aHash), 'the initiator zeroes the chaining key it replaced');
  assert.ok(!isZero(aEph), 'the ephemeral is still held until the session is derived');
  const aChain2 = hsA.chainKey;

  const ka = deriveSession(hsA);
  const kb = deriveSession(hsB);
  assert.ok(ka.ok && kb.ok);
  assert.ok([aChain2, aEph, bChain2, bEph].every(isZero), 'chaining keys and ephemerals zeroed after the split');
  assert.deepEqual(ka.value.sendKey, kb.value.receiveKey, 'the derived keys themselves are intact and agree');
  assert.ok(!isZero(ka.value.sendKey) && !isZero(ka.value.receiveKey));
});

test('KeyTable: put copies the keys in, release zeroes the slot at once (and the workers\' views of it)', () => {
  const t = KeyTable.create(4);
  const send = new Uint8Array(32).fill(0x11);
  const recv = new Uint8Array(32).fill(0x22);
  const i = t.put(send, recv, 0);
  const j = t.put(new Uint8Array(32).fill(0x33), new Uint8Array(32).fill(0x44), 0);
  const view = new KeyTable(t.sab); // what a worker sees of the same SharedArrayBuffer
  assert.deepEqual(view.sendKey(i), Buffer.from(send));
  assert.deepEqual(view.receiveKey(i), Buffer.from(recv));
  t.release(i, 1);
  assert.ok(isZero(view.sendKey(i)) && isZero(view.receiveKey(i)), 'released slot zeroed');
  assert.ok(send.every((x) => x === 0x11) && recv.every((x) => x === 0x22), 'the keypair\'s own buffers are not the table\'s to wipe');
  assert.ok(view.sendKey(j).every((x) => x === 0x33), 'other slots untouched');
  t.release(j, 1);
  assert.ok(isZero(t.bytes), 'nothing left in the table');
});

test('KeyTable wired as the daemon does: dropped and removed keypairs leave no key in the shared table', () => {
  // Two Devices on a direct in-memory link, each mirroring its keypairs into a KeyTable through the hooks.
  const clock = new FakeClock();
  const queue: { to: number; data: Uint8Array; from: Endpoint }[] = [];
  const eps: Endpoint[] = [{ addr: Uint8Array.of(198, 51, 100, 1), port: 1 }, { addr: Uint8Array.of(198, 51, 100, 2), port: 2 }];
  const tables = [KeyTable.create(8), KeyTable.create(8)];
  const devs = [0, 1].map((n) => {
    const hooks: KeypairHooks = {
      installed: (kp) => void (kp.keySlot = tables[n].put(kp.sendKey, kp.receiveKey, clock.now())),
      dropped: (kp) => {
        tables[n].release(kp.keySlot, clock.now());
        kp.keySlot = -1;
      },
    };
    const d = new Device({
      io: { send: (data, to) => queue.push({ to: to.port - 1, data: Uint8Array.from(data), from: eps[n] }), deliver: () => {} },
      clock, random: seededRandom(50 + n), keypairHooks: hooks,
    });
    d.setPrivateKey(key(20 + n));
    return d;
  });
  const peers = [0, 1].map((n) => {
    const p = devs[n].addPeer(devs[1 - n].publicKey!)!;
    p.endpoint = eps[1 - n];
    devs[n].allowedIps.insert(Uint8Array.of(203, 0, 113, 2 - n), 32, p);
    return p;
  });
  const run = () => {
    for (let i = 0; i < 50 && queue.length; i++) {
      const m = queue.shift()!;
      devs[m.to].receive(m.data, m.from);
    }
  };
  const exchange = () => {
    devs[0].sendPacket(ping());
    run();
    devs[1].sendPacket(pong());
    run();
  };
  exchange();
  const slot = peers[0].keypairs.current!.keySlot;
  assert.ok(slot >= 0 && !isZero(tables[0].sendKey(slot)), 'the key is mirrored while in use');
  for (let r = 0; r < 2; r++) {
    clock.advance(121_000);
    exchange();
  }
  assert.ok(isZero(tables[0].sendKey(slot)) && isZero(tables[0].receiveKey(slot)), 'the dropped keypair\'s slot is zeroed');
  assert.ok(!isZero(tables[0].bytes), 'current and previous keys are still mirrored');
  for (const n of [0, 1]) devs[n].removePeer(peers[n]);
  assert.ok(isZero(tables[0].bytes) && isZero(tables[1].bytes), 'peer removal leaves no key in either table');
});

test('UAPI: replaced private and pre-shared keys, `remove` and `replace_peers` zero the old buffers', () => {
  const device = new Device({ io: { send: () => {}, deliver: () => {} }, clock: new FakeClock(), random: seededRandom(5) });
  const host: UapiHost = { device, listenPort: 0, fwmark: 0, setListenPort: () => 0, setFwmark: () => 0 };
  const set = (...lines: string[]): string => new UapiConnection(host).feed(Buffer.from(`set=1\n${lines.map((l) => l + '\n').join('')}\n`)).replies.join('');
  const peerKey = (n: number) => keyToHex(key(100 + n));
  assert.equal(set(`private_key=${keyToHex(key(1))}`, `public_key=${peerKey(1)}`, `preshared_key=${'ab'.repeat(32)}`, `public_key=${peerKey(2)}`, `preshared_key=${'cd'.repeat(32)}`), 'errno=0\n\n');
  const sk = device.privateKey!;
  const p1 = device.peer(key(101))!;
  const p2 = device.peer(key(102))!;
  const psk1 = p1.presharedKey;
  const psk2 = p2.presharedKey;
  assert.ok(!isZero(sk) && !isZero(psk1) && !isZero(psk2));
  assert.equal(set(`private_key=${keyToHex(key(2))}`, `public_key=${peerKey(1)}`, `preshared_key=${'ef'.repeat(32)}`), 'errno=0\n\n');
  assert.ok(isZero(sk), 'replaced private key zeroed');
  assert.ok(isZero(psk1), 'replaced pre-shared key zeroed');
  const psk1b = p1.presharedKey;
  assert.equal(set(`public_key=${peerKey(1)}`, 'remove=true'), 'errno=0\n\n');
  assert.ok(isZero(psk1b), '`remove` zeroes the peer\'s pre-shared key');
  assert.ok(!isZero(psk2), 'another peer\'s key is untouched');
  assert.equal(set('replace_peers=true'), 'errno=0\n\n');
  assert.ok(isZero(psk2), '`replace_peers` zeroes the removed peers\' keys');
  const sk2 = device.privateKey!;
  assert.equal(set(`private_key=${'00'.repeat(32)}`), 'errno=0\n\n');
  assert.ok(isZero(sk2) && device.privateKey === null, 'an all-zero private_key erases the key');
});
