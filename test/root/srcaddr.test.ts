// Source address changes on the sending host (issue 5 item 5): a has two underlay addresses on its veth and
// b knows a by the one a's packets come from. a answers from the address b's packets reached it on (sticky
// source, IP_PKTINFO, as the kernel module does). When that address disappears, or a better route through
// another interface appears, a's traffic must leave from another address, the tunnel must work again within
// a bounded time, and b must learn a's new endpoint from authenticated traffic alone (`wg show endpoints`).
// A route on the same interface that prefers the other address does not move the source. IPv4 and IPv6.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { requireRoot, sleep, Topology, type Host } from '../harness/netns.js';

const STEP = { timeout: 60_000 };
/** How long the tunnel may take to come back: a few pings' worth, no handshake timer is involved. */
const RECOVERY_MS = 5000;

interface Family {
  name: string;
  ipv6: boolean;
  /** a's second underlay address, in the underlay prefix. */
  second: string;
  prefixLen: number;
  endpoint: (addr: string, port: number) => string;
}

const FAMILIES: Family[] = [
  { name: 'IPv4', ipv6: false, second: '198.51.100.11', prefixLen: 24, endpoint: (a, p) => `${a}:${p}` },
  { name: 'IPv6', ipv6: true, second: '2001:db8:ff::11', prefixLen: 64, endpoint: (a, p) => `[${a}]:${p}` },
];

async function ipNs(t: Topology, h: Host, args: string[]): Promise<void> {
  const r = await t.exec(h, ['ip', ...args]);
  assert.equal(r.code, 0, `ip ${args.join(' ')} in ${h.name}: ${r.stderr}`);
}

/** b's endpoint for a, as `wg show endpoints` prints it. */
async function endpointAtB(t: Topology): Promise<string> {
  const out = await t.wg(t.b, ['show', t.b.ifname, 'endpoints']);
  const row = out.trim().split('\n').map((l) => l.split('\t')).find((r) => r[0] === t.a.publicKey);
  assert.ok(row, `b lists a:\n${out}`);
  return row[1];
}

/** Pings `to` from h once a second (each waiting 1 s) until one answers; returns ms taken, or -1. */
async function pingUntilAnswered(t: Topology, h: Host, to: string, ms: number): Promise<number> {
  const start = Date.now();
  while (Date.now() - start < ms) {
    const r = await t.exec(h, ['ping', '-c', '1', '-W', '1', to], { timeoutMs: 5000 });
    if (r.code === 0) return Date.now() - start;
    await sleep(100);
  }
  return -1;
}

async function mustPing(t: Topology, h: Host, to: string): Promise<void> {
  const r = await t.exec(h, ['ping', '-c', '3', '-i', '0.2', '-W', '2', to], { timeoutMs: 15_000 });
  assert.equal(r.code, 0, `ping ${to} from ${h.name}: ${r.stdout}${r.stderr}`);
}

/**
 * a with two addresses; b configured with the first. Which one a's packets come from is the kernel's source
 * selection (IPv6 prefers the newer one here): `inUse` is the one b learned, `other` the address to move to.
 */
async function twoAddresses(f: Family, opts: { persistentKeepalive?: number } = {}): Promise<{ t: Topology; inUse: string; other: string }> {
  const t = await Topology.create({ ipv6Underlay: f.ipv6, ...opts });
  const first = f.ipv6 ? t.a.underlay6 : t.a.underlay4;
  const dev = t.veth.a;
  if (!f.ipv6) {
    // Without promotion, deleting the primary address takes every secondary of its prefix with it.
    const r = await t.exec(t.a, ['sysctl', '-w', `net.ipv4.conf.${dev}.promote_secondaries=1`]);
    assert.equal(r.code, 0, r.stderr);
  }
  await ipNs(t, t.a, ['addr', 'add', `${f.second}/${f.prefixLen}`, 'dev', dev, ...(f.ipv6 ? ['nodad'] : [])]);
  // With keepalives on both sides their first initiations cross at link-up, and one side's retry after
  // REKEY_TIMEOUT (5 s) settles it: hence the long bound for the first answer.
  assert.ok((await pingUntilAnswered(t, t.a, t.b.tunnel4, 15_000)) >= 0, 'the tunnel works before the change');
  const ep = await endpointAtB(t);
  const inUse = [first, f.second].find((x) => ep === f.endpoint(x, t.a.port));
  assert.ok(inUse, `b knows a by one of a's addresses, not ${ep}`);
  return { t, inUse, other: inUse === first ? f.second : first };
}

async function closeTopology(t: Topology): Promise<void> {
  await t.close();
  assert.deepEqual(t.leftovers(), []);
}

describe('source address changes (wgts <-> wgts)', () => {
  for (const f of FAMILIES) {
    it(`${f.name}: a's source address is deleted; a's traffic recovers and b learns the new endpoint`, STEP, async (ctx) => {
      requireRoot();
      const { t, inUse, other } = await twoAddresses(f);
      try {
        await ipNs(t, t.a, ['addr', 'del', `${inUse}/${f.prefixLen}`, 'dev', t.veth.a]);
        const took = await pingUntilAnswered(t, t.a, t.b.tunnel4, RECOVERY_MS);
        ctx.diagnostic(`a -> b answered again after ${took} ms`);
        assert.ok(took >= 0, `the tunnel did not recover within ${RECOVERY_MS} ms of the address going away`);
        assert.equal(await endpointAtB(t), f.endpoint(other, t.a.port), 'b learned a\'s new address');
        await mustPing(t, t.b, t.a.tunnel4);
        await mustPing(t, t.a, t.b.tunnel6);
      } finally {
        await closeTopology(t);
      }
    });

    it(`${f.name}: a route preferring a's other address on the same interface: a keeps the source b reached (sticky)`, STEP, async () => {
      requireRoot();
      const { t, inUse, other } = await twoAddresses(f);
      try {
        const peer = f.ipv6 ? t.b.underlay6 : t.b.underlay4;
        await ipNs(t, t.a, [...(f.ipv6 ? ['-6'] : []), 'route', 'add', `${peer}/${f.ipv6 ? 128 : 32}`, 'dev', t.veth.a, 'src', other]);
        await mustPing(t, t.a, t.b.tunnel4);
        await mustPing(t, t.b, t.a.tunnel4);
        // The kernel module and wireguard-go both answer from the address the peer's packets were sent to
        // while the route still leaves through the interface they came in on.
        assert.equal(await endpointAtB(t), f.endpoint(inUse, t.a.port), 'a still answers from the address b reaches it on');
      } finally {
        await closeTopology(t);
      }
    });
  }

  it('IPv4: a better route through another interface resets the sticky source; b follows a there', STEP, async () => {
    requireRoot();
    const f = FAMILIES[0];
    const { t, inUse } = await twoAddresses(f);
    const [x, y] = [`wxa${t.tag}`, `wxb${t.tag}`];
    const [ax, by] = ['198.51.100.21', '198.51.100.22'];
    try {
      // A second link between the hosts, and a more specific route from a to b's address over it.
      await ipNs(t, t.a, ['link', 'add', x, 'type', 'veth', 'peer', 'name', y, 'netns', t.b.ns]);
      await ipNs(t, t.a, ['addr', 'add', `${ax}/32`, 'dev', x]);
      await ipNs(t, t.b, ['addr', 'add', `${by}/32`, 'dev', y]);
      await ipNs(t, t.a, ['link', 'set', x, 'up']);
      await ipNs(t, t.b, ['link', 'set', y, 'up']);
      await ipNs(t, t.b, ['route', 'add', `${ax}/32`, 'dev', y]);
      await mustPing(t, t.b, t.a.tunnel4); // a now holds b's endpoint with the sticky source `inUse`
      await ipNs(t, t.a, ['route', 'add', `${t.b.underlay4}/32`, 'dev', x, 'src', ax]);
      const took = await pingUntilAnswered(t, t.a, t.b.tunnel4, RECOVERY_MS);
      assert.ok(took >= 0, 'the tunnel works over the new route');
      assert.notEqual(inUse, ax);
      // The route check runs at most once a second: give it a few pings.
      let ep = '';
      for (let i = 0; i < 10 && ep !== f.endpoint(ax, t.a.port); i++) {
        await mustPing(t, t.a, t.b.tunnel4);
        ep = await endpointAtB(t);
      }
      assert.equal(ep, f.endpoint(ax, t.a.port), 'b learned a\'s address on the new interface');
      await mustPing(t, t.b, t.a.tunnel4);
    } finally {
      await closeTopology(t);
    }
  });

  it('IPv4: with a persistent keepalive on a, b reaches a again after a\'s address change without a sending data', STEP, async (ctx) => {
    requireRoot();
    const f = FAMILIES[0];
    const { t, inUse, other } = await twoAddresses(f, { persistentKeepalive: 1 });
    try {
      await ipNs(t, t.a, ['addr', 'del', `${inUse}/${f.prefixLen}`, 'dev', t.veth.a]);
      // Only b sends: its packets go to a's old address until a's next keepalive (from the new one) arrives.
      const took = await pingUntilAnswered(t, t.b, t.a.tunnel4, RECOVERY_MS);
      ctx.diagnostic(`b -> a answered again after ${took} ms`);
      assert.ok(took >= 0, `b could not reach a within ${RECOVERY_MS} ms`);
      assert.equal(await endpointAtB(t), f.endpoint(other, t.a.port), 'b learned a\'s new address from a keepalive');
    } finally {
      await closeTopology(t);
    }
  });
});
