// Secrets stay secret (issue 5 item 8; root): at LOG_LEVEL debug, verbose and error, two daemons (one in
// the foreground with -f, one in daemon mode as wg-quick runs it) go through handshakes with pre-shared
// keys, rekeys, `wg set` / `wg setconf`, private key changes, bad UAPI input that carries key material,
// peer removal and shutdown; no private or pre-shared key may appear in their stdout/stderr in any
// encoding. And the UAPI socket is root's, 0700, in a 0755 folder: nobody else can connect.
// (Zeroing of key buffers: test/unit/zeroing.test.ts; the detector and UAPI messages: test/unit/log-secrets.test.ts.)

import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, lstatSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { findLeaks } from '../helpers/leaks.js';
import {
  alive, genKeyPair, run, sleep, socketPath, Topology, waitUntil, WG_RUN_DIR, WGTS_BIN, requireRoot,
} from '../harness/netns.js';
import { uapi } from '../helpers/uapi-client.js';

const LEVELS = ['debug', 'verbose', 'error'] as const;
// Protocol timers x0.03: REKEY_AFTER_TIME is 3.6 s, so a few seconds of pings see a rekey.
const TIMER_SCALE = '0.03';

const hex = (k: Uint8Array): string => Buffer.from(k).toString('hex');
const fromB64 = (s: string): Buffer => Buffer.from(s, 'base64');

async function latestHandshake(t: Topology): Promise<number> {
  const out = await t.wg(t.a, ['show', t.a.ifname, 'latest-handshakes']);
  return Number(out.trim().split('\t')[1] ?? 0);
}

async function mustPing(t: Topology, count: number, interval = '0.2'): Promise<void> {
  const p = await t.exec(t.a, ['ping', '-c', String(count), '-i', interval, '-W', '2', t.b.tunnel4], { timeoutMs: count * 1000 + 10_000 });
  assert.equal(p.code, 0, `ping a -> b: ${p.stdout}${p.stderr}`);
}

/**
 * Runs the whole scenario at one LOG_LEVEL; returns both daemons' complete output and the secrets used.
 * a runs in the foreground (stdout and stderr captured apart), b in daemon mode (parent and child to its log).
 */
async function scenario(level: string): Promise<{ output: string; secrets: Record<string, Uint8Array>; steps: string[] }> {
  const env = { LOG_LEVEL: level, WGTS_TIMER_SCALE: TIMER_SCALE };
  const t = await Topology.create({ daemons: 'b-only', env });
  const steps: string[] = [];
  let stdout = '';
  let stderr = '';
  const fg = spawn('ip', ['netns', 'exec', t.a.ns, WGTS_BIN, '-f', t.a.ifname], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  fg.stdout.setEncoding('latin1').on('data', (d: string) => (stdout += d));
  fg.stderr.setEncoding('latin1').on('data', (d: string) => (stderr += d));
  const exited = new Promise<number | null>((r) => fg.on('exit', (code) => r(code)));
  const psk1 = genKeyPair().privateKey; // any 32 random bytes make a pre-shared key
  const psk2 = genKeyPair().privateKey;
  const a2 = genKeyPair().privateKey;
  const bad = genKeyPair().privateKey;
  const secrets = {
    'a private key': fromB64(t.a.privateKey), 'b private key': fromB64(t.b.privateKey), 'psk 1': fromB64(psk1),
    'psk 2': fromB64(psk2), 'a second private key': fromB64(a2), 'key in bad UAPI input': fromB64(bad),
  };
  try {
    assert.ok(await waitUntil(() => existsSync(socketPath(t.a.ifname)), 10_000), `the foreground daemon starts: ${stdout}${stderr}`);
    await t.configure(t.a);
    const file = (name: string, text: string): string => {
      const p = join(t.dir, name);
      writeFileSync(p, text, { mode: 0o600 });
      return p;
    };

    // Pre-shared keys through `wg set`, a handshake, then pings long enough for a rekey.
    const psk1File = file('psk1', `${psk1}\n`);
    await t.wg(t.a, ['set', t.a.ifname, 'peer', t.b.publicKey, 'preshared-key', psk1File]);
    await t.wg(t.b, ['set', t.b.ifname, 'peer', t.a.publicKey, 'preshared-key', psk1File]);
    await mustPing(t, 3);
    const first = await latestHandshake(t);
    await mustPing(t, 12, '0.5');
    assert.ok(await latestHandshake(t) > first, 'a rekey happened during the pings');
    steps.push('handshake+rekey');

    // `wg setconf` with the private key and a new pre-shared key (the peer is replaced: a new handshake).
    const conf = file('a.conf', [
      '[Interface]', `PrivateKey = ${t.a.privateKey}`, `ListenPort = ${t.a.port}`, '',
      '[Peer]', `PublicKey = ${t.b.publicKey}`, `PresharedKey = ${psk2}`, `AllowedIPs = ${t.b.tunnel4}/32, ${t.b.tunnel6}/128`,
      `Endpoint = ${t.endpointOf(t.b)}`, '',
    ].join('\n'));
    await t.wg(t.a, ['setconf', t.a.ifname, conf]);
    await t.wg(t.b, ['set', t.b.ifname, 'peer', t.a.publicKey, 'preshared-key', file('psk2', `${psk2}\n`)]);
    await mustPing(t, 3);
    steps.push('setconf');

    // Bad UAPI input that carries key material: each must fail without the value reaching a log.
    const k = fromB64(bad);
    const peer = `public_key=${hex(fromB64(t.b.publicKey))}\n`;
    const requests = [
      `set=1\nprivate_key=${hex(k)}f\n\n`,
      `set=1\nprivate_key=${bad}\n\n`,
      `set=1\n${peer}preshared_key=${hex(k).toUpperCase().slice(0, 63)}\n\n`,
      `set=1\n${peer}preshared_key=${bad}\n\n`,
      `set=1\n${hex(k)}\n\n`,
      `set=1\n${hex(k)}=1\n\n`,
      `set=1\nprivate_key=${hex(k)}\nlisten_port=notaport\n\n`,
      `set=1\n${peer}endpoint=${bad}\n\n`,
      `set=1\n${peer}remove=${hex(k)}\n\n`,
      `set=1\n${peer}allowed_ip=${bad}\n\n`,
      `set=1\n${peer}persistent_keepalive_interval=${hex(k)}\n\n`,
      `set=1\n${peer}protocol_version=${bad}\n\n`,
      `set=1\n${peer}update_only=${bad}\n\n`,
      `get=1\n${hex(k)}\n\n`,
      `${hex(k)}\n\n`,
    ];
    for (const r of requests) {
      const reply = await uapi(t.a.ifname, r).catch((e: Error) => `closed: ${e.message}`);
      assert.doesNotMatch(reply, /^errno=0\n\n$/, `refused: ${JSON.stringify(r.slice(0, 30))}`);
    }
    // The listen_port line failed after a valid private_key line: sets are not transactional, so bad is
    // now a's key. Put a2 in its place with `wg set`, then erase the key through the UAPI.
    await t.wg(t.a, ['set', t.a.ifname, 'private-key', file('a2', `${a2}\n`)]);
    assert.equal(await uapi(t.a.ifname, `set=1\nprivate_key=${'00'.repeat(32)}\n\n`), 'errno=0\n\n');
    steps.push('bad-uapi+key-change');

    // Peer removal on b (its pre-shared key goes with it), then shutdown of both.
    await t.wg(t.b, ['set', t.b.ifname, 'peer', t.a.publicKey, 'remove']);
    steps.push('remove');
    const bPid = t.daemonPid(t.b)!;
    process.kill(fg.pid!, 'SIGTERM');
    process.kill(bPid, 'SIGTERM');
    assert.equal(await Promise.race([exited, sleep(5000).then(() => 'timeout')]), 0, 'a exits 0 on SIGTERM');
    assert.ok(await waitUntil(() => !alive(bPid), 5000), 'b exits on SIGTERM');
    steps.push('shutdown');
    await sleep(100); // the last piped output
    return { output: `${stdout}\n${stderr}\n${t.log(t.b)}`, secrets, steps };
  } finally {
    if (fg.exitCode === null && fg.pid) fg.kill('SIGKILL');
    await t.close();
  }
}

describe('secrets: no key in any log at any LOG_LEVEL; a root-only UAPI socket', () => {
  before(() => requireRoot());

  for (const level of LEVELS) {
    it(`LOG_LEVEL=${level}: handshakes, rekeys, wg set/setconf, bad UAPI input, removal and shutdown log no key`, { timeout: 90_000 }, async (ctx) => {
      const started = Date.now();
      const { output, secrets, steps } = await scenario(level);
      assert.deepEqual(steps, ['handshake+rekey', 'setconf', 'bad-uapi+key-change', 'remove', 'shutdown']);
      const leaks = findLeaks(secrets, output);
      assert.deepEqual(leaks, [], `key material in the output at LOG_LEVEL=${level}`);
      // The check means something only if the daemons really spoke at this level.
      if (level === 'error') {
        assert.match(output, /ERROR: .*UAPI: set failed/, 'the refused UAPI input is logged at error level');
        assert.doesNotMatch(output, /^DEBUG:/m);
      } else {
        for (const re of [/UAPI: Updating private key/, /received handshake (initiation|response)/, /UAPI: Removing/, /Shutting down/, /UAPI: set failed/]) {
          assert.match(output, re, `verbose output has ${re}`);
        }
      }
      ctx.diagnostic(`LOG_LEVEL=${level}: ${output.split('\n').length} lines checked for ${Object.keys(secrets).length} keys, ${Date.now() - started} ms`);
    });
  }

  it('the UAPI socket is root\'s, 0700 in a 0755 folder: nobody gets EACCES, root connects', { timeout: 40_000 }, async () => {
    const t = await Topology.create({ daemons: 'b-only' });
    try {
      const path = socketPath(t.b.ifname);
      const dir = statSync(WG_RUN_DIR);
      assert.equal((dir.mode & 0o777).toString(8), '755');
      const st = lstatSync(path);
      assert.ok(st.isSocket());
      assert.equal((st.mode & 0o777).toString(8), '700');
      assert.equal(st.uid, 0, 'owned by root');
      const probe = `require('net').createConnection(${JSON.stringify(path)})`
        + `.on('connect', () => { console.log('CONNECTED'); process.exit(0); })`
        + `.on('error', (e) => { console.log(e.code); process.exit(0); })`;
      const asNobody = await run(['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '-e', probe]);
      assert.equal(asNobody.code, 0, asNobody.stderr);
      assert.equal(asNobody.stdout.trim(), 'EACCES', 'a non-root user cannot connect');
      const wgNobody = await run(['ip', 'netns', 'exec', t.b.ns, 'setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', 'wg', 'showconf', t.b.ifname]);
      assert.notEqual(wgNobody.code, 0, 'wg showconf as nobody fails');
      assert.doesNotMatch(wgNobody.stdout, /PrivateKey/);
      assert.match(wgNobody.stderr, /Permission denied|Operation not permitted/i);
      const asRoot = await run([process.execPath, '-e', probe]);
      assert.equal(asRoot.stdout.trim(), 'CONNECTED', 'root can connect');
      assert.match(await t.wg(t.b, ['showconf', t.b.ifname]), new RegExp(`PrivateKey = ${t.b.privateKey.replace(/[+/]/g, '\\$&')}`), 'and read the key back');
    } finally {
      await t.close();
    }
  });
});
