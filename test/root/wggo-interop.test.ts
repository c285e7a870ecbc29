// Live interop with the real wireguard-go (root): wireguard-go in one namespace, our Device in another
// (test/interop/wggo-peer.ts). Both directions of the handshake, then ICMP through the tunnel, checked from
// both sides: our child's events and `wg show` on wireguard-go's interface. Never skips: without root or the
// tools it fails and says what is missing.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { missingPrerequisites, NET, WGTS_KEYS, WgGoInterop, type ChildEvent } from '../interop/wggo-peer.js';

const STEP = 20_000; // each test is one step; all three together take well under 30 s

function requireLive(): void {
  const missing = missingPrerequisites();
  if (missing.length) assert.fail(`the wireguard-go interop test cannot run here:\n  ${missing.join('\n  ')}`);
}

const type = (e: ChildEvent): number => parseInt((e.hex as string).slice(0, 2), 16);

/** `wg show` in wireguard-go's namespace: our peer's handshake age and counters. */
async function wggoView(net: WgGoInterop): Promise<{ handshake: number; rx: bigint; tx: bigint; endpoint: string }> {
  const row = async (field: string): Promise<string[]> => {
    const rows = await net.wgShow(field);
    const r = rows.find((x) => x[0] === WGTS_KEYS.publicKey);
    assert.ok(r, `wg show ${field} lists our peer: ${JSON.stringify(rows)}`);
    return r;
  };
  const [, hs] = await row('latest-handshakes');
  const [, rx, tx] = await row('transfer');
  const [, endpoint] = await row('endpoints');
  return { handshake: Number(hs), rx: BigInt(rx), tx: BigInt(tx), endpoint };
}

function assertRecentHandshake(seconds: number): void {
  const now = Date.now() / 1000;
  assert.ok(seconds > 0, 'wg show latest-handshakes is non-zero');
  assert.ok(Math.abs(now - seconds) < 60, `handshake time ${seconds} is about now (${Math.round(now)})`);
}

async function closeAndCheck(net: WgGoInterop): Promise<void> {
  await net.close();
  assert.deepEqual(net.leftovers(), [], 'nothing of this run is left behind');
}

test('(i) wireguard-go initiates: its ping to our Device gets answers', { timeout: STEP }, async () => {
  requireLive();
  const net = await WgGoInterop.start();
  try {
    const child = net.child!;
    const ping = await net.inA(['ping', '-c', '3', '-W', '2', NET.tunnelB], 15_000);
    assert.equal(ping.code, 0, `ping from wireguard-go's namespace failed:\n${ping.stdout}${ping.stderr}\n${child.describe()}\n${net.wggoLog.slice(-15).join('\n')}`);
    assert.match(ping.stdout, /3 packets transmitted, 3 received/);

    const v = await wggoView(net);
    assertRecentHandshake(v.handshake);
    assert.ok(v.rx > 0n && v.tx > 0n, `transfer counters non-zero: rx ${v.rx} tx ${v.tx}`);
    assert.equal(v.endpoint, net.wgtsEndpoint);

    const recv = child.of('recv');
    assert.equal(type(recv[0]), 1, 'the first datagram we got is wireguard-go\'s initiation');
    assert.equal(child.of('send').filter((e) => type(e) === 2).length, 1, 'we answered with one response');
    const echoes = child.of('echo-request');
    assert.deepEqual(echoes.map((e) => [e.src, e.seq, e.ok]), [1, 2, 3].map((s) => [NET.tunnelA, s, true]));
    assert.deepEqual(child.of('drop'), [], 'our Device dropped nothing');
    assert.ok(net.wggoLog.some((l) => /Received handshake response/.test(l)), 'wireguard-go logged our response');
  } finally {
    await closeAndCheck(net);
  }
});

/** We initiate: the child pings wireguard-go's address; the kernel behind wireguard-go answers. */
async function weInitiate(ipv6Underlay: boolean): Promise<void> {
  requireLive();
  const net = await WgGoInterop.start({ ipv6Underlay });
  try {
    const child = net.child!;
    child.command({ cmd: 'ping', dst: NET.tunnelA, count: 3, intervalMs: 200 });
    for (const seq of [1, 2, 3]) {
      const r = await child.waitFor((e) => e.ev === 'echo-reply' && e.seq === seq, 10_000, `echo reply ${seq} from ${NET.tunnelA}`);
      assert.equal(r.src, NET.tunnelA);
      assert.equal(r.ok, true, 'the reply\'s IPv4 and ICMP checksums verify');
    }
    const sent = child.of('send');
    assert.equal(type(sent[0]), 1, 'our first datagram is our handshake initiation');
    assert.equal(sent[0].to, net.wggoEndpoint);
    assert.equal(child.of('recv').filter((e) => type(e) === 2).length, 1, 'wireguard-go answered with one response');
    assert.deepEqual(child.of('drop'), [], 'our Device dropped nothing');

    const v = await wggoView(net);
    assertRecentHandshake(v.handshake);
    assert.ok(v.rx > 0n && v.tx > 0n, `transfer counters non-zero: rx ${v.rx} tx ${v.tx}`);
    assert.equal(v.endpoint, net.wgtsEndpoint, 'wireguard-go learned our endpoint');
    assert.ok(net.wggoLog.some((l) => /Received handshake initiation/.test(l)), 'wireguard-go logged our initiation');
  } finally {
    await closeAndCheck(net);
  }
}

test('(ii) we initiate: our echo requests reach wireguard-go\'s host and its replies come back', { timeout: STEP }, () => weInitiate(false));

test('(iii) the same over an IPv6 underlay (2001:db8:ff::/64)', { timeout: STEP }, () => weInitiate(true));

test('no namespace or wireguard-go socket of this process is left', () => {
  requireLive();
  // Our names are <prefix><pid> and <prefix><pid>n<k> (wggo-peer.ts); anchored so another pid never matches.
  const ours = (prefix: string, suffix = '') => new RegExp(`^${prefix}${process.pid}(n\\d+)?${suffix}$`);
  const ns = (spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout ?? '')
    .split('\n').map((l) => l.split(/\s+/)[0]).filter((n) => ours('wgts[AB]').test(n));
  assert.deepEqual(ns, []);
  const socks = existsSync('/var/run/wireguard')
    ? readdirSync('/var/run/wireguard').filter((f) => ours('wgg', '\\.sock').test(f)) : [];
  assert.deepEqual(socks, []);
});
