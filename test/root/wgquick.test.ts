// wg-quick driving wgts (root): WG_QUICK_USERSPACE_IMPLEMENTATION=bin/wgts in namespace a, host b running
// wgts or wireguard-go from the shared topology. A split tunnel (AllowedIPs = one /32) and a full tunnel
// (0.0.0.0/0: fwmark 51820 and policy routing), where a's underlay is reachable only through a default
// route, so our own UDP packets would loop into the tunnel unless the daemon sets SO_MARK.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { alive, requireRoot, run, socketPath, Topology, waitUntil, WGTS_BIN, type Impl } from '../harness/netns.js';

const STEP = { timeout: 45_000 };

function config(t: Topology, allowed: string): string {
  return [
    '[Interface]',
    `PrivateKey = ${t.a.privateKey}`,
    `Address = ${t.a.tunnel4}/24`,
    `ListenPort = ${t.a.port}`,
    '',
    '[Peer]',
    `PublicKey = ${t.b.publicKey}`,
    `AllowedIPs = ${allowed}`,
    `Endpoint = ${t.b.underlay4}:${t.b.port}`,
    '',
  ].join('\n');
}

/** `wg-quick up|down CONF` in a's namespace; output (and the daemon's log) goes to a file, not a pipe the daemon would keep open. */
async function wgQuick(t: Topology, cmd: 'up' | 'down', conf: string): Promise<string> {
  const log = join(t.dir, `wg-quick-${cmd}.log`);
  const r = await run(['ip', 'netns', 'exec', t.a.ns, 'sh', '-c', 'wg-quick "$1" "$2" > "$3" 2>&1', 'sh', cmd, conf, log], {
    timeoutMs: 20_000,
    env: { ...process.env, WG_QUICK_USERSPACE_IMPLEMENTATION: WGTS_BIN, LOG_LEVEL: 'verbose' },
  });
  const out = existsSync(log) ? readFileSync(log, 'utf8') : '';
  assert.equal(r.code, 0, `wg-quick ${cmd} failed (${r.code}):\n${out}${r.stderr}`);
  return out;
}

async function mustPing(t: Topology, to: string): Promise<void> {
  const r = await t.exec(t.a, ['ping', '-c', '3', '-i', '0.2', '-W', '2', to], { timeoutMs: 15_000 });
  assert.equal(r.code, 0, `ping ${to} from a failed:\n${r.stdout}${r.stderr}\n--- a ---\n${t.log(t.a).slice(-1500)}`);
}

/** wg-quick down: the daemon exits, its socket and the link are gone, within ~3 s. */
async function downAndCheck(t: Topology, conf: string, pid: number): Promise<void> {
  await wgQuick(t, 'down', conf);
  assert.ok(await waitUntil(() => !alive(pid), 3000), `daemon ${pid} is gone after wg-quick down`);
  assert.equal(existsSync(socketPath(t.a.ifname)), false, 'its socket is removed');
  assert.notEqual((await t.exec(t.a, ['ip', 'link', 'show', t.a.ifname])).code, 0, 'the link is gone');
}

for (const peerImpl of ['wgts', 'wggo'] as Impl[]) {
  describe(`wg-quick with wgts, peer running ${peerImpl}`, () => {
    it('split tunnel (AllowedIPs = 203.0.113.2/32): up, ping, wg show, down', STEP, async () => {
      requireRoot();
      const t = await Topology.create({ impls: ['wgts', peerImpl], daemons: 'b-only' });
      try {
        const conf = join(t.dir, `${t.a.ifname}.conf`);
        writeFileSync(conf, config(t, `${t.b.tunnel4}/32`), { mode: 0o600 });
        const out = await wgQuick(t, 'up', conf);
        assert.match(out, new RegExp(`${WGTS_BIN.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} ${t.a.ifname}`), 'wg-quick fell back to our daemon');
        const pid = t.daemonPid(t.a);
        assert.ok(pid, `a wgts daemon runs in a:\n${out}`);
        await mustPing(t, t.b.tunnel4);
        const show = await t.wg(t.a, ['show', t.a.ifname]);
        assert.match(show, new RegExp(`peer: ${t.b.publicKey.replace(/[+/]/g, '\\$&')}`));
        assert.match(show, /latest handshake: /);
        assert.match(show, /allowed ips: 203\.0\.113\.2\/32/);
        const route = await t.exec(t.a, ['ip', 'route', 'get', t.b.tunnel4]);
        assert.match(route.stdout, new RegExp(`dev ${t.a.ifname}`));
        await downAndCheck(t, conf, pid);
      } finally {
        await t.close();
      }
    });

    it('full tunnel (AllowedIPs = 0.0.0.0/0): fwmark 51820, policy routing, ping b and an outside address, down', STEP, async () => {
      requireRoot();
      const t = await Topology.create({ impls: ['wgts', peerImpl], daemons: 'b-only' });
      try {
        // a reaches the underlay only through a default route (no connected /24): unmarked packets to b's
        // endpoint go into the tunnel under wg-quick's rules, so only SO_MARK gets our UDP out.
        const va = t.veth.a;
        for (const argv of [['addr', 'del', `${t.a.underlay4}/24`, 'dev', va], ['addr', 'add', `${t.a.underlay4}/32`, 'dev', va], ['route', 'add', 'default', 'dev', va]]) {
          const r = await t.exec(t.a, ['ip', ...argv]);
          assert.equal(r.code, 0, `ip ${argv.join(' ')}: ${r.stderr}`);
        }
        // The "outside" address lives behind b.
        assert.equal((await t.exec(t.b, ['ip', 'addr', 'add', '198.18.0.1/32', 'dev', 'lo'])).code, 0);

        const conf = join(t.dir, `${t.a.ifname}.conf`);
        writeFileSync(conf, config(t, '0.0.0.0/0'), { mode: 0o600 });
        const out = await wgQuick(t, 'up', conf);
        const pid = t.daemonPid(t.a);
        assert.ok(pid, `a wgts daemon runs in a:\n${out}`);

        assert.equal((await t.wg(t.a, ['show', t.a.ifname, 'fwmark'])).trim(), '0xca6c', 'fwmark 51820');
        const rules = (await t.exec(t.a, ['ip', '-4', 'rule'])).stdout;
        assert.match(rules, /not from all fwmark 0xca6c lookup 51820/);
        assert.match(rules, /lookup main suppress_prefixlength 0/);
        const unmarked = (await t.exec(t.a, ['ip', 'route', 'get', t.b.underlay4])).stdout;
        const marked = (await t.exec(t.a, ['ip', 'route', 'get', t.b.underlay4, 'mark', '51820'])).stdout;
        assert.match(unmarked, new RegExp(`dev ${t.a.ifname}`), `an unmarked packet to the endpoint would enter the tunnel: ${unmarked}`);
        assert.match(marked, new RegExp(`dev ${va}`), `a marked one leaves by the veth: ${marked}`);

        await mustPing(t, t.b.tunnel4);
        await mustPing(t, '198.18.0.1');
        const [, rx, tx] = (await t.wg(t.a, ['show', t.a.ifname, 'transfer'])).trim().split('\t');
        assert.ok(Number(rx) > 0 && Number(tx) > 0, `transfer ${rx}/${tx}`);

        // Negative control: without the mark our UDP to b takes the tunnel route and never reaches b.
        await t.wg(t.a, ['set', t.a.ifname, 'fwmark', '0']);
        const lost = await t.exec(t.a, ['ping', '-c', '2', '-i', '0.2', '-W', '1', '198.18.0.1'], { timeoutMs: 10_000 });
        assert.notEqual(lost.code, 0, `with fwmark 0 the tunnel must not work here:\n${lost.stdout}`);
        await t.wg(t.a, ['set', t.a.ifname, 'fwmark', '51820']);
        await mustPing(t, '198.18.0.1');

        await downAndCheck(t, conf, pid);
        const after = (await t.exec(t.a, ['ip', '-4', 'rule'])).stdout;
        assert.doesNotMatch(after, /51820|suppress_prefixlength/, `wg-quick down removed its rules:\n${after}`);
      } finally {
        await t.close();
      }
    });
  });
}
