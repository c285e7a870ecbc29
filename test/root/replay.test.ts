// Replay and forgery against a running wgts daemon (issue 5 item 2; protocol.md "Receive-path rules": the
// replay window and roaming apply only after the AEAD tag verified). Two wgts daemons in namespaces of their
// own; real datagrams captured with tcpdump on the veth are sent again from another address and port:
//  - replays of accepted handshake and transport messages: no rx bytes counted, no delivery to the TUN (the
//    kernel's ICMP echo counters), endpoints and handshake times unchanged, nothing answered;
//  - bit-flipped and forged transport packets (valid receiver index) built from packets the receiver has NOT
//    seen yet: all dropped, and the far-ahead counters among them must not move the replay window, since the
//    genuine packets sent afterwards are accepted (positive control: rx grows by exactly their size, the
//    echoes reach b's kernel, and b roams to the sender as authenticated traffic must make it do).

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { requireRoot, sleep, Topology, type Host } from '../harness/netns.js';
import { captureUdp } from '../helpers/capture.js';
import { fuzzSeed, Rng } from '../helpers/fuzz.js';
import { JsonChild } from '../helpers/jsonchild.js';
import type { UdpRecord } from '../helpers/pcapudp.js';
import type { ReplayConfig, ReplayResult } from '../helpers/udp-replay.js';

const STEP = { timeout: 60_000 };
const REPLAYER = fileURLToPath(new URL('../helpers/udp-replay.js', import.meta.url));
const THIRD = '198.51.100.3'; // a foreign source address, added to a's side of the veth
const TYPE_DATA = 4;

interface Side {
  rx: bigint;
  tx: bigint;
  endpoint: string;
  handshake: string;
  inEchos: number;
  inEchoReps: number;
}
type Snap = Record<'a' | 'b', Side>;

async function peerRow(t: Topology, h: Host, field: string): Promise<string[]> {
  const out = await t.wg(h, ['show', h.ifname, field]);
  const row = out.trim().split('\n').map((l) => l.split('\t')).find((r) => r[0] === t.other(h).publicKey);
  assert.ok(row, `wg show ${h.ifname} ${field} lists the peer:\n${out}`);
  return row;
}

/** The Icmp counters of h's namespace (/proc/net/snmp is per network namespace). */
async function icmp(t: Topology, h: Host): Promise<Record<string, number>> {
  const r = await t.exec(h, ['cat', '/proc/net/snmp']);
  const rows = r.stdout.split('\n').filter((l) => l.startsWith('Icmp:'));
  assert.equal(rows.length, 2, `Icmp rows in /proc/net/snmp of ${h.ns}:\n${r.stdout}`);
  const [names, values] = rows.map((l) => l.split(/\s+/).slice(1));
  return Object.fromEntries(names.map((n, i) => [n, Number(values[i])]));
}

async function side(t: Topology, h: Host): Promise<Side> {
  const [, rx, tx] = await peerRow(t, h, 'transfer');
  const [, endpoint] = await peerRow(t, h, 'endpoints');
  const [, handshake] = await peerRow(t, h, 'latest-handshakes');
  const c = await icmp(t, h);
  return { rx: BigInt(rx), tx: BigInt(tx), endpoint, handshake, inEchos: c.InEchos, inEchoReps: c.InEchoReps };
}

/** Both sides, read until two reads agree (a keepalive in flight between the reads would skew a delta). */
async function snapshot(t: Topology): Promise<Snap> {
  let prev = JSON.stringify({});
  for (let i = 0; i < 10; i++) {
    const s = { a: await side(t, t.a), b: await side(t, t.b) };
    const j = JSON.stringify(s, (_, v) => (typeof v === 'bigint' ? String(v) : v));
    if (j === prev) return s;
    prev = j;
    await sleep(100);
  }
  throw new Error(`counters never settled: ${prev}`);
}

const show = (s: unknown): string => JSON.stringify(s, (_, v) => (typeof v === 'bigint' ? String(v) : v));

async function ping(t: Topology, from: Host, to: string, count: number): Promise<{ code: number; out: string }> {
  const r = await t.exec(from, ['ping', '-c', String(count), '-i', '0.1', '-W', '1', to], { timeoutMs: 20_000 });
  return { code: r.code, out: r.stdout + r.stderr };
}

async function mustPing(t: Topology, from: Host, to: string, count = 3): Promise<void> {
  const r = await ping(t, from, to, count);
  assert.equal(r.code, 0, `ping ${to} from ${from.name} failed:\n${r.out}`);
  assert.match(r.out, / 0% packet loss/, r.out);
}

/** Sends datagrams from `bindAddr` (ephemeral port) inside h's namespace; resolves with what came back. */
async function sendFrom(h: Host, bindAddr: string, sends: ReplayConfig['sends'], listenMs = 300): Promise<ReplayResult> {
  const child = new JsonChild(h.ns, REPLAYER, { bind: { addr: bindAddr }, sends, listenMs } satisfies ReplayConfig, 30_000);
  try {
    const done = await child.wait('done', 30_000);
    return done as unknown as ReplayResult;
  } finally {
    child.kill();
    await child.done;
  }
}

const hex = (p: Uint8Array): string => Buffer.from(p).toString('hex');

/** No replayed or forged byte counted: each side's rx grew exactly by what the other side really sent. */
function assertOnlyGenuine(s0: Snap, s1: Snap, what: string): void {
  assert.equal(s1.b.rx - s0.b.rx, s1.a.tx - s0.a.tx, `${what}: b's rx grew by ${s1.b.rx - s0.b.rx}, a sent ${s1.a.tx - s0.a.tx} (${show({ s0, s1 })})`);
  assert.equal(s1.a.rx - s0.a.rx, s1.b.tx - s0.b.tx, `${what}: a's rx grew by ${s1.a.rx - s0.a.rx}, b sent ${s1.b.tx - s0.b.tx} (${show({ s0, s1 })})`);
}

describe('replay and forgery against a running daemon (wgts <-> wgts)', () => {
  let topo: Topology | undefined;
  const T = (): Topology => {
    assert.ok(topo, 'topology was created');
    return topo;
  };
  const seed = fuzzSeed();

  before(async () => {
    requireRoot();
    // One datagram per frame, so the capture holds each message on its own: with UDP GSO, pings that bunch up
    // behind a stall (ping -i keeps sending) leave in one GSO frame, which tcpdump records as one datagram.
    topo = await Topology.create({ env: { WGTS_UDP_OFFLOAD: '0' } });
    const r = await topo.exec(topo.a, ['ip', 'addr', 'add', `${THIRD}/24`, 'dev', topo.veth.a]);
    assert.equal(r.code, 0, r.stderr);
  });
  after(async () => {
    if (!topo) return;
    await topo.close();
    assert.deepEqual(topo.leftovers(), []);
  });

  it('replayed handshake and transport datagrams (other port, other address) are all rejected', STEP, async (ctx) => {
    const t = T();
    const caps = await captureUdp(t, t.a, t.veth.a, `port ${t.a.port} or port ${t.b.port}`, async () => {
      await mustPing(t, t.a, t.b.tunnel4, 10); // the first one also makes the handshake
      await mustPing(t, t.b, t.a.tunnel4, 5);
    });
    const toB = caps.filter((c) => c.dport === t.b.port && c.sport === t.a.port);
    const toA = caps.filter((c) => c.dport === t.a.port && c.sport === t.b.port);
    const count = (l: UdpRecord[], type: number, min = 0): number => l.filter((c) => c.payload[0] === type && c.payload.length > min).length;
    assert.ok(count(toB, 1) >= 1 && count(toB, TYPE_DATA, 32) >= 15, `captured a's initiation and data: ${toB.map((c) => c.payload[0])}`);
    assert.ok(count(toA, 2) >= 1 && count(toA, TYPE_DATA, 32) >= 15, `captured b's response and data: ${toA.map((c) => c.payload[0])}`);

    // In capture order, then reversed (older counters after newer ones), three times over.
    const once = [
      ...toB.map((c) => ({ hex: hex(c.payload), addr: t.b.underlay4, port: t.b.port })),
      ...toA.map((c) => ({ hex: hex(c.payload), addr: t.a.underlay4, port: t.a.port })),
    ];
    const sends = [...once, ...[...once].reverse(), ...once];
    const s0 = await snapshot(t);
    const fromThird = await sendFrom(t.a, THIRD, sends);
    const fromOwnAddr = await sendFrom(t.a, t.a.underlay4, sends); // a's address, another port
    await sleep(300);
    const s1 = await snapshot(t);
    ctx.diagnostic(`replayed ${fromThird.sent + fromOwnAddr.sent} datagrams (${caps.length} captured: ${toB.length} a->b, ${toA.length} b->a)`);

    assert.equal(fromThird.sent + fromOwnAddr.sent, 2 * sends.length, 'every replay was sent');
    assertOnlyGenuine(s0, s1, 'replays');
    assert.equal(s1.b.endpoint, `${t.a.underlay4}:${t.a.port}`, 'b still sends to a\'s real endpoint');
    assert.equal(s1.a.endpoint, `${t.b.underlay4}:${t.b.port}`, 'a still sends to b\'s real endpoint');
    for (const h of ['a', 'b'] as const) {
      assert.equal(s1[h].handshake, s0[h].handshake, `${h}: no new handshake from a replayed initiation or response`);
      assert.equal(s1[h].inEchos, s0[h].inEchos, `${h}: no replayed echo request reached the kernel`);
      assert.equal(s1[h].inEchoReps, s0[h].inEchoReps, `${h}: no replayed echo reply reached the kernel`);
    }
    assert.deepEqual([...fromThird.received, ...fromOwnAddr.received], [], 'nothing answered a replay');
    await mustPing(t, t.a, t.b.tunnel4);
    await mustPing(t, t.b, t.a.tunnel4);
  });

  it('bit-flipped and forged data packets are dropped and do not move the replay window; the genuine ones then pass', STEP, async (ctx) => {
    const t = T();
    ctx.diagnostic(`seed ${seed} (WGTS_FUZZ_SEED=${seed} replays this run)`);
    const rng = new Rng(seed);
    // Packets b has not seen: a's datagrams to b are dropped at b's input while tcpdump on a's side records them.
    const block = `wgtsrp${process.pid}`;
    const nft = await t.exec(t.b, ['nft', '-f', '-'], {
      input: `table inet ${block} {\n chain input {\n  type filter hook input priority 0; policy accept;\n  ip saddr ${t.a.underlay4} udp dport ${t.b.port} drop\n }\n}\n`,
    });
    assert.equal(nft.code, 0, `nft: ${nft.stderr}`);
    let unseen: UdpRecord[];
    try {
      const caps = await captureUdp(t, t.a, t.veth.a, `src port ${t.a.port} and dst port ${t.b.port}`, async () => {
        const r = await ping(t, t.a, t.b.tunnel4, 5);
        assert.notEqual(r.code, 0, `b's input was blocked, yet:\n${r.out}`);
      });
      unseen = caps.filter((c) => c.payload[0] === TYPE_DATA && c.payload.length > 32);
    } finally {
      await t.exec(t.b, ['nft', 'delete', 'table', 'inet', block]);
    }
    assert.equal(unseen.length, 5, 'captured the 5 echo requests b never received');

    const forged: Uint8Array[] = [];
    const at = (p: Uint8Array, i: number, bit: number): Uint8Array => {
      const m = Uint8Array.from(p);
      m[i] ^= 1 << bit;
      return m;
    };
    const withCounter = (p: Uint8Array, lo: number, hi: number): Uint8Array => {
      const m = Buffer.from(p);
      m.writeUInt32LE(lo, 8);
      m.writeUInt32LE(hi, 12);
      return m;
    };
    for (const { payload: p } of unseen) {
      const n = p.length;
      // Every header byte (type, reserved, receiver index, counter), ciphertext samples and every tag byte.
      const positions = [...Array(16).keys(), 16, 17, 20 + rng.int(n - 52), Math.floor(n / 2), n - 17, ...Array.from({ length: 16 }, (_, i) => n - 16 + i)];
      for (const i of positions) forged.push(at(p, i, rng.int(8)));
      forged.push(p.slice(0, n - 1), p.slice(0, n - 16), p.slice(0, 32), p.slice(0, 31), p.slice(0, 16));
      forged.push(Buffer.concat([p, Buffer.alloc(1)]), Buffer.concat([p, Buffer.from(rng.bytes(16))]));
      // The same ciphertext under other counters, among them far-ahead ones that would wreck the window if
      // it moved before authentication.
      const lo = Buffer.from(p).readUInt32LE(8);
      forged.push(withCounter(p, 0xffffffff, 0xffffffff), withCounter(p, 0, 0x80000000), withCounter(p, lo + 1, 0), withCounter(p, lo + 100_000, 0));
      // Pure forgeries: a's real receiver index on b, a far-ahead counter, random ciphertext of several sizes.
      for (const len of [32, 48, 128, 1440]) {
        const m = Buffer.from(rng.bytes(len));
        m.writeUInt32LE(TYPE_DATA, 0);
        Buffer.from(p).copy(m, 4, 4, 8);
        m.writeUInt32LE(rng.u32(), 8);
        m.writeUInt32LE(rng.pick([0, 1, 0x40000000, rng.u32()]), 12);
        forged.push(m);
      }
    }
    const s0 = await snapshot(t);
    const bad = await sendFrom(t.a, THIRD, forged.map((f) => ({ hex: hex(f), addr: t.b.underlay4, port: t.b.port })));
    await sleep(300);
    const s1 = await snapshot(t);
    ctx.diagnostic(`${bad.sent} forged/bit-flipped datagrams from 5 unseen packets`);
    assert.equal(bad.sent, forged.length);
    assertOnlyGenuine(s0, s1, 'forgeries');
    assert.equal(s1.b.endpoint, `${t.a.underlay4}:${t.a.port}`, 'no forgery moved b\'s endpoint for a');
    assert.equal(s1.b.inEchos, s0.b.inEchos, 'no forged packet was delivered to b\'s kernel');
    assert.deepEqual(bad.received, [], 'nothing answered a forgery');

    // Positive control: the untouched packets, from the same foreign address, are fresh and authentic.
    const good = await sendFrom(t.a, THIRD, unseen.map((c) => ({ hex: hex(c.payload), addr: t.b.underlay4, port: t.b.port })), 1000);
    const s2 = await snapshot(t);
    const sizes = unseen.reduce((s, c) => s + BigInt(c.payload.length), 0n);
    assert.equal(s2.b.rx - s1.b.rx, s2.a.tx - s1.a.tx + sizes, `the genuine packets count exactly their ${sizes} bytes (${show({ s1, s2 })})`);
    assert.equal(s2.b.inEchos - s1.b.inEchos, 5, 'all 5 echo requests were delivered: the window did not move');
    assert.equal(s2.b.endpoint, `${THIRD}:${good.port}`, 'authenticated packets from a new address move the endpoint');
    assert.ok(good.received.filter((r) => r.type === TYPE_DATA).length >= 5, `b's echo replies went to the new endpoint: ${show(good.received)}`);
    // a's next packet moves b's endpoint back to a's real address.
    await mustPing(t, t.a, t.b.tunnel4);
    const [, ep] = await peerRow(t, t.b, 'endpoints');
    assert.equal(ep, `${t.a.underlay4}:${t.a.port}`);
    await mustPing(t, t.b, t.a.tunnel4);
  });
});
