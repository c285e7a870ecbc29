// The real TUN device (root): src/tun/tun.ts opened in the root namespace and moved at once into a namespace of
// its own (testnet.md: per-run names with the pid, tunnel range 203.0.113.0/24 inside it only, cleanup by pid).
// A worker thread blocked in read() before the move must still get the ping's echo request afterwards; our
// echo reply makes `ping -c 1` succeed; watchLink sees up, MTU and deletion; deletion wakes the reader.
// Never skips: without root it fails.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { Worker } from 'node:worker_threads';
import { openTun, adoptTun, watchLink, type TunDevice, type LinkEvent } from '../../src/tun/tun.js';

const NS = `wgtsT${process.pid}`;
const NAME = `wgtst${process.pid}`;
const TUN_MODULE = new URL('../../src/tun/tun.js', import.meta.url).href;
const EBADFD = 77;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function requireRoot(): void {
  if (process.getuid?.() !== 0) assert.fail('test/root/tun.test.ts must run as root (TUN device, network namespaces)');
}

function sh(cmd: string[], timeout = 10_000): { code: number | null; out: string } {
  const r = spawnSync(cmd[0], cmd.slice(1), { encoding: 'utf8', timeout });
  return { code: r.status, out: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

function must(cmd: string[]): string {
  const r = sh(cmd);
  assert.equal(r.code, 0, `${cmd.join(' ')} failed: ${r.out}`);
  return r.out;
}

/** `ip -j link show` of our TUN, in the namespace or (read-only) in the root namespace. */
function link(inNs: boolean): { mtu: number; flags: string[]; kind?: string } {
  const out = must(['ip', ...(inNs ? ['-n', NS] : []), '-j', '-d', 'link', 'show', 'dev', NAME]);
  const l = JSON.parse(out)[0];
  return { mtu: l.mtu, flags: l.flags, kind: l.linkinfo?.info_kind };
}

/** A worker thread that loops on the blocking tunRead and posts every result; it never loads ffi-rs. */
class Reader {
  readonly results: { n: number; data?: Uint8Array }[] = [];
  exited = false;
  private readonly worker: Worker;

  constructor(fd: number) {
    const code = `
      const { parentPort, workerData } = require('node:worker_threads');
      import(workerData.module).then(({ tunRead }) => {
        const buf = new Uint8Array(65536);
        for (let i = 0; i < 1000; i++) {
          const n = tunRead(workerData.fd, buf, 0, buf.length);
          parentPort.postMessage(n < 0 ? { n } : { n, data: buf.slice(0, n) });
          if (n < 0) break;
        }
      });`;
    this.worker = new Worker(code, { eval: true, workerData: { fd, module: TUN_MODULE } });
    this.worker.on('message', (m: { n: number; data?: Uint8Array }) => this.results.push(m));
    this.worker.on('exit', () => (this.exited = true));
    this.worker.unref(); // if a read never returns, the test still ends
  }

  /** Waits (bounded) for a result matching `pred`, consuming the results before it. */
  async take(pred: (r: { n: number; data?: Uint8Array }) => boolean, ms: number, what: string): Promise<{ n: number; data?: Uint8Array }> {
    const seen: string[] = [];
    for (let t = 0; t < ms; t += 10) {
      while (this.results.length) {
        const r = this.results.shift()!;
        if (pred(r)) return r;
        seen.push(r.data ? Buffer.from(r.data.subarray(0, 24)).toString('hex') : String(r.n));
      }
      await sleep(10);
    }
    assert.fail(`no ${what} from read() within ${ms} ms; other results: ${JSON.stringify(seen)}`);
  }

  async stop(): Promise<void> {
    if (!this.exited) await Promise.race([this.worker.terminate(), sleep(1000)]);
  }
}

function checksum(b: Uint8Array, from: number, to: number): number {
  let s = 0;
  for (let i = from; i < to; i += 2) s += (b[i] << 8) | (i + 1 < to ? b[i + 1] : 0);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

/** The echo reply to an IPv4 ICMP echo request: addresses swapped, type 0, both checksums recomputed. */
function echoReply(req: Uint8Array): Uint8Array {
  const p = Uint8Array.from(req);
  const ihl = (p[0] & 0x0f) * 4;
  p.set(req.subarray(16, 20), 12);
  p.set(req.subarray(12, 16), 16);
  p[10] = p[11] = 0;
  const ipSum = checksum(p, 0, ihl);
  p[10] = ipSum >> 8;
  p[11] = ipSum & 0xff;
  p[ihl] = 0;
  p[ihl + 2] = p[ihl + 3] = 0;
  const icmpSum = checksum(p, ihl, p.length);
  p[ihl + 2] = icmpSum >> 8;
  p[ihl + 3] = icmpSum & 0xff;
  return p;
}

const isEchoRequest = (p: Uint8Array): boolean => p.length >= 28 && p[0] >> 4 === 4 && p[9] === 1 && p[(p[0] & 0x0f) * 4] === 8;

/** Runs openTun in a child process (`prefix` decides namespace, capabilities, mounts); its WgError as JSON. */
function openInChild(prefix: string[], name: string): { code?: string; errno?: number; message?: string; ok?: boolean } {
  const js = `import(${JSON.stringify(TUN_MODULE)}).then(({ openTun }) => {
    try { const t = openTun(${JSON.stringify(name)}); t.close(); console.log(JSON.stringify({ ok: true })); }
    catch (e) { console.log(JSON.stringify({ code: e.code, errno: e.errno, message: e.message })); } });`;
  const r = sh([...prefix, process.execPath, '-e', js], 20_000);
  const line = r.out.trim().split('\n').find((l) => l.startsWith('{'));
  assert.ok(line, `child printed no result (exit ${r.code}): ${r.out}`);
  return JSON.parse(line);
}

let tun: TunDevice | null = null;
let reader: Reader | null = null;
let stopWatch: (() => void) | null = null;
const events: LinkEvent[] = [];

async function waitEvent(pred: (e: LinkEvent) => boolean, ms: number, what: string): Promise<void> {
  for (let t = 0; t < ms && !events.some(pred); t += 20) await sleep(20);
  assert.ok(events.some(pred), `watchLink did not report ${what} within ${ms} ms; events: ${JSON.stringify(events)}`);
}

after(async () => {
  stopWatch?.();
  tun?.close();
  const pids = sh(['ip', 'netns', 'pids', NS]).out.split(/\s+/).filter((s) => /^\d+$/.test(s));
  for (const pid of pids) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
  sh(['ip', 'netns', 'del', NS]); // takes the TUN with it if a test failed before deleting it
  await reader?.stop();
  assert.equal(sh(['ip', 'link', 'show', 'dev', NAME]).code !== 0, true, `${NAME} is left in the root namespace`);
});

test('openTun creates a down TUN with MTU 1420; the fd keeps working after a move to another namespace', () => {
  requireRoot();
  must(['ip', 'netns', 'add', NS]);
  tun = openTun(NAME);
  assert.equal(tun.name, NAME);
  assert.equal(tun.mtu(), 1420);
  const before = link(false);
  assert.equal(before.kind, 'tun');
  assert.equal(before.mtu, 1420);
  assert.ok(!before.flags.includes('UP'), `the link is left down: ${before.flags}`);
  reader = new Reader(tun.fd); // blocked in read() across the move
  must(['ip', 'link', 'set', 'dev', NAME, 'netns', NS]);
  assert.notEqual(sh(['ip', 'link', 'show', 'dev', NAME]).code, 0, 'gone from the root namespace');
  const moved = link(true);
  assert.equal(moved.mtu, 1420);
  assert.ok(!moved.flags.includes('UP'));
  assert.equal(tun.mtu(), 1420, 'mtu() follows the device into its new namespace');
  const adopted = adoptTun(tun.fd); // what WG_TUN_FD does; not closed: it shares the fd
  assert.equal(adopted.name, NAME);
  assert.equal(adopted.mtu(), 1420);
  stopWatch = watchLink(tun, (e) => events.push(e), { intervalMs: 100 });
});

test('a ping in the namespace is read from the TUN and our written echo reply answers it', async () => {
  requireRoot();
  assert.ok(tun && reader, 'the TUN from the first test exists');
  must(['ip', '-n', NS, 'address', 'add', '203.0.113.1/24', 'dev', NAME]);
  must(['ip', '-n', NS, 'link', 'set', 'dev', NAME, 'up']);
  await waitEvent((e) => e.kind === 'up', 3000, 'up');
  const ping = spawn('ip', ['netns', 'exec', NS, 'ping', '-c', '1', '-W', '1', '203.0.113.2'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  ping.stdout.on('data', (d) => (out += d));
  ping.stderr.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((resolve) => ping.on('exit', (c) => resolve(c)));
  const killer = setTimeout(() => ping.kill('SIGKILL'), 10_000); // by its own handle, never by name
  try {
    // Other packets (IPv6 router solicitations, MLD) may come first; they are skipped.
    const r = await reader.take((x) => !!x.data && isEchoRequest(x.data), 5000, 'ICMP echo request');
    const req = r.data!;
    assert.deepEqual([...req.subarray(12, 16)], [203, 0, 113, 1], 'source is our address');
    assert.deepEqual([...req.subarray(16, 20)], [203, 0, 113, 2], 'destination is the pinged address');
    assert.equal(r.n, (req[2] << 8) | req[3], 'read() returned one whole packet');
    const reply = echoReply(req);
    assert.equal(tun.write(reply, 0, reply.length), reply.length);
    assert.equal(await exited, 0, `ping got our reply: ${out}`);
    assert.match(out, /1 received/);
  } finally {
    clearTimeout(killer);
  }
});

test('watchLink reports an MTU change made with ip link set mtu', async () => {
  requireRoot();
  assert.ok(tun);
  await waitEvent((e) => e.kind === 'mtu' && e.mtu === 1420, 3000, 'the initial MTU');
  must(['ip', '-n', NS, 'link', 'set', 'dev', NAME, 'mtu', '1380']);
  await waitEvent((e) => e.kind === 'mtu' && e.mtu === 1380, 3000, 'MTU 1380');
  assert.equal(tun.mtu(), 1380);
});

test('openTun errors: bad names, a busy name, a non-TUN name, no CAP_NET_ADMIN, no /dev/net/tun', () => {
  requireRoot();
  for (const bad of ['', 'x'.repeat(16), 'é'.repeat(8), 'a/b', 'a b', 'a\tb', 'a:b', '.', '..']) {
    assert.throws(() => openTun(bad), { name: 'WgError', code: 'EINVAL', errno: 22 }, JSON.stringify(bad));
  }
  assert.throws(() => openTun(NAME.slice(0, 5), { mtu: 20 }), { code: 'EINVAL' }, 'MTU below 68');
  const inNs = ['ip', 'netns', 'exec', NS];
  assert.deepEqual(pick(openInChild(inNs, NAME)), { code: 'EBUSY', errno: 16 }, 'our TUN is attached to our fd');
  assert.deepEqual(pick(openInChild(inNs, 'lo')), { code: 'EEXIST', errno: 17 });
  const noCap = [...inNs, 'setpriv', '--inh-caps=-net_admin', '--bounding-set=-net_admin'];
  assert.deepEqual(pick(openInChild(noCap, `wgtsp${process.pid}`)), { code: 'EPERM', errno: 1 });
  // A private mount namespace hides /dev/net/tun under an empty tmpfs; nothing outside it changes.
  const noDev = ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', 'mount -t tmpfs none /dev/net && exec "$@"', 'sh', ...inNs];
  const r = openInChild(noDev, `wgtsn${process.pid}`);
  assert.deepEqual(pick(r), { code: 'ENOENT', errno: 2 });
  assert.match(r.message ?? '', /\/dev\/net\/tun/);
});

const pick = (r: { code?: string; errno?: number }): { code?: string; errno?: number } => ({ code: r.code, errno: r.errno });

test('ip link del wakes the blocked read() with -EBADFD and watchLink reports deleted', async () => {
  requireRoot();
  assert.ok(tun && reader);
  const t0 = Date.now();
  must(['ip', '-n', NS, 'link', 'del', 'dev', NAME]);
  const r = await reader.take((x) => x.n < 0, 3000, 'negative errno');
  assert.equal(r.n, -EBADFD, 'the woken reader (kernel: EFAULT) and later reads (EBADFD) both give -EBADFD');
  await waitEvent((e) => e.kind === 'deleted', 3000, 'deleted');
  assert.ok(Date.now() - t0 < 3000);
  const buf = new Uint8Array(2048);
  assert.equal(tun.read(buf, 0, buf.length), -EBADFD, 'a read after deletion returns at once');
  assert.equal(tun.write(buf, 0, 40), -EBADFD);
  assert.throws(() => tun!.mtu(), { code: 'ENODEV' });
  for (let i = 0; i < 100 && !reader.exited; i++) await sleep(10);
  assert.ok(reader.exited, 'the reader thread ended after its negative read');
});

test('close() deletes the link, which wakes a reader blocked in read() (else exit would hang on it)', async () => {
  requireRoot();
  const name = `wgtsc${process.pid}`;
  const dev = openTun(name);
  const blocked = new Reader(dev.fd);
  try {
    must(['ip', 'link', 'set', 'dev', name, 'netns', NS]); // deletion must also work from another namespace
    await sleep(100);
    assert.deepEqual(blocked.results, [], 'the reader is blocked');
    dev.close();
    const r = await blocked.take((x) => x.n < 0, 2000, 'negative errno after close()');
    assert.equal(r.n, -EBADFD);
    assert.notEqual(sh(['ip', '-n', NS, 'link', 'show', 'dev', name]).code, 0, `${name} is deleted`);
    dev.close(); // idempotent
  } finally {
    dev.close();
    await blocked.stop();
  }
});
