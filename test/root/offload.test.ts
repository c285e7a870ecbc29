// Offload as a user runs it (root). TUN: by default the TUN carries a virtio_net_hdr (TSO super-packets
// split on read, GRO on write) and TCP and full-MTU pings work both ways; WGTS_TUN_OFFLOAD=0 falls back to
// plain packets with the same traffic; and an offload side interoperates with a plain side. UDP: by default
// datagrams leave in GSO runs (seen on the veth as frames far above its MTU) and arrive through UDP_GRO;
// WGTS_UDP_OFFLOAD=0 sends one datagram per frame with the same traffic; each falls back alone. Streams of
// seeded random bytes arrive byte-exact both ways, wgts to wgts and wgts to wireguard-go. UDP_SEGMENT senders'
// super-packets (USO, where the kernel has it) arrive as the datagrams they were.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { release } from 'node:os';
import { fileURLToPath } from 'node:url';
import { requireRoot, Topology, type Host } from '../harness/netns.js';

const USOSEND = fileURLToPath(new URL('../helpers/usosend.js', import.meta.url));

const STEP = { timeout: 60_000 };

async function vnetHdr(t: Topology, h: Host): Promise<string> {
  const r = await t.exec(h, ['ip', '-d', 'link', 'show', h.ifname]);
  const m = /vnet_hdr (on|off)/.exec(r.stdout);
  assert.ok(m, `ip -d link shows the tun details:\n${r.stdout}`);
  return m[1];
}

/** iperf3 TCP for 2 s from a to b (reverse: b to a); the received rate in Mbit/s. */
async function tcp(t: Topology, reverse: boolean): Promise<number> {
  const server = t.exec(t.b, ['iperf3', '-s', '-1', '-B', t.b.tunnel4], { timeoutMs: 20_000 });
  await new Promise((r) => setTimeout(r, 300));
  const c = await t.exec(t.a, ['iperf3', '-c', t.b.tunnel4, '-t', '2', '-J', ...(reverse ? ['-R'] : [])], { timeoutMs: 20_000 });
  await server;
  assert.equal(c.code, 0, `iperf3: ${c.stderr}`);
  return JSON.parse(c.stdout).end.sum_received.bits_per_second / 1e6;
}

/**
 * Streams 48 MB of seeded pseudo-random bytes over one TCP connection from `from` to `to`'s tunnel address and
 * returns both ends' SHA-256: TSO super-packets split on read and GRO super-packets written in place must
 * carry every byte exactly (a wrong merge or split would corrupt data that TCP checksums no longer cover).
 */
async function transfer(t: Topology, from: Host, to: Host, v6: boolean): Promise<{ sent: string; got: string }> {
  const addr = v6 ? to.tunnel6 : to.tunnel4;
  const port = 5399;
  const server = t.exec(to, ['node', '-e', `
    const h = require('crypto').createHash('sha256');
    const srv = require('net').createServer((c) => { c.on('data', (d) => h.update(d)); c.on('end', () => { console.log(h.digest('hex')); srv.close(); }); });
    srv.listen(${port}, '${addr}', () => console.log('ready'));`], { timeoutMs: 60_000 });
  await new Promise((r) => setTimeout(r, 700));
  const client = await t.exec(from, ['node', '-e', `
    const h = require('crypto').createHash('sha256');
    const c = require('net').connect(${port}, '${addr}');
    let x = 0x9e3779b9, left = 48 * 1024 * 1024;
    const chunk = () => { const b = Buffer.alloc(Math.min(left, 1 << 20)); for (let i = 0; i < b.length; i += 4) { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; b.writeInt32LE(x | 0, i); } left -= b.length; return b; };
    const pump = () => { while (left > 0) { const b = chunk(); h.update(b); if (!c.write(b)) return c.once('drain', pump); } c.end(() => console.log(h.digest('hex'))); };
    c.on('connect', pump);`], { timeoutMs: 60_000 });
  const srv = await server;
  assert.equal(client.code, 0, `client: ${client.stderr}`);
  assert.equal(srv.code, 0, `server: ${srv.stderr}`);
  return { sent: client.stdout.trim(), got: srv.stdout.trim().split('\n').pop()! };
}

/**
 * UDP_SEGMENT senders in `from` (IPv4, then IPv6) each give 30 sends of 10 datagrams of 1200 bytes; `to`
 * must receive every datagram separately, with its own content (datagram k starts with k and is filled
 * with k): with USO the TUN hands the daemon each send as one super-packet, which it splits.
 */
async function usoTraffic(t: Topology, from: Host, to: Host): Promise<void> {
  for (const addr of [to.tunnel4, to.tunnel6]) {
    const recv = t.exec(to, ['node', '-e', `
      const s = require('dgram').createSocket('${addr.includes(':') ? 'udp6' : 'udp4'}');
      const seen = new Set(); let bad = 0, timer;
      const done = () => { console.log(JSON.stringify({ got: seen.size, bad })); s.close(); };
      s.on('message', (m) => {
        const k = m.readUInt32BE(0);
        if (m.length !== 1200 || k >= 300 || m.subarray(4).some((x) => x !== (k & 255))) bad++; else seen.add(k);
        clearTimeout(timer); timer = setTimeout(done, 1500);
      });
      s.bind(5398, '${addr}', () => { console.log('ready'); timer = setTimeout(done, 15000); });`], { timeoutMs: 30_000 });
    await new Promise((r) => setTimeout(r, 700));
    const send = await t.exec(from, ['node', USOSEND, addr, '5398', '30', '10', '1200'], { timeoutMs: 20_000 });
    assert.equal(send.code, 0, `usosend: ${send.stderr}`);
    assert.deepEqual(JSON.parse(send.stdout), { sent: 300 });
    const r = await recv;
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout.trim().split('\n').pop()!), { got: 300, bad: 0 }, `${from.name} -> ${addr}`);
  }
}

/** USO on the TUN (TUN_F_USO4/USO6) came with Linux 6.2. */
const kernelHasUso = ((): boolean => {
  const [major, minor] = release().split('.').map(Number);
  return major > 6 || (major === 6 && minor >= 2);
})();

async function exact(t: Topology): Promise<void> {
  for (const [from, to] of [[t.a, t.b], [t.b, t.a]] as const) {
    for (const v6 of [false, true]) {
      const { sent, got } = await transfer(t, from, to, v6);
      assert.match(sent, /^[0-9a-f]{64}$/);
      assert.equal(got, sent, `${from.name} -> ${to.name} over IPv${v6 ? 6 : 4}: the bytes differ`);
    }
  }
}

async function traffic(t: Topology): Promise<void> {
  for (const [from, to] of [[t.a, t.b], [t.b, t.a]] as const) {
    const p = await t.exec(from, ['ping', '-M', 'do', '-s', '1392', '-c', '3', '-i', '0.2', '-W', '2', to.tunnel4], { timeoutMs: 15_000 });
    assert.equal(p.code, 0, `full-MTU DF ping ${from.name} -> ${to.name}:\n${p.stdout}`);
    const p6 = await t.exec(from, ['ping', '-M', 'do', '-s', '1372', '-c', '3', '-i', '0.2', '-W', '2', to.tunnel6], { timeoutMs: 15_000 });
    assert.equal(p6.code, 0, `full-MTU DF ping6 ${from.name} -> ${to.name}:\n${p6.stdout}`);
  }
  for (const reverse of [false, true]) {
    const mbit = await tcp(t, reverse);
    assert.ok(mbit > 50, `TCP ${reverse ? 'b->a' : 'a->b'} moved only ${mbit.toFixed(0)} Mbit/s`);
  }
}

/** The largest UDP payload tcpdump sees on h's veth while a's TCP stream to b runs. */
async function largestDatagram(t: Topology, h: Host): Promise<number> {
  const dump = t.exec(h, ['timeout', '8', 'tcpdump', '-n', '-l', '-q', '-c', '400', '-i', t.veth[h.name], 'udp'], { timeoutMs: 12_000 });
  await new Promise((r) => setTimeout(r, 800)); // tcpdump needs a moment before it captures
  await tcp(t, false);
  const d = await dump;
  const lens = [...d.stdout.matchAll(/UDP, length (\d+)/g)].map((m) => Number(m[1]));
  assert.ok(lens.length > 50, `tcpdump saw the stream:\n${d.stdout.slice(0, 2000)}\n${d.stderr}`);
  return Math.max(...lens);
}

const udpOffloadLog = (t: Topology, h: Host): string => /UDP GSO (on|off), GRO (on|off)/.exec(t.log(h))?.[0] ?? t.log(h);

describe('UDP offload', () => {
  it('is on by default: GSO runs leave as one frame each, GRO takes them whole', STEP, async () => {
    requireRoot();
    const t = await Topology.create({ impls: ['wgts', 'wgts'] });
    try {
      assert.equal(udpOffloadLog(t, t.a), 'UDP GSO on, GRO on');
      assert.equal(udpOffloadLog(t, t.b), 'UDP GSO on, GRO on');
      const largest = await largestDatagram(t, t.a);
      assert.ok(largest > 1500 * 4, `GSO runs are frames of many datagrams (largest UDP payload seen: ${largest})`);
      await traffic(t);
    } finally {
      await t.close();
    }
  });

  it('WGTS_UDP_OFFLOAD=0 sends datagram by datagram with the same traffic', STEP, async () => {
    requireRoot();
    const t = await Topology.create({ impls: ['wgts', 'wgts'], env: { WGTS_UDP_OFFLOAD: '0' } });
    try {
      assert.equal(udpOffloadLog(t, t.a), 'UDP GSO off, GRO off');
      const largest = await largestDatagram(t, t.a);
      assert.ok(largest <= 1452, `no datagram larger than MTU 1420 + 32 (largest seen: ${largest})`);
      await traffic(t);
    } finally {
      await t.close();
    }
  });

  it('a GSO sender and a wireguard-go receiver (no GRO) interoperate both ways', STEP, async () => {
    requireRoot();
    const t = await Topology.create({ impls: ['wgts', 'wggo'] });
    try {
      await traffic(t);
    } finally {
      await t.close();
    }
  });
});

describe('TUN offload', () => {
  it('is on by default and carries TCP and full-MTU pings both ways', STEP, async () => {
    requireRoot();
    const t = await Topology.create({ impls: ['wgts', 'wgts'] });
    try {
      assert.equal(await vnetHdr(t, t.a), 'on');
      assert.equal(await vnetHdr(t, t.b), 'on');
      await traffic(t);
      await exact(t);
    } finally {
      await t.close();
    }
  });

  it('USO where the kernel has it: UDP_SEGMENT super-packets are split into the same datagrams, both ways', STEP, async () => {
    requireRoot();
    const t = await Topology.create({ impls: ['wgts', 'wgts'] });
    try {
      for (const h of [t.a, t.b]) assert.match(t.log(h), kernelHasUso ? /TUN offload TSO\+USO/ : /TUN offload TSO,/);
      await usoTraffic(t, t.a, t.b);
      await usoTraffic(t, t.b, t.a);
    } finally {
      await t.close();
    }
  });

  it('WGTS_TUN_OFFLOAD=0 falls back to plain packets with the same traffic', STEP, async () => {
    requireRoot();
    const t = await Topology.create({ impls: ['wgts', 'wgts'], env: { WGTS_TUN_OFFLOAD: '0' } });
    try {
      assert.equal(await vnetHdr(t, t.a), 'off');
      assert.equal(await vnetHdr(t, t.b), 'off');
      await traffic(t);
    } finally {
      await t.close();
    }
  });

  it('an offload side and a wireguard-go side interoperate', STEP, async () => {
    requireRoot();
    const t = await Topology.create({ impls: ['wgts', 'wggo'] });
    try {
      assert.equal(await vnetHdr(t, t.a), 'on');
      await traffic(t);
      await exact(t);
    } finally {
      await t.close();
    }
  });
});
