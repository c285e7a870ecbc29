// The UAPI socket driven by the real `wg` (interfaces.md "The UAPI socket"; root): our server runs in this
// process with a real Device (no TUN: `wg` only talks to /var/run/wireguard/IFNAME.sock) and `wg set`,
// `show`, `showconf`, `setconf`, `addconf`, `syncconf` configure it. Also: live vs stale socket, modes,
// close(), the deletion watcher, and adopting the listening fd in a re-spawned process (WG_UAPI_FD).

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, lstatSync, mkdtempSync, rmSync, statSync, writeFileSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Device } from '../../src/device.js';
import { Errno, WgError } from '../../src/errors.js';
import { keyFromBase64 } from '../../src/keys.js';
import { listenUapi, serveUapi, uapiSocketPath, UAPI_DIR, type UapiServer } from '../../src/uapi/server.js';
import type { UapiHost } from '../../src/uapi/uapi.js';

const PID = process.pid;
const IF = `wgtsu${PID}`; // the main interface
const IF_STALE = `wgtsv${PID}`;
const IF_FD = `wgtsw${PID}`;
const BUSY_PORT = 1999;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a program asynchronously (our server lives in this event loop), killed by pid after 10 s. */
function run(cmd: string, args: string[], input = '', env?: NodeJS.ProcessEnv): Promise<Run> {
  return new Promise((resolve) => {
    const c = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env: env ?? process.env });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => c.pid && process.kill(c.pid, 'SIGKILL'), 10_000);
    c.stdout.on('data', (d) => (stdout += d));
    c.stderr.on('data', (d) => (stderr += d));
    c.on('error', (e) => {
      clearTimeout(timer);
      resolve({ code: -1, stdout, stderr: stderr + String(e) });
    });
    c.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    c.stdin.on('error', () => {}); // a program that never reads its stdin (wg genkey)
    c.stdin.end(input);
  });
}

async function wg(...args: string[]): Promise<string> {
  const r = await run('wg', args);
  assert.equal(r.code, 0, `wg ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

class TestHost implements UapiHost {
  listenPort = 0;
  fwmark = 0;
  readonly device = new Device({ io: { send: () => {}, deliver: () => {} } });
  setListenPort(port: number): number {
    if (port === BUSY_PORT) return Errno.EADDRINUSE;
    this.listenPort = port === 0 ? 40000 + (PID % 20000) : port;
    return 0;
  }
  setFwmark(mark: number): number {
    this.fwmark = mark;
    return 0;
  }
}

const waitFor = async (cond: () => boolean, ms: number): Promise<boolean> => {
  for (const end = Date.now() + ms; Date.now() < end; ) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return cond();
};

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('UAPI socket with the real wg', () => {
  let tmp = '';
  let host: TestHost;
  let server: UapiServer | undefined;
  const extra: UapiServer[] = [];
  const children: number[] = [];
  const keys: Record<string, { priv: string; pub: string; file: string }> = {};

  const key = async (name: string): Promise<{ priv: string; pub: string; file: string }> => {
    const priv = (await wg('genkey')).trim();
    const r = await run('wg', ['pubkey'], priv + '\n');
    const file = join(tmp, `${name}.key`);
    writeFileSync(file, priv + '\n', { mode: 0o600 });
    return (keys[name] = { priv, pub: r.stdout.trim(), file });
  };
  const dumpPeers = async (): Promise<string[][]> =>
    (await wg('show', IF, 'dump'))
      .trim()
      .split('\n')
      .slice(1)
      .map((l) => l.split('\t'));

  before(async () => {
    if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
      assert.fail('the UAPI/wg root test must run as root (it uses /var/run/wireguard); run it with sudo');
    }
    const v = await run('wg', ['--version']);
    assert.equal(v.code, 0, `the real wg binary is required: ${v.stderr}`);
    tmp = mkdtempSync(join(tmpdir(), 'wgts-uapi-'));
    for (const n of ['if', 'p1', 'p2', 'p3', 'p4', 'psk']) await key(n);
    host = new TestHost();
    server = await listenUapi(IF, serveUapi(host));
  });

  after(async () => {
    await server?.close();
    for (const s of extra) await s.close();
    for (const pid of children) if (alive(pid)) process.kill(pid, 'SIGKILL');
    for (const n of [IF, IF_STALE, IF_FD]) rmSync(uapiSocketPath(n), { force: true });
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('folder 0755, socket 0700, listed by wg show interfaces', async () => {
    assert.equal(statSync(UAPI_DIR).mode & 0o777, 0o755);
    const st = lstatSync(uapiSocketPath(IF));
    assert.ok(st.isSocket());
    assert.equal(st.mode & 0o777, 0o700);
    assert.ok((await wg('show', 'interfaces')).split(/\s+/).includes(IF));
  });

  it('wg set: every interface and peer option, read back by show, dump and showconf', async () => {
    const { if: me, p1, psk } = keys;
    const pskB64 = psk.priv; // any 32 bytes of base64 serve as a preshared key
    await wg('set', IF, 'private-key', me.file, 'listen-port', '51999', 'fwmark', '0x1234', 'peer', p1.pub,
      'preshared-key', psk.file, 'endpoint', '198.51.100.2:51820', 'persistent-keepalive', '25',
      'allowed-ips', '203.0.113.9/24,2001:db8:1::7/64');

    // The state really reached the Device and the host.
    assert.equal(host.listenPort, 51999);
    assert.equal(host.fwmark, 0x1234);
    assert.deepEqual(host.device.publicKey, keyFromBase64(me.pub));
    const peer = host.device.peer(keyFromBase64(p1.pub))!;
    assert.ok(peer);
    assert.deepEqual(peer.presharedKey, keyFromBase64(pskB64));
    assert.deepEqual(peer.endpoint, { addr: Uint8Array.of(198, 51, 100, 2), port: 51820 });
    assert.equal(peer.timers.persistentKeepalive, 25);
    assert.ok(peer.txBytes > 0n, 'turning the keepalive on sent a handshake initiation at once');

    const dump = (await wg('show', IF, 'dump')).split('\n');
    assert.equal(dump[0], `${me.priv}\t${me.pub}\t51999\t0x1234`);
    assert.equal(dump[1], `${p1.pub}\t${pskB64}\t198.51.100.2:51820\t203.0.113.0/24,2001:db8:1::/64\t0\t0\t${peer.txBytes}\t25`);

    const show = await wg('show', IF);
    for (const line of [`interface: ${IF}`, `public key: ${me.pub}`, 'private key: (hidden)', 'listening port: 51999',
      'fwmark: 0x1234', `peer: ${p1.pub}`, 'preshared key: (hidden)', 'endpoint: 198.51.100.2:51820',
      'allowed ips: 203.0.113.0/24, 2001:db8:1::/64', 'persistent keepalive: every 25 seconds']) {
      assert.ok(show.includes(line), `wg show has "${line}":\n${show}`);
    }
    assert.equal((await wg('show', IF, 'listen-port')).trim(), '51999');

    assert.equal(
      await wg('showconf', IF),
      `[Interface]\nListenPort = 51999\nFwMark = 0x1234\nPrivateKey = ${me.priv}\n\n[Peer]\nPublicKey = ${p1.pub}\n` +
        `PresharedKey = ${pskB64}\nAllowedIPs = 203.0.113.0/24, 2001:db8:1::/64\nEndpoint = 198.51.100.2:51820\nPersistentKeepalive = 25\n`,
    );

    // IPv6 endpoint, and `wg set ... fwmark off`.
    await wg('set', IF, 'fwmark', 'off', 'peer', p1.pub, 'endpoint', '[2001:db8:ff::2]:51821');
    assert.equal(host.fwmark, 0);
    assert.match(await wg('show', IF, 'endpoints'), new RegExp(`^${p1.pub.replace(/[+/]/g, '\\$&')}\t\\[2001:db8:ff::2\\]:51821\n$`));
  });

  it('wg setconf replaces everything, wg addconf adds', async () => {
    const { if: me, p1, p2, p3 } = keys;
    const conf = join(tmp, 'set.conf');
    writeFileSync(conf, `[Interface]\nPrivateKey = ${me.priv}\nListenPort = 52000\n\n[Peer]\nPublicKey = ${p2.pub}\nAllowedIPs = 198.18.0.0/15\nEndpoint = 198.51.100.3:1\n\n[Peer]\nPublicKey = ${p3.pub}\nAllowedIPs = 203.0.113.3/32\n`);
    await wg('setconf', IF, conf);
    assert.equal(host.listenPort, 52000);
    assert.equal(host.device.peer(keyFromBase64(p1.pub)), undefined, 'setconf removed the peer it did not list');
    let peers = await dumpPeers();
    assert.deepEqual(peers.map((p) => [p[0], p[1], p[2], p[3], p[7]]).sort(), [
      [p2.pub, '(none)', '198.51.100.3:1', '198.18.0.0/15', 'off'],
      [p3.pub, '(none)', '(none)', '203.0.113.3/32', 'off'],
    ].sort());

    const add = join(tmp, 'add.conf');
    writeFileSync(add, `[Peer]\nPublicKey = ${p1.pub}\nAllowedIPs = 203.0.113.3/32, 2001:db8:1::/64\n`);
    await wg('addconf', IF, add);
    peers = await dumpPeers();
    assert.equal(peers.length, 3);
    const byKey = new Map(peers.map((p) => [p[0], p]));
    assert.equal(byKey.get(p1.pub)![3], '203.0.113.3/32,2001:db8:1::/64');
    assert.equal(byKey.get(p3.pub)![3], '(none)', 'the /32 moved from p3 to p1');
    assert.equal(host.listenPort, 52000, 'addconf leaves the interface alone');
  });

  it('wg syncconf removes a peer that is not in the file and updates the rest', async () => {
    const { if: me, p1, p2, p3 } = keys;
    const conf = join(tmp, 'sync.conf');
    writeFileSync(conf, `[Interface]\nPrivateKey = ${me.priv}\nListenPort = 52000\n\n[Peer]\nPublicKey = ${p2.pub}\nAllowedIPs = 198.18.0.0/16\n\n[Peer]\nPublicKey = ${p1.pub}\nAllowedIPs = 203.0.113.3/32\n`);
    await wg('syncconf', IF, conf);
    const peers = await dumpPeers();
    const byKey = new Map(peers.map((p) => [p[0], p]));
    assert.deepEqual([...byKey.keys()].sort(), [p1.pub, p2.pub].sort());
    assert.equal(host.device.peer(keyFromBase64(p3.pub)), undefined);
    assert.equal(byKey.get(p2.pub)![3], '198.18.0.0/16');
    assert.equal(byKey.get(p2.pub)![2], '198.51.100.3:1', 'syncconf kept the endpoint it was not told about');
    assert.equal(byKey.get(p1.pub)![3], '203.0.113.3/32');
  });

  it('wg set ... peer X remove', async () => {
    const { p1, p2 } = keys;
    await wg('set', IF, 'peer', p1.pub, 'remove');
    assert.deepEqual((await dumpPeers()).map((p) => p[0]), [p2.pub]);
  });

  it('server-side errors reach wg as a non-zero exit; the server keeps serving', async () => {
    let r = await run('wg', ['set', IF, 'listen-port', String(BUSY_PORT)]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /Address already in use/);
    r = await run('wg', ['set', IF, 'peer', keys.p4.pub, 'endpoint', '[fe80::1%lo]:51820', 'allowed-ips', '203.0.113.44/32']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /Invalid argument/);
    // Not transactional: the peer line before the bad endpoint created the peer, nothing after it was applied.
    const p4 = host.device.peer(keyFromBase64(keys.p4.pub));
    assert.ok(p4);
    assert.equal(host.device.allowedIps.lookup(Uint8Array.of(203, 0, 113, 44)), undefined);
    assert.equal(host.listenPort, 52000);
    assert.match(await wg('show', IF, 'listen-port'), /^52000\n$/);
  });

  it('raw socket: split writes, several operations, unknown operation closes', async () => {
    const s = net.connect(uapiSocketPath(IF));
    let got = '';
    const closed = new Promise<void>((res) => s.on('end', () => res()));
    s.on('data', (d) => (got += d));
    await new Promise((res) => s.once('connect', res));
    for (const piece of ['ge', 't=1\n', '\nset=1\nfwm', 'ark=77\n', '\nget=1\n\nset=1\nnope\n\n', 'bogus=1\n']) {
      s.write(piece);
      await new Promise((r) => setTimeout(r, 5));
    }
    await closed;
    s.destroy();
    const replies = got.split(/(?<=\n\n)/);
    assert.equal(replies.length, 4, got);
    assert.match(replies[0], /^private_key=[0-9a-f]{64}\nlisten_port=52000\npublic_key=/);
    assert.equal(replies[1], 'errno=0\n\n');
    assert.match(replies[2], /\nfwmark=77\npublic_key=/);
    assert.equal(replies[3], `errno=${-Errno.EPROTO}\n\n`);
  });

  it('a second listener for a live name is refused: "unix socket in use"', async () => {
    await assert.rejects(listenUapi(IF, serveUapi(host)), (e: unknown) => e instanceof WgError && e.code === 'uapi-in-use' && e.message === 'unix socket in use' && e.errno === Errno.EADDRINUSE);
    assert.match(await wg('show', IF, 'listen-port'), /^52000\n$/, 'the live one still serves');
  });

  it('a stale socket file (its process was killed) is replaced', async () => {
    const path = uapiSocketPath(IF_STALE);
    const r = await run(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, 'SIGKILL'))`]);
    assert.equal(r.code, null, 'the helper died by SIGKILL');
    assert.ok(lstatSync(path).isSocket(), 'it left its socket file behind');
    const h2 = new TestHost();
    h2.listenPort = 1111;
    const s2 = await listenUapi(IF_STALE, serveUapi(h2));
    extra.push(s2);
    assert.equal(lstatSync(path).mode & 0o777, 0o700);
    assert.match(await wg('show', IF_STALE, 'listen-port'), /^1111\n$/);
  });

  it('creates a missing folder with mode 0755 even under a tight umask', async () => {
    const dir = join(tmp, 'a', 'wireguard');
    const old = process.umask(0o077);
    let s: UapiServer;
    try {
      s = await listenUapi('x', serveUapi(new TestHost()), { dir });
    } finally {
      process.umask(old);
    }
    assert.equal(statSync(dir).mode & 0o777, 0o755);
    assert.equal(lstatSync(join(dir, 'x.sock')).mode & 0o777, 0o700);
    assert.ok(s.fd > 2, 'the listening fd is exposed');
    await s.close();
    assert.equal(existsSync(join(dir, 'x.sock')), false, 'close() removes the socket file');
  });

  it('deleting the socket file fires onDeleted promptly', async () => {
    const dir = join(tmp, 'del');
    const s = await listenUapi('d', serveUapi(new TestHost()), { dir, pollMs: 60_000 }); // inotify only
    let fired = 0;
    s.onDeleted(() => fired++);
    const t0 = Date.now();
    unlinkSync(join(dir, 'd.sock'));
    assert.ok(await waitFor(() => fired > 0, 3000), 'onDeleted fired');
    assert.ok(Date.now() - t0 < 1000, 'through inotify, well before a poll');
    await s.close();
    assert.equal(fired, 1);

    // The poll alone also sees it (a file replaced by another one with the same name counts as deleted).
    const s2 = await listenUapi('e', serveUapi(new TestHost()), { dir, pollMs: 100, inotify: false });
    let fired2 = false;
    s2.onDeleted(() => (fired2 = true));
    unlinkSync(join(dir, 'e.sock'));
    writeFileSync(join(dir, 'e.sock'), '');
    assert.ok(await waitFor(() => fired2, 3000));
    await s2.close();
    assert.ok(existsSync(join(dir, 'e.sock')), 'close() never deletes a file that is not its socket');
  });

  it('close() of the main server removes its socket and wg no longer sees the interface', async () => {
    await server!.close();
    server = undefined;
    assert.equal(existsSync(uapiSocketPath(IF)), false);
    const r = await run('wg', ['show', IF]);
    assert.notEqual(r.code, 0);
  });

  it('a re-spawned process adopts the listening fd (WG_UAPI_FD) and serves wg', async () => {
    const dist = (p: string): string => JSON.stringify(fileURLToPath(new URL(p, import.meta.url)));
    const script = join(tmp, 'handoff.mjs');
    writeFileSync(
      script,
      `import { spawn } from 'node:child_process';
import { listenUapi, serveUapi } from ${dist('../../src/uapi/server.js')};
import { Device } from ${dist('../../src/device.js')};
const [mode, ifname] = process.argv.slice(2);
if (mode === 'parent') {
  const srv = await listenUapi(ifname, () => {});
  const child = spawn(process.execPath, [process.argv[1], 'child', ifname], { stdio: ['ignore', 'pipe', 'ignore', srv.fd], env: { ...process.env, WG_UAPI_FD: '3' } });
  child.stdout.once('data', () => { process.stdout.write(child.pid + '\\n'); process.exit(0); });
} else {
  const host = { device: new Device({ io: { send() {}, deliver() {} } }), listenPort: 4242, fwmark: 0,
    setListenPort(p) { this.listenPort = p; return 0; }, setFwmark(m) { this.fwmark = m; return 0; } };
  const srv = await listenUapi(ifname, serveUapi(host), { fd: Number(process.env.WG_UAPI_FD) });
  const quit = () => srv.close().then(() => process.exit(0));
  process.on('SIGTERM', quit);
  srv.onDeleted(quit);
  process.stdout.write('ready\\n');
}
`,
    );
    const r = await run(process.execPath, [script, 'parent', IF_FD]);
    assert.equal(r.code, 0, r.stderr);
    const pid = Number(r.stdout.trim());
    assert.ok(pid > 0 && alive(pid), 'the adopting child runs after its parent exited');
    children.push(pid);
    assert.ok(lstatSync(uapiSocketPath(IF_FD)).isSocket(), "the parent's exit left the socket file");
    assert.match(await wg('show', IF_FD, 'listen-port'), /^4242\n$/);
    await wg('set', IF_FD, 'listen-port', '4343');
    assert.match(await wg('show', IF_FD, 'listen-port'), /^4343\n$/);

    process.kill(pid, 'SIGTERM');
    assert.ok(await waitFor(() => !alive(pid), 5000), 'the child exits on SIGTERM');
    assert.equal(existsSync(uapiSocketPath(IF_FD)), false, 'and removes the socket it adopted');
  });
});
