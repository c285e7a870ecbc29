// The daemon's command line and process lifecycle against wireguard-go's contract (interfaces.md; root):
// --version, setup failures (bad name, socket in use, not root), daemon mode returning only when ready,
// clean exit on SIGTERM / SIGINT / `ip link del` / socket deletion, restart, a stale socket taken over after
// SIGKILL (issue 5 item 7; the crashed crypto worker is worker-crash.test.ts), bad UAPI input, and the TUN
// moved to another namespace; node's helper threads under SCHED_BATCH (src/threads.ts). Each daemon runs in a
// namespace of its own; all are stopped by pid.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, lstatSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { alive, findDaemon, Namespaces, requireRoot, run, socketPath, Topology, waitUntil, WGTS_BIN } from '../harness/netns.js';
import { uapi } from '../helpers/uapi-client.js';
import { threadPolicy } from '../helpers/procstat.js';

const STEP = { timeout: 30_000 };
const EXIT_MS = 3000; // "each within ~3 s"
const LOG = join(tmpdir(), `wgts-lifecycle-${process.pid}.log`);

let spaces: Namespaces;
let ns1 = '';
let ns2 = '';

/** `bin/wgts IFNAME` (daemon mode) in ns, as wg-quick runs it; its output (and the daemon's) to LOG. */
function startDaemon(ns: string, ifname: string, argv: string[] = [], env: Record<string, string> = {}): { code: number | null; out: string } {
  const fd = openSync(LOG, 'w');
  try {
    const r = spawnSync('ip', ['netns', 'exec', ns, ...argv, WGTS_BIN, ifname], { stdio: ['ignore', fd, fd], timeout: 20_000, env: { ...process.env, LOG_LEVEL: 'verbose', ...env } });
    return { code: r.status, out: readFileSync(LOG, 'utf8') };
  } finally {
    closeSync(fd);
  }
}

/**
 * Starts a daemon and, unless `early`, waits until the re-spawned daemon itself answers a get: the parent
 * returns as soon as the TUN and the listening socket exist, while the child may still be loading.
 */
async function mustStart(ns: string, ifname: string, early = false, env: Record<string, string> = {}): Promise<number> {
  const r = startDaemon(ns, ifname, [], env);
  assert.equal(r.code, 0, `wgts ${ifname} failed:\n${r.out}`);
  const pid = findDaemon(ns, ifname);
  assert.ok(pid, `a daemon process for ${ifname} runs in ${ns}`);
  if (!early) {
    assert.match(await uapi(ifname, 'get=1\n\n'), /errno=0\n\n$/);
    await waitUntil(() => readFileSync(LOG, 'utf8').includes('Device started'), 3000);
  }
  return pid;
}

const linkExists = (ns: string, ifname: string): boolean => spawnSync('ip', ['-n', ns, 'link', 'show', ifname], { timeout: 5000 }).status === 0;

/** Waits up to EXIT_MS for pid to exit and its socket and TUN to be gone; SIGKILLs a survivor so the suite goes on. */
async function assertExits(pid: number, ns: string, ifname: string, why: string): Promise<void> {
  const started = Date.now();
  const gone = await waitUntil(() => !alive(pid) && !existsSync(socketPath(ifname)), EXIT_MS);
  const state = `process ${alive(pid) ? 'alive' : 'gone'}, socket ${existsSync(socketPath(ifname)) ? 'present' : 'gone'}, link ${linkExists(ns, ifname) ? 'present' : 'gone'}`;
  if (!gone) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // exited meanwhile
    }
    await waitUntil(() => !alive(pid), 2000);
  }
  assert.ok(gone, `after ${why} the daemon should exit and remove its socket within ${EXIT_MS} ms; after ${Date.now() - started} ms: ${state}\n${readFileSync(LOG, 'utf8').split('\n').slice(-6).join('\n')}`);
  assert.ok(await waitUntil(() => !linkExists(ns, ifname), 1000), `the TUN ${ifname} is gone after ${why}`);
}

describe('wgts command line and lifecycle', () => {
  before(async () => {
    requireRoot();
    spaces = new Namespaces();
    ns1 = await spaces.add('wgtsL');
    ns2 = await spaces.add('wgtsL');
  });
  after(() => {
    spaces?.close();
    rmSync(LOG, { force: true });
    assert.deepEqual(spaces?.names ?? [], [], 'namespaces deleted');
  });

  it('--version prints a banner and exits 0', STEP, async () => {
    const r = await run([WGTS_BIN, '--version']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^wgts v\d+\.\d+/);
  });

  it('a 20-character interface name: exit 1 with a readable message, nothing created', STEP, () => {
    const name = `wgtsbad${process.pid}`.padEnd(20, 'x');
    const r = startDaemon(ns1, name);
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /^wgts: .*(name|interface)/im);
    assert.doesNotMatch(r.out, /^\s+at /m, 'a message, not a stack trace');
    assert.equal(existsSync(socketPath(name)), false);
  });

  it('not root (setpriv to nobody): exit 1 with a readable message', STEP, async () => {
    const name = spaces.ifname();
    const r = await run(['ip', 'netns', 'exec', ns1, 'setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups', WGTS_BIN, name]);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /root|permit/i);
    assert.doesNotMatch(r.stderr, /^\s+at /m);
    assert.equal(existsSync(socketPath(name)), false);
    assert.equal(linkExists(ns1, name), false);
  });

  it('daemon mode returns once the socket listens and the TUN exists; a second daemon with that name fails: socket in use', STEP, async () => {
    const name = spaces.ifname();
    const pid = await mustStart(ns1, name, true);
    // Checked at once after it returned: no waiting allowed, wg-quick runs `wg addconf` right away.
    assert.ok(lstatSync(socketPath(name)).isSocket(), 'the UAPI socket exists');
    assert.ok(linkExists(ns1, name), 'the TUN exists');
    assert.equal((lstatSync(socketPath(name)).mode & 0o777).toString(8), '700');
    const show = await run(['ip', 'netns', 'exec', ns1, 'wg', 'show', name]);
    assert.equal(show.code, 0, show.stderr);
    assert.match(show.stdout, new RegExp(`interface: ${name}`));

    // Same name in another namespace: the TUN could be made there, but /var/run/wireguard is shared.
    const second = startDaemon(ns2, name);
    assert.equal(second.code, 1, second.out);
    assert.match(second.out, /in use/i);
    assert.equal(linkExists(ns2, name), false, 'the failed daemon removed its TUN');
    assert.ok(alive(pid) && existsSync(socketPath(name)), 'the first daemon still runs and keeps its socket');
    assert.equal((await run(['ip', 'netns', 'exec', ns1, 'wg', 'show', name])).code, 0, 'and still answers');
    spawnSync('ip', ['-n', ns1, 'link', 'del', name], { timeout: 5000 });
    await assertExits(pid, ns1, name, 'ip link del');
  });

  it('at start the daemon warms its data path over loopback (IPv4 alone without ::1); with lo down it gives up and serves as before', STEP, async () => {
    const warmLine = /Warm-up done in (\d+) ms: (\d+) data-path round trips/;
    const name = spaces.ifname();
    const pid = await mustStart(ns1, name);
    assert.ok(await waitUntil(() => warmLine.test(readFileSync(LOG, 'utf8')), 10_000), `the warm-up ends:\n${readFileSync(LOG, 'utf8')}`);
    assert.equal(warmLine.exec(readFileSync(LOG, 'utf8'))![2], '500', 'every round trip was made');
    // A namespace whose loopback is down: no datagram can leave, and the warm-up stops after 1 s without one.
    const bare = await spaces.add('wgtsL');
    await run(['ip', '-n', bare, 'link', 'set', 'lo', 'down']);
    const lonely = spaces.ifname();
    const pid2 = await mustStart(bare, lonely);
    assert.ok(await waitUntil(() => warmLine.test(readFileSync(LOG, 'utf8')), 10_000), `the warm-up ends:\n${readFileSync(LOG, 'utf8')}`);
    assert.equal(warmLine.exec(readFileSync(LOG, 'utf8'))![2], '0');
    assert.match(await uapi(lonely, 'get=1\n\n'), /errno=0\n\n$/, 'the daemon serves');
    assert.match(await uapi(name, 'get=1\n\n'), /errno=0\n\n$/, 'so does the warmed one');
    // IPv6 disabled (no ::1): the warm-up's sockets are IPv4 alone, as a real bind's are without IPv6.
    const v4 = await spaces.add('wgtsL');
    for (const k of ['all', 'lo']) await run(['ip', 'netns', 'exec', v4, 'sysctl', '-qw', `net.ipv6.conf.${k}.disable_ipv6=1`]);
    const plain = spaces.ifname();
    const pid3 = await mustStart(v4, plain);
    assert.ok(await waitUntil(() => warmLine.test(readFileSync(LOG, 'utf8')), 10_000), `the warm-up ends:\n${readFileSync(LOG, 'utf8')}`);
    assert.equal(warmLine.exec(readFileSync(LOG, 'utf8'))![2], '500');
    for (const [p, n, ns] of [[pid, name, ns1], [pid2, lonely, bare], [pid3, plain, v4]] as const) {
      process.kill(p, 'SIGTERM');
      await assertExits(p, ns, n, 'SIGTERM');
    }
  });

  it("node's helper threads run SCHED_BATCH; the main thread and the daemon's own threads keep SCHED_OTHER", STEP, async () => {
    const name = spaces.ifname();
    // The crypto workers start on load by default; policy pool starts them with the daemon.
    const pid = await mustStart(ns1, name, false, { WGTS_CRYPTO_POLICY: 'pool', WGTS_CRYPTO_THREADS: '2' });
    try {
      const m = /Device started \((\d+) of (\d+) node helper threads SCHED_BATCH\)/.exec(readFileSync(LOG, 'utf8'));
      assert.ok(m, 'the start-up line says how many helper threads were moved');
      const [moved, seen] = [Number(m[1]), Number(m[2])];
      assert.equal(moved, seen);
      assert.ok(seen >= 4, `V8's platform workers at least: ${seen}`);
      const policies = readdirSync(`/proc/${pid}/task`).map(Number).map((tid) => ({ tid, policy: threadPolicy(pid, tid) }));
      assert.equal(policies.find((t) => t.tid === pid)?.policy, 0, 'the control thread is SCHED_OTHER');
      assert.equal(policies.filter((t) => t.policy === 3).length, moved, 'exactly the helpers are SCHED_BATCH');
      // The crypto workers started after the helpers were moved.
      assert.ok(policies.filter((t) => t.policy === 0 && t.tid !== pid).length >= 2, JSON.stringify(policies));
    } finally {
      spawnSync('ip', ['-n', ns1, 'link', 'del', name], { timeout: 5000 });
      await assertExits(pid, ns1, name, 'ip link del');
    }
  });

  it('exits cleanly when its TUN is deleted (ip link del), and restarts with the same name', STEP, async () => {
    const name = spaces.ifname();
    let pid = await mustStart(ns1, name);
    spawnSync('ip', ['-n', ns1, 'link', 'set', name, 'up'], { timeout: 5000 });
    spawnSync('ip', ['-n', ns1, 'link', 'del', name], { timeout: 5000 });
    await assertExits(pid, ns1, name, 'ip link del');
    pid = await mustStart(ns1, name);
    assert.equal((await run(['ip', 'netns', 'exec', ns1, 'wg', 'show', name])).code, 0);
    spawnSync('ip', ['-n', ns1, 'link', 'del', name], { timeout: 5000 });
    await assertExits(pid, ns1, name, 'ip link del after a restart');
  });

  // Issue 5 item 7: nothing cleans up after SIGKILL, so the socket file stays behind with no listener; the
  // next daemon must take that stale name over (while a live one, above, is refused).
  it('a SIGKILLed daemon leaves a stale socket; a new daemon with the same name takes it over', STEP, async () => {
    const name = spaces.ifname();
    const pid = await mustStart(ns1, name);
    const before = lstatSync(socketPath(name)).ino;
    process.kill(pid, 'SIGKILL');
    assert.ok(await waitUntil(() => !alive(pid), 3000), 'SIGKILL ends the daemon');
    assert.ok(lstatSync(socketPath(name)).isSocket(), 'the socket file is left behind');
    await assert.rejects(uapi(name, 'get=1\n\n'), /ECONNREFUSED/, 'and nobody listens on it');
    assert.ok(await waitUntil(() => !linkExists(ns1, name), 2000), 'the kernel removed the TUN with its last fd');
    const next = await mustStart(ns1, name);
    assert.notEqual(lstatSync(socketPath(name)).ino, before, 'a new socket replaced the stale file');
    assert.equal((lstatSync(socketPath(name)).mode & 0o777).toString(8), '700');
    assert.match(await uapi(name, 'get=1\n\n'), /errno=0\n\n$/);
    spawnSync('ip', ['-n', ns1, 'link', 'del', name], { timeout: 5000 });
    await assertExits(next, ns1, name, 'ip link del after taking over a stale socket');
  });

  it('exits cleanly when its socket file is deleted', STEP, async () => {
    const name = spaces.ifname();
    const pid = await mustStart(ns1, name);
    rmSync(socketPath(name));
    await assertExits(pid, ns1, name, 'deleting the socket file');
  });

  it('exits cleanly on SIGTERM (daemon mode, link up)', STEP, async () => {
    const name = spaces.ifname();
    const pid = await mustStart(ns1, name);
    spawnSync('ip', ['-n', ns1, 'link', 'set', name, 'up'], { timeout: 5000 });
    process.kill(pid, 'SIGTERM');
    await assertExits(pid, ns1, name, 'SIGTERM');
  });

  // With the link down nothing ever arrives on the TUN: a reader thread blocked in read(2) must not delay the exit.
  it('exits cleanly on SIGTERM (daemon mode, link down: nothing arrives on the TUN)', STEP, async () => {
    const name = spaces.ifname();
    const pid = await mustStart(ns1, name);
    process.kill(pid, 'SIGTERM');
    await assertExits(pid, ns1, name, 'SIGTERM with the link down');
  });

  // The daemon needs ~0.2 s to start; bin/wgts returns only once the daemon has said it is ready, after it
  // installed its signal handlers, so a SIGTERM sent the moment `wgts IF` returns is handled cleanly.
  it('SIGTERM right after daemon mode returned still removes the socket and the TUN', STEP, async () => {
    const name = spaces.ifname();
    const pid = await mustStart(ns1, name, true);
    process.kill(pid, 'SIGTERM');
    await assertExits(pid, ns1, name, 'SIGTERM at once after start');
  });

  // wireguard-go's daemon keeps its caller's stdout and stderr only when LOG_LEVEL is set (and not silent);
  // otherwise a caller reading them to the end, like `out=$(wgts wg0)`, would wait for as long as it runs.
  it('daemon mode without LOG_LEVEL lets go of the caller\'s stdout and stderr once ready, and still shows setup errors; with LOG_LEVEL it keeps them', STEP, async () => {
    const name = spaces.ifname();
    const env = { ...process.env };
    delete env.LOG_LEVEL;
    /** bin/wgts with its stdout and stderr on pipes: its exit code, its output, and whether both pipes closed within ms. */
    const piped = async (e: NodeJS.ProcessEnv, ms: number) => {
      const p = spawn('ip', ['netns', 'exec', ns1, WGTS_BIN, name], { stdio: ['ignore', 'pipe', 'pipe'], env: e });
      let out = '';
      p.stdout.on('data', (d: Buffer) => (out += d.toString()));
      p.stderr.on('data', (d: Buffer) => (out += d.toString()));
      // 'close' comes once every holder of the pipes' write ends (the daemon too) has let go: listened for
      // from the start, since it may follow 'exit' at once.
      let ended = false;
      p.on('close', () => (ended = true));
      const code = await new Promise<number | null>((r) => p.on('exit', (c) => r(c)));
      const closed = await waitUntil(() => ended, ms);
      return { code, out, closed };
    };
    const quiet = await piped(env, 5000);
    assert.equal(quiet.code, 0, quiet.out);
    assert.ok(quiet.closed, 'the caller\'s pipes reach their end while the daemon runs on');
    const pid = findDaemon(ns1, name);
    assert.ok(pid && alive(pid), 'the daemon runs');
    try {
      assert.match(await uapi(name, 'get=1\n\n'), /errno=0\n\n$/);
      // A second daemon with the name fails before it is ready: its message reaches the caller.
      const again = await piped(env, 5000);
      assert.equal(again.code, 1, again.out);
      assert.match(again.out, /^wgts: .*(in use|exists)/m);
    } finally {
      spawnSync('ip', ['-n', ns1, 'link', 'del', name], { timeout: 5000 });
      await assertExits(pid!, ns1, name, 'ip link del');
    }

    const loud = await piped({ ...env, LOG_LEVEL: 'verbose' }, 1500);
    const pid2 = findDaemon(ns1, name);
    try {
      assert.equal(loud.code, 0, loud.out);
      assert.equal(loud.closed, false, 'with LOG_LEVEL the daemon keeps writing to the caller\'s stdout');
      assert.match(loud.out, /Device started/);
    } finally {
      spawnSync('ip', ['-n', ns1, 'link', 'del', name], { timeout: 5000 });
      if (pid2) await assertExits(pid2, ns1, name, 'ip link del');
    }
  });

  it('a daemon that never becomes ready: daemon mode gives up after WGTS_READY_TIMEOUT, exit 1, and the daemon is stopped', STEP, async () => {
    const name = spaces.ifname();
    // node hangs in a preloaded module before any of wgts runs: no TUN, no socket, no ready line.
    const hang = '--import=data:text/javascript,Atomics.wait(new(Int32Array)(new(SharedArrayBuffer)(4)),0,0)';
    const started = Date.now();
    const r = startDaemon(ns1, name, [], { WGTS_READY_TIMEOUT: '2', WGTS_NODE_FLAGS: hang });
    const took = Date.now() - started;
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /^wgts: the daemon did not become ready within 2 s$/m);
    assert.ok(took >= 1900 && took < 10_000, `returned after ${took} ms`);
    assert.ok(await waitUntil(() => findDaemon(ns1, name) === undefined, 3000), 'the hung daemon was stopped');
    assert.equal(existsSync(socketPath(name)), false);
    assert.equal(linkExists(ns1, name), false);
  });

  it('exits 0 on SIGINT in the foreground (-f)', STEP, async () => {
    const name = spaces.ifname();
    const fd = openSync(LOG, 'w');
    const p = spawn('ip', ['netns', 'exec', ns1, WGTS_BIN, '-f', name], { stdio: ['ignore', fd, fd], env: { ...process.env, LOG_LEVEL: 'verbose' } });
    closeSync(fd);
    const exited = new Promise<number | null>((r) => p.on('exit', (code) => r(code)));
    assert.ok(await waitUntil(() => existsSync(socketPath(name)), 10_000), 'the foreground daemon creates its socket');
    spawnSync('ip', ['-n', ns1, 'link', 'set', name, 'up'], { timeout: 5000 });
    process.kill(p.pid!, 'SIGINT');
    await assertExits(p.pid!, ns1, name, 'SIGINT');
    assert.equal(await exited, 0, 'exit status 0');
  });

  it('bad UAPI input gets the right negative errno and the daemon keeps serving', STEP, async () => {
    const name = spaces.ifname();
    const other = spaces.ifname();
    const pid = await mustStart(ns1, name);
    const pid2 = await mustStart(ns1, other);
    try {
      assert.equal(await uapi(name, 'set=1\nbogus_key=1\n\n'), 'errno=-22\n\n');
      assert.equal(await uapi(name, 'set=1\nlisten_port=99999\n\n'), 'errno=-22\n\n');
      assert.equal(await uapi(name, 'set=1\nno_equals_sign\n\n'), 'errno=-71\n\n');
      // A port held by another socket in the namespace: EADDRINUSE.
      assert.equal(await uapi(other, 'set=1\nlisten_port=51999\n\n'), 'errno=0\n\n');
      assert.equal(await uapi(name, 'set=1\nlisten_port=51999\n\n'), 'errno=-98\n\n');
      // (`wg set IF listen-port 99999` cannot carry the bad value: wg's getaddrinfo wraps it to 34463.)
      const get = await uapi(name, 'get=1\n\n');
      assert.match(get, /^listen_port=\d+\n(.*\n)*errno=0\n\n$/);
      assert.doesNotMatch(get, /listen_port=51999/, 'the failed set left the port alone');
      const show = await run(['ip', 'netns', 'exec', ns1, 'wg', 'show', name]);
      assert.equal(show.code, 0, `wg show still works: ${show.stderr}`);
      assert.ok(alive(pid));
    } finally {
      for (const n of [name, other]) spawnSync('ip', ['-n', ns1, 'link', 'del', n], { timeout: 5000 });
    }
    await assertExits(pid, ns1, name, 'ip link del');
    await assertExits(pid2, ns1, other, 'ip link del');
  });

  it('keeps working after its TUN is moved to another namespace', { timeout: 40_000 }, async () => {
    const t = await Topology.create({ impls: ['wgts', 'wgts'] });
    const x = await spaces.add('wgtsX');
    try {
      await t.exec(t.a, ['ping', '-c', '1', '-W', '2', t.b.tunnel4]); // a session exists before the move
      const pid = t.daemonPid(t.a);
      assert.ok(pid);
      const mv = await run(['ip', '-n', t.a.ns, 'link', 'set', t.a.ifname, 'netns', x]);
      assert.equal(mv.code, 0, mv.stderr);
      await run(['ip', '-n', x, 'addr', 'add', `${t.a.tunnel4}/24`, 'dev', t.a.ifname]);
      await run(['ip', '-n', x, 'link', 'set', t.a.ifname, 'up']);
      await new Promise((r) => setTimeout(r, 500)); // a daemon that wrongly took the move for a deletion exits in this time
      assert.ok(alive(pid) && existsSync(socketPath(t.a.ifname)), `the daemon keeps running after the move:\n${t.log(t.a).split('\n').slice(-5).join('\n')}`);
      const p = await run(['ip', 'netns', 'exec', x, 'ping', '-c', '3', '-i', '0.2', '-W', '2', t.b.tunnel4], { timeoutMs: 15_000 });
      assert.equal(p.code, 0, `ping from the new namespace:\n${p.stdout}${p.stderr}\n${t.log(t.a).split('\n').slice(-8).join('\n')}`);
      const q = await t.exec(t.b, ['ping', '-c', '2', '-i', '0.2', '-W', '2', t.a.tunnel4], { timeoutMs: 15_000 });
      assert.equal(q.code, 0, `ping into the new namespace:\n${q.stdout}`);
    } finally {
      await t.close();
    }
  });
});
