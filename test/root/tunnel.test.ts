// Real tunnels between two namespaces (root): wgts <-> wgts and wgts <-> wireguard-go with each side
// initiating, driven only by `wg`, ping, iperf3 and tcpdump. Covers pings (v4, v6, full MTU with DF),
// throughput sanity, `wg show` counters, keepalive, ICMP unreachable, allowed-IPs changes, roaming, peer
// removal and an IPv6 underlay. Fails (never skips) without root or the tools (see missingPrerequisites).

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { requireRoot, sleep, Topology, type Host, type Impl } from '../harness/netns.js';

const STEP = { timeout: 30_000 };

/** `wg show IF <field>` rows for the one peer, as [publicKey, ...values]. */
async function peerRow(t: Topology, h: Host, field: string): Promise<string[]> {
  const out = await t.wg(h, ['show', h.ifname, field]);
  const row = out.trim().split('\n').map((l) => l.split('\t')).find((r) => r[0] === t.other(h).publicKey);
  assert.ok(row, `wg show ${h.ifname} ${field} lists the peer:\n${out}`);
  return row;
}

async function transfer(t: Topology, h: Host): Promise<{ rx: bigint; tx: bigint }> {
  const [, rx, tx] = await peerRow(t, h, 'transfer');
  return { rx: BigInt(rx), tx: BigInt(tx) };
}

async function ping(t: Topology, from: Host, to: string, extra: string[] = [], count = 3): Promise<{ code: number; out: string }> {
  const r = await t.exec(from, ['ping', ...extra, '-c', String(count), '-i', '0.2', '-W', '2', to], { timeoutMs: 15_000 });
  return { code: r.code, out: r.stdout + r.stderr };
}

async function mustPing(t: Topology, from: Host, to: string, extra: string[] = []): Promise<void> {
  const r = await ping(t, from, to, extra);
  assert.equal(r.code, 0, `ping ${extra.join(' ')} ${to} from ${from.name} (${from.impl}) failed:\n${r.out}`);
  assert.match(r.out, / 0% packet loss/, `no loss expected:\n${r.out}`);
}

async function mustNotPing(t: Topology, from: Host, to: string): Promise<string> {
  const r = await ping(t, from, to, [], 2);
  assert.notEqual(r.code, 0, `ping ${to} from ${from.name} was expected to fail but:\n${r.out}`);
  return r.out;
}

/** One iperf3 TCP run of 3 s from a to b (reverse: b sends); returns received Mbit/s. */
async function iperf(t: Topology, reverse: boolean): Promise<number> {
  const server = t.exec(t.b, ['iperf3', '-s', '-1', '-B', t.b.tunnel4], { timeoutMs: 20_000 });
  // Wait until the server listens rather than sleeping a guessed time.
  for (let i = 0; i < 40; i++) {
    const ss = await t.exec(t.b, ['ss', '-Hltn', 'sport = :5201']);
    if (ss.stdout.includes('5201')) break;
    await sleep(50);
  }
  const c = await t.exec(t.a, ['iperf3', '-c', t.b.tunnel4, '-t', '3', '-J', ...(reverse ? ['-R'] : [])], { timeoutMs: 20_000 });
  await server;
  assert.equal(c.code, 0, `iperf3 client failed: ${c.stderr}\n${c.stdout.slice(0, 2000)}`);
  const j = JSON.parse(c.stdout) as { end: { sum_received: { bits_per_second: number } } };
  return j.end.sum_received.bits_per_second / 1e6;
}

const wgtsHost = (t: Topology): Host => (t.a.impl === 'wgts' ? t.a : t.b);

const CONFIGS: { title: string; impls: [Impl, Impl] }[] = [
  { title: 'wgts initiates to wgts', impls: ['wgts', 'wgts'] },
  { title: 'wgts initiates to wireguard-go', impls: ['wgts', 'wggo'] },
  { title: 'wireguard-go initiates to wgts', impls: ['wggo', 'wgts'] },
];

for (const cfg of CONFIGS) {
  describe(`tunnel: ${cfg.title}`, () => {
    let topo: Topology | undefined;
    const T = (): Topology => {
      assert.ok(topo, 'topology was created');
      return topo;
    };
    // Only a knows an endpoint, so a is necessarily the initiator.
    before(async () => {
      requireRoot();
      topo = await Topology.create({ impls: cfg.impls, endpoints: 'a-knows-b' });
    });
    after(async () => {
      if (!topo) return;
      await topo.close();
      assert.deepEqual(topo.leftovers(), []);
    });

    it('pings over IPv4 and IPv6 both ways, a initiating', STEP, async () => {
      const t = T();
      await mustPing(t, t.a, t.b.tunnel4);
      await mustPing(t, t.a, t.b.tunnel6);
      await mustPing(t, t.b, t.a.tunnel4);
      await mustPing(t, t.b, t.a.tunnel6);
      // b learned a's endpoint from the handshake: proof that a initiated.
      const [, ep] = await peerRow(t, t.b, 'endpoints');
      assert.equal(ep, `${t.a.underlay4}:${t.a.port}`);
    });

    it('full-MTU pings with DF set (1420 MTU) pass, one byte more is refused locally', STEP, async () => {
      const t = T();
      await mustPing(t, t.a, t.b.tunnel4, ['-M', 'do', '-s', '1392']);
      await mustPing(t, t.a, t.b.tunnel6, ['-M', 'do', '-s', '1372']);
      await mustPing(t, t.b, t.a.tunnel4, ['-M', 'do', '-s', '1392']);
      const over = await ping(t, t.a, t.b.tunnel4, ['-M', 'do', '-s', '1393'], 1);
      assert.notEqual(over.code, 0);
      assert.match(over.out, /mtu ?= ?1420|message too long/i, over.out);
    });

    it('wg show: latest handshake set, transfer counters non-zero and growing on both sides', STEP, async () => {
      const t = T();
      const now = Date.now() / 1000;
      const before = { a: await transfer(t, t.a), b: await transfer(t, t.b) };
      for (const h of [t.a, t.b]) {
        const [, hs] = await peerRow(t, h, 'latest-handshakes');
        assert.ok(Number(hs) > 0 && Math.abs(Number(hs) - now) < 120, `${h.name}: latest handshake ${hs} is recent (now ${Math.round(now)})`);
        assert.ok(before[h.name].rx > 0n && before[h.name].tx > 0n, `${h.name}: counters non-zero ${JSON.stringify(before[h.name], (_, v) => String(v))}`);
      }
      await mustPing(t, t.a, t.b.tunnel4, ['-s', '1000']);
      const afterA = await transfer(t, t.a);
      const afterB = await transfer(t, t.b);
      // 3 echo requests and replies of 1028-byte IP packets: each direction grows by at least 3 * 1028.
      for (const [name, b0, b1] of [['a', before.a, afterA], ['b', before.b, afterB]] as const) {
        assert.ok(b1.tx - b0.tx >= 3n * 1028n, `${name}: tx grew ${b0.tx} -> ${b1.tx}`);
        assert.ok(b1.rx - b0.rx >= 3n * 1028n, `${name}: rx grew ${b0.rx} -> ${b1.rx}`);
      }
    });

    it('iperf3 TCP both directions, 3 s each, above a 50 Mbit/s sanity floor', { timeout: 40_000 }, async (ctx) => {
      const t = T();
      const up = await iperf(t, false);
      const down = await iperf(t, true);
      ctx.diagnostic(`a->b ${up.toFixed(0)} Mbit/s, b->a ${down.toFixed(0)} Mbit/s`);
      assert.ok(up > 50, `a -> b ${up.toFixed(1)} Mbit/s`);
      assert.ok(down > 50, `b -> a ${down.toFixed(1)} Mbit/s`);
    });

    it('ICMP host unreachable for a routed destination in no peer\'s allowed IPs (wgts side)', STEP, async () => {
      const t = T();
      const h = wgtsHost(t);
      await t.exec(h, ['ip', 'route', 'add', '198.18.0.1/32', 'dev', h.ifname]);
      try {
        const started = Date.now();
        const r = await t.exec(h, ['ping', '-c', '1', '-W', '3', '198.18.0.1'], { timeoutMs: 10_000 });
        assert.notEqual(r.code, 0, r.stdout);
        assert.match(r.stdout + r.stderr, /Destination Host Unreachable/, r.stdout + r.stderr);
        assert.ok(Date.now() - started < 2500, 'the error comes at once, not after the ping timeout');
      } finally {
        await t.exec(h, ['ip', 'route', 'del', '198.18.0.1/32', 'dev', h.ifname]);
      }
    });

    it('persistent keepalive 1 s on the wgts side: 32-byte keepalives seen on the wire, peer rx grows', STEP, async () => {
      const t = T();
      const h = wgtsHost(t);
      const o = t.other(h);
      const rx0 = (await transfer(t, o)).rx;
      // Only keepalives (UDP length 8 + 32 = 40) count toward -c 3: data still in flight from the previous
      // test (TCP teardown, say) must not use up the count.
      const filter = ['udp', 'and', 'src', 'host', h.underlay4, 'and', 'udp[4:2]', '=', '40'];
      const dump = t.exec(o, ['timeout', '6', 'tcpdump', '-n', '-l', '-c', '3', '-i', t.veth[o.name], ...filter], { timeoutMs: 10_000 });
      await sleep(800); // tcpdump needs a moment before it captures
      await t.wg(h, ['set', h.ifname, 'peer', o.publicKey, 'persistent-keepalive', '1']);
      try {
        const d = await dump;
        const keepalives = d.stdout.split('\n').filter((l) => /UDP, length 32$/.test(l.trim()));
        assert.ok(keepalives.length >= 3, `expected 3 keepalives within ~3 s, tcpdump saw:\n${d.stdout}\n${d.stderr}`);
        const rx1 = (await transfer(t, o)).rx;
        assert.ok(rx1 - rx0 >= 3n * 32n, `${o.name}'s rx grew by ${rx1 - rx0} bytes`);
        const [, ka] = await peerRow(t, h, 'persistent-keepalive');
        assert.equal(ka, '1');
      } finally {
        await t.wg(h, ['set', h.ifname, 'peer', o.publicKey, 'persistent-keepalive', '0']);
      }
    });

    it('allowed-IPs change takes effect: removing 203.0.113.2/32 stops IPv4, adding it back restores it', STEP, async () => {
      const t = T();
      const b4 = `${t.b.tunnel4}/32`;
      const b6 = `${t.b.tunnel6}/128`;
      await t.wg(t.a, ['set', t.a.ifname, 'peer', t.b.publicKey, 'allowed-ips', b6]);
      const [, ips] = await peerRow(t, t.a, 'allowed-ips');
      assert.equal(ips, b6);
      await mustNotPing(t, t.a, t.b.tunnel4);
      await mustPing(t, t.a, t.b.tunnel6);
      await t.wg(t.a, ['set', t.a.ifname, 'peer', t.b.publicKey, 'allowed-ips', `${b4},${b6}`]);
      await mustPing(t, t.a, t.b.tunnel4);
    });

    it('roaming: the responder changes its listen port and a learns the new endpoint', STEP, async () => {
      const t = T();
      const port = t.b.port + 100;
      await t.wg(t.b, ['set', t.b.ifname, 'listen-port', String(port)]);
      assert.equal((await t.wg(t.b, ['show', t.b.ifname, 'listen-port'])).trim(), String(port));
      // b's packets now come from the new port; a accepts them (authenticated) and moves the endpoint.
      await mustPing(t, t.b, t.a.tunnel4);
      const [, ep] = await peerRow(t, t.a, 'endpoints');
      assert.equal(ep, `${t.b.underlay4}:${port}`);
      await mustPing(t, t.a, t.b.tunnel4);
      await mustPing(t, t.a, t.b.tunnel6);
    });

    it('peer removal: traffic stops and wg show no longer lists the peer', STEP, async () => {
      const t = T();
      await t.wg(t.a, ['set', t.a.ifname, 'peer', t.b.publicKey, 'remove']);
      assert.equal((await t.wg(t.a, ['show', t.a.ifname, 'peers'])).trim(), '');
      assert.doesNotMatch(await t.wg(t.a, ['show', t.a.ifname]), /peer:/);
      await mustNotPing(t, t.a, t.b.tunnel4);
      await mustNotPing(t, t.b, t.a.tunnel4);
    });
  });
}

for (const impls of [['wgts', 'wgts'], ['wgts', 'wggo']] as [Impl, Impl][]) {
  describe(`tunnel over an IPv6 underlay: ${impls.join(' <-> ')}`, () => {
    it('endpoints are [2001:db8:ff::N]:port and pings work both ways', STEP, async () => {
      requireRoot();
      const t = await Topology.create({ impls, ipv6Underlay: true, endpoints: 'a-knows-b' });
      try {
        await mustPing(t, t.a, t.b.tunnel4);
        await mustPing(t, t.b, t.a.tunnel6);
        await mustPing(t, t.a, t.b.tunnel4, ['-M', 'do', '-s', '1392']);
        assert.equal((await peerRow(t, t.a, 'endpoints'))[1], `[${t.b.underlay6}]:${t.b.port}`);
        assert.equal((await peerRow(t, t.b, 'endpoints'))[1], `[${t.a.underlay6}]:${t.a.port}`);
      } finally {
        await t.close();
      }
    });
  });
}
