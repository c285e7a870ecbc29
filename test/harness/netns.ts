// A reusable two-host WireGuard topology for root tests and benchmarks (testnet.md rules): two namespaces
// of our own joined by a veth pair, a daemon in each (wgts as wg-quick starts it, or wireguard-go -f),
// configured with the real `wg`, tunnel addresses assigned and links up. Names carry the pid (and a
// per-process sequence number); everything is stopped by pid and deleted in close() or on process exit.

import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export type Impl = 'wgts' | 'wggo';

export interface Host {
  name: 'a' | 'b';
  ns: string;
  ifname: string;
  impl: Impl;
  underlay4: string;
  underlay6: string;
  tunnel4: string;
  tunnel6: string;
  port: number;
  privateKey: string;
  publicKey: string;
}

export interface TopologyOptions {
  impls?: [Impl, Impl];
  /** Peers' endpoints over 2001:db8:ff:: instead of 198.51.100.0/24. */
  ipv6Underlay?: boolean;
  /** Extra environment for wgts daemons (WGTS_CRYPTO_THREADS, WGTS_TIMER_SCALE, ...). */
  env?: Record<string, string>;
  /** Set on both peers' configuration (seconds). */
  persistentKeepalive?: number;
  /** 'a-knows-b': only a has an endpoint for b; b learns a's from its first authenticated packet. */
  endpoints?: 'both' | 'a-knows-b';
  /** 'b-only': no daemon in a (the caller runs one, e.g. wg-quick); a's names and keys are still reserved. */
  daemons?: 'both' | 'b-only';
}

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export const REPO = fileURLToPath(new URL('../../../', import.meta.url)); // dist/test/harness -> repo root
export const WGTS_BIN = join(REPO, 'bin/wgts');
export const WG_RUN_DIR = '/var/run/wireguard';
export const PORTS = { a: 51820, b: 51821 } as const;

/** Runs argv (no shell), SIGKILLed by pid after timeoutMs; code -1 when it could not start or timed out. */
export function run(argv: string[], opts: { timeoutMs?: number; input?: string; env?: NodeJS.ProcessEnv } = {}): Promise<ExecResult> {
  return new Promise((resolve) => {
    const p = spawn(argv[0], argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'], env: opts.env ?? process.env });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const t = setTimeout(() => {
      timedOut = true;
      if (p.pid) process.kill(p.pid, 'SIGKILL');
    }, opts.timeoutMs ?? 15_000);
    p.on('error', (e) => (stderr += String(e)));
    p.on('close', (code) => {
      clearTimeout(t);
      resolve({ code: timedOut ? -1 : code ?? -1, stdout, stderr: timedOut ? `${stderr}\n(timed out after ${opts.timeoutMs ?? 15_000} ms)` : stderr });
    });
    p.stdin.on('error', () => {}); // a program that never reads its input
    p.stdin.end(opts.input ?? '');
  });
}

async function must(argv: string[], timeoutMs = 10_000): Promise<string> {
  const r = await run(argv, { timeoutMs });
  if (r.code !== 0) throw new Error(`${argv.join(' ')} failed (exit ${r.code}): ${r.stderr.trim()}`);
  return r.stdout;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const sleepSync = (ms: number): void => void Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

/** Polls cond every 50 ms until true or ms elapsed; returns the last result. */
export async function waitUntil(cond: () => boolean | Promise<boolean>, ms: number): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(50)) if (await cond()) return true;
  return cond();
}

/**
 * Is pid a live process? Zombies count as gone: they hold no socket and no TUN. But a multithreaded process's
 * leader turns zombie as soon as it exits, while its other threads may still be tearing down and the shared
 * fd table (socket, TUN) is closed only by the last of them, so every thread must be gone.
 */
export function alive(pid: number): boolean {
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return false;
  }
  for (const tid of tids) {
    try {
      if (!/\) [ZX] /.test(readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8'))) return true;
    } catch {
      // That thread finished while we looked.
    }
  }
  return false;
}

export function cmdline(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  } catch {
    return [];
  }
}

export function nsPids(ns: string): number[] {
  const out = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8', timeout: 5000 }).stdout ?? '';
  return out.split(/\s+/).filter(Boolean).map(Number);
}

export function namespaceExists(ns: string): boolean {
  return existsSync(`/run/netns/${ns}`);
}

/** The live wgts or wireguard-go process in namespace ns whose command line ends with ifname. */
export function findDaemon(ns: string, ifname: string): number | undefined {
  for (const pid of nsPids(ns)) {
    const argv = cmdline(pid);
    if (!alive(pid) || argv[argv.length - 1] !== ifname) continue;
    if (argv.some((a) => a.endsWith('wireguard-go') || a.endsWith('cli.js') || a.endsWith('wgts'))) return pid;
  }
  return undefined;
}

export const socketPath = (ifname: string): string => `${WG_RUN_DIR}/${ifname}.sock`;

/** Why the root tests cannot run here (empty when they can): not root, or a missing Debian package. */
export function missingPrerequisites(): string[] {
  const out: string[] = [];
  if (process.getuid?.() !== 0) out.push('must run as root (network namespaces, veth, TUN)');
  const tools: [string, string][] = [
    ['ip', 'iproute2'], ['wg', 'wireguard-tools'], ['wg-quick', 'wireguard-tools'], ['wireguard-go', 'wireguard-go'],
    ['ping', 'iputils-ping'], ['iperf3', 'iperf3'], ['tcpdump', 'tcpdump'], ['setpriv', 'util-linux'],
  ];
  for (const [tool, pkg] of tools) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) out.push(`${tool} not found: apt-get install -y --no-install-recommends ${pkg}`);
  }
  if (!existsSync(join(REPO, 'dist/src/cli.js'))) out.push(`${join(REPO, 'dist/src/cli.js')} missing: run npx tsc -p . in ${REPO}`);
  return out;
}

/** Fails (throws) when prerequisites are missing: root tests must not skip. */
export function requireRoot(): void {
  const missing = missingPrerequisites();
  if (missing.length) throw new Error(`root test cannot run here:\n  ${missing.join('\n  ')}`);
}

export function genKeyPair(): { privateKey: string; publicKey: string } {
  const priv = spawnSync('wg', ['genkey'], { encoding: 'utf8', timeout: 5000 }).stdout.trim();
  const pub = spawnSync('wg', ['pubkey'], { input: priv + '\n', encoding: 'utf8', timeout: 5000 }).stdout.trim();
  if (!/^[A-Za-z0-9+/]{43}=$/.test(priv) || !/^[A-Za-z0-9+/]{43}=$/.test(pub)) throw new Error('wg genkey/pubkey failed');
  return { privateKey: priv, publicKey: pub };
}

/** A process-unique tag: pid, then a per-process counter (names stay <= 15 characters, IFNAMSIZ). */
let seq = 0;
export function uniqueTag(): string {
  return `${process.pid}x${(seq++).toString(36)}`;
}

/** Everything with a synchronous sweep, run on process exit and on SIGINT/SIGTERM/SIGHUP. */
const live = new Set<{ cleanupSync(): void }>();
let handlersInstalled = false;
function installExitHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  sweepDeadRuns();
  process.on('exit', () => {
    for (const t of [...live]) t.cleanupSync();
  });
  for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]] as const) {
    process.on(sig, () => process.exit(code)); // exit runs the sweep above
  }
}

/** SIGKILLs every process in the namespaces (by pid), removes the sockets, deletes the namespaces; returns those left. */
function sweep(namespaces: string[], ifnames: string[]): string[] {
  for (const ns of namespaces) for (const pid of nsPids(ns)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  for (let i = 0; i < 20 && namespaces.some((ns) => nsPids(ns).some(alive)); i++) sleepSync(50);
  for (const n of ifnames) rmSync(socketPath(n), { force: true });
  for (const ns of namespaces) {
    for (let i = 0; i < 3 && namespaceExists(ns); i++) {
      if (spawnSync('ip', ['netns', 'del', ns], { timeout: 5000 }).status === 0) break;
      sleepSync(100);
    }
  }
  return namespaces.filter(namespaceExists);
}

/** Namespaces (wgtsT, wgtsL, ...), socket names (wta, wtb, wl) and topology directories made here, with the maker's pid in the tag. */
const OUR_NS = /^wgts[A-Z](\d+)x[0-9a-z]+$/;
const OUR_SOCKET = /^(?:wt[ab]|wl)(\d+)x[0-9a-z]+\.sock$/;
const OUR_DIR = /^wgts-topo-(\d+)x[0-9a-z]+-[0-9A-Za-z]{6}$/;

/**
 * A run that was SIGKILLed never ran its exit sweep: its namespaces (and the daemons in them), sockets and
 * topology directories (logs, key files) stay. Whoever starts next removes those whose maker is gone; a live
 * run's are left alone.
 */
export function sweepDeadRuns(): void {
  const dead = (name: string, re: RegExp): boolean => {
    const m = re.exec(name);
    return m !== null && Number(m[1]) !== process.pid && !alive(Number(m[1]));
  };
  const list = (dir: string): string[] => {
    try {
      return readdirSync(dir);
    } catch {
      return [];
    }
  };
  const namespaces = list('/run/netns').filter((n) => dead(n, OUR_NS));
  const ifnames = list(WG_RUN_DIR).filter((n) => dead(n, OUR_SOCKET)).map((n) => n.slice(0, -'.sock'.length));
  const dirs = list(tmpdir()).filter((n) => dead(n, OUR_DIR));
  if (namespaces.length + ifnames.length + dirs.length === 0) return;
  const left = sweep(namespaces, ifnames);
  for (const d of dirs) rmSync(join(tmpdir(), d), { recursive: true, force: true });
  process.stderr.write(`harness: removed ${namespaces.length - left.length} namespace(s), ${ifnames.length} socket name(s) and ${dirs.length} directory(ies) left by runs that were killed${left.length ? `; could not delete ${left.join(', ')}` : ''}\n`);
}

export class Topology {
  readonly tag: string;
  readonly a: Host;
  readonly b: Host;
  readonly veth: { a: string; b: string };
  /** Directory for logs and key files (removed by close()). */
  readonly dir: string;
  /** What went wrong while stopping (daemon ignored SIGTERM, socket left behind); filled by close(). */
  readonly problems: string[] = [];
  private readonly opts: TopologyOptions;
  private createdNs: string[] = [];
  private closed = false;

  private constructor(opts: TopologyOptions) {
    this.opts = opts;
    this.tag = uniqueTag();
    const impls = opts.impls ?? ['wgts', 'wgts'];
    this.dir = mkdtempSync(join(tmpdir(), `wgts-topo-${this.tag}-`));
    this.veth = { a: `wva${this.tag}`, b: `wvb${this.tag}` };
    const host = (name: 'a' | 'b', i: number): Host => ({
      name,
      ns: `wgtsT${this.tag}${name}`,
      ifname: `wt${name}${this.tag}`,
      impl: impls[i],
      underlay4: `198.51.100.${i + 1}`,
      underlay6: `2001:db8:ff::${i + 1}`,
      tunnel4: `203.0.113.${i + 1}`,
      tunnel6: `2001:db8:1::${i + 1}`,
      port: PORTS[name],
      ...genKeyPair(),
    });
    this.a = host('a', 0);
    this.b = host('b', 1);
  }

  static async create(opts: TopologyOptions = {}): Promise<Topology> {
    const missing = missingPrerequisites();
    if (missing.length) throw new Error(`the namespace topology cannot run here:\n  ${missing.join('\n  ')}`);
    installExitHandlers();
    const t = new Topology(opts);
    live.add(t);
    try {
      await t.setup();
      return t;
    } catch (e) {
      await t.close().catch(() => {});
      throw e;
    }
  }

  /** The endpoint string of host h as its peer should know it (IPv4 or IPv6 underlay). */
  endpointOf(h: Host): string {
    return this.opts.ipv6Underlay ? `[${h.underlay6}]:${h.port}` : `${h.underlay4}:${h.port}`;
  }

  other(h: Host): Host {
    return h === this.a ? this.b : this.a;
  }

  logPath(h: Host): string {
    return join(this.dir, `${h.name}.log`);
  }

  private async setup(): Promise<void> {
    for (const h of [this.a, this.b]) {
      if (existsSync(socketPath(h.ifname))) throw new Error(`${socketPath(h.ifname)} exists already: a name collision`);
      await must(['ip', 'netns', 'add', h.ns]);
      this.createdNs.push(h.ns);
      await must(['ip', '-n', h.ns, 'link', 'set', 'lo', 'up']);
    }
    await must(['ip', '-n', this.a.ns, 'link', 'add', this.veth.a, 'type', 'veth', 'peer', 'name', this.veth.b, 'netns', this.b.ns]);
    for (const h of [this.a, this.b]) {
      const dev = this.veth[h.name];
      await must(['ip', '-n', h.ns, 'addr', 'add', `${h.underlay4}/24`, 'dev', dev]);
      // nodad: usable at once instead of after ~1 s of duplicate address detection.
      await must(['ip', '-n', h.ns, 'addr', 'add', `${h.underlay6}/64`, 'dev', dev, 'nodad']);
      await must(['ip', '-n', h.ns, 'link', 'set', dev, 'up']);
    }
    const hosts = this.opts.daemons === 'b-only' ? [this.b] : [this.a, this.b];
    for (const h of hosts) await this.startDaemon(h);
    for (const h of hosts) await this.configure(h);
  }

  /** Starts h's daemon and waits for its UAPI socket. */
  async startDaemon(h: Host): Promise<void> {
    const fd = openSync(this.logPath(h), 'a');
    try {
      if (h.impl === 'wgts') {
        // Daemon mode, as wg-quick runs it: returns once the TUN and the socket exist; the background
        // daemon inherits the log file as stdout/stderr.
        const r = spawnSync('ip', ['netns', 'exec', h.ns, WGTS_BIN, h.ifname], {
          stdio: ['ignore', fd, fd],
          env: { ...process.env, LOG_LEVEL: 'verbose', ...this.opts.env },
          timeout: 20_000,
        });
        if (r.status !== 0) throw new Error(`wgts ${h.ifname} exited ${r.status}:\n${this.log(h)}`);
        if (!existsSync(socketPath(h.ifname))) throw new Error(`wgts returned before ${socketPath(h.ifname)} existed`);
      } else {
        const p = spawn('ip', ['netns', 'exec', h.ns, 'wireguard-go', '-f', h.ifname], {
          stdio: ['ignore', fd, fd],
          env: { ...process.env, LOG_LEVEL: 'verbose' },
          detached: false,
        });
        p.unref();
        if (!(await waitUntil(() => existsSync(socketPath(h.ifname)), 5000))) throw new Error(`wireguard-go did not create its socket:\n${this.log(h)}`);
      }
    } finally {
      closeSync(fd);
    }
  }

  /** `wg set` for h: key, port, the other host as its peer; then tunnel addresses and link up. */
  async configure(h: Host): Promise<void> {
    const o = this.other(h);
    const keyFile = join(this.dir, `${h.name}.key`);
    // `wg set private-key /dev/stdin` fails from node (stdio pipes are socketpairs): a 0600 file instead.
    writeFileSync(keyFile, `${h.privateKey}\n`, { mode: 0o600 });
    const args = ['set', h.ifname, 'private-key', keyFile, 'listen-port', String(h.port), 'peer', o.publicKey, 'allowed-ips', `${o.tunnel4}/32,${o.tunnel6}/128`];
    if (this.opts.endpoints !== 'a-knows-b' || h.name === 'a') args.push('endpoint', this.endpointOf(o));
    if (this.opts.persistentKeepalive) args.push('persistent-keepalive', String(this.opts.persistentKeepalive));
    try {
      await this.wg(h, args);
    } finally {
      rmSync(keyFile, { force: true });
    }
    await must(['ip', '-n', h.ns, 'addr', 'add', `${h.tunnel4}/24`, 'dev', h.ifname]);
    await must(['ip', '-n', h.ns, 'addr', 'add', `${h.tunnel6}/64`, 'dev', h.ifname, 'nodad']);
    await must(['ip', '-n', h.ns, 'link', 'set', h.ifname, 'up']);
  }

  /** argv inside h's namespace (`ip netns exec`). */
  exec(h: Host, argv: string[], opts: { timeoutMs?: number; input?: string } = {}): Promise<ExecResult> {
    return run(['ip', 'netns', 'exec', h.ns, ...argv], opts);
  }

  /** `wg <args>` in h's namespace; throws with wg's stderr on failure. */
  async wg(h: Host, args: string[]): Promise<string> {
    const r = await this.exec(h, ['wg', ...args], { timeoutMs: 10_000 });
    if (r.code !== 0) throw new Error(`wg ${args.join(' ')} (in ${h.ns}) failed (exit ${r.code}): ${r.stderr.trim()}`);
    return r.stdout;
  }

  /** The daemon serving h.ifname: the process in h's namespace whose command line names the interface. */
  daemonPid(h: Host): number | undefined {
    return findDaemon(h.ns, h.ifname);
  }

  log(h: Host): string {
    try {
      return readFileSync(this.logPath(h), 'utf8');
    } catch {
      return '';
    }
  }

  /**
   * Stops both daemons by pid (SIGTERM, up to 3 s, then SIGKILL), checks that their sockets went away,
   * kills anything else left in our namespaces and deletes them. Idempotent. Throws afterwards if a
   * daemon needed SIGKILL or left its socket (see `problems`), since both are bugs of a daemon.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const h of [this.a, this.b]) {
      const pid = this.daemonPid(h);
      if (pid === undefined) continue;
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        continue;
      }
      if (!(await waitUntil(() => !alive(pid), 3000))) {
        this.problems.push(`${h.impl} daemon ${pid} (${h.ifname}) still running 3 s after SIGTERM: SIGKILLed`);
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone meanwhile
        }
        await waitUntil(() => !alive(pid), 2000);
      } else if (existsSync(socketPath(h.ifname))) {
        this.problems.push(`${h.impl} daemon exited on SIGTERM but left ${socketPath(h.ifname)}`);
      }
    }
    this.cleanupSync();
    if (this.problems.length) throw new Error(`topology ${this.tag} close: ${this.problems.join('; ')}`);
  }

  /** Synchronous sweep (also from a process 'exit' handler): SIGKILL by pid, sockets, namespaces, files. */
  cleanupSync(): void {
    this.closed = true;
    this.createdNs = sweep(this.createdNs, [this.a.ifname, this.b.ifname]);
    rmSync(this.dir, { recursive: true, force: true });
    live.delete(this);
  }

  /** Anything of this topology still present (namespaces, sockets). */
  leftovers(): string[] {
    const out = [this.a.ns, this.b.ns].filter(namespaceExists).map((ns) => `namespace ${ns}`);
    for (const h of [this.a, this.b]) if (existsSync(socketPath(h.ifname))) out.push(`socket ${socketPath(h.ifname)}`);
    return out;
  }
}

/**
 * Bare namespaces for tests that start daemons themselves (lifecycle, wg-quick): created with lo up,
 * swept like a Topology (SIGKILL by pid, sockets of the listed interface names, ip netns del).
 */
export class Namespaces {
  readonly names: string[] = [];
  /** Interface names whose sockets close() removes if a daemon left them. */
  readonly ifnames: string[] = [];

  constructor() {
    installExitHandlers();
    live.add(this);
  }

  /** A new namespace named prefix + a unique tag, lo up. */
  async add(prefix: string): Promise<string> {
    const ns = `${prefix}${uniqueTag()}`;
    await must(['ip', 'netns', 'add', ns]);
    this.names.push(ns);
    await must(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
    return ns;
  }

  /** An interface name (<= 15 characters) that close() will clean the socket of. */
  ifname(prefix = 'wl'): string {
    const n = `${prefix}${uniqueTag()}`;
    this.ifnames.push(n);
    return n;
  }

  close(): void {
    this.names.splice(0, this.names.length, ...sweep(this.names, this.ifnames));
    live.delete(this);
  }

  cleanupSync(): void {
    this.close();
  }
}
