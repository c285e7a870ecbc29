// Test harness: the real wireguard-go in one network namespace and our Device (wgts-udp-peer.ts, a child
// process) in another, joined by a veth pair (testnet.md: own namespaces, documentation ranges, per-run
// names with the pid, cleanup by pid). Used by the fixture capture script and the live root test.
// Needs root, iproute2, wireguard-go and wireguard-tools.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { ChildCommand, ChildConfig } from './wgts-udp-peer.js';

/** Fixed test-only keys (made once with `wg genkey`); never use them for anything real. */
export const WGGO_KEYS = {
  privateKey: 'EID1SfK5i1KSYdmg9eipFm/hzb24OLbZsJPUmQ7HDH8=',
  publicKey: 'y/0oh1RyvxyZGxJmdR4Iqg2rv0gqN/vOtI2f4mH7KSA=',
} as const;
export const WGTS_KEYS = {
  privateKey: 'uP9IMuofxifOVO06Pnx54ZOyXT4fJZB4tiUwtpaqpH8=',
  publicKey: 'E//0com7d/FWn0m9mvFsUtUMRKjnxwmVfKZNHc3LfGI=',
} as const;

export const NET = {
  underlayA: '198.51.100.1',
  underlayB: '198.51.100.2',
  underlayA6: '2001:db8:ff::1',
  underlayB6: '2001:db8:ff::2',
  tunnelA: '203.0.113.1', // wireguard-go's interface
  tunnelB: '203.0.113.2', // ours (answered by the child itself)
  wggoPort: 51820,
  wgtsPort: 51821,
} as const;

const WG_RUN_DIR = '/var/run/wireguard';
const CHILD = fileURLToPath(new URL('./wgts-udp-peer.js', import.meta.url));

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** Runs a command to completion, killed (by its pid) after timeoutMs. */
export function run(cmd: string, args: string[], timeoutMs = 10_000, input?: string): Promise<RunResult> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    p.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const t = setTimeout(() => {
      timedOut = true;
      p.kill('SIGKILL');
    }, timeoutMs);
    p.on('error', (e) => {
      stderr += e.message;
    });
    p.on('close', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr, timedOut });
    });
    if (p.stdin) {
      p.stdin.on('error', () => {}); // a command that exits without reading its input is judged by its exit code
      p.stdin.end(input);
    }
  });
}

async function must(cmd: string, args: string[], input?: string): Promise<string> {
  const r = await run(cmd, args, 10_000, input);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.timedOut ? 'timed out' : `exit ${r.code}`}): ${r.stderr.trim()}`);
  return r.stdout;
}

/** Why the live tests cannot run here (empty when they can): not root, or a missing Debian package. */
export function missingPrerequisites(): string[] {
  const out: string[] = [];
  if (process.getuid?.() !== 0) out.push('must run as root (network namespaces, veth, TUN); run the suite as root as CI does');
  const tools: [string, string][] = [['wireguard-go', 'wireguard-go'], ['wg', 'wireguard-tools'], ['ip', 'iproute2'], ['ping', 'iputils-ping']];
  for (const [tool, pkg] of tools) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) {
      out.push(`${tool} not found: apt-get install -y --no-install-recommends ${pkg}`);
    }
  }
  return out;
}

export function wireguardGoVersion(): string {
  const r = spawnSync('wireguard-go', ['--version'], { encoding: 'utf8', timeout: 5000 });
  return (r.stdout ?? '').split('\n')[0].trim();
}

const sleepSync = (ms: number): void => void Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** A JSON event line from the child. */
export type ChildEvent = { ev: string; t: number } & Record<string, unknown>;

/** The wgts child process: its event stream and its command channel. */
export class WgtsChild {
  readonly events: ChildEvent[] = [];
  stderr = '';
  private waiters = new Set<() => void>();
  exited = false;

  constructor(readonly proc: ChildProcess) {
    createInterface({ input: proc.stdout! }).on('line', (line) => {
      try {
        this.events.push(JSON.parse(line) as ChildEvent);
      } catch {
        this.events.push({ ev: 'garbage', t: -1, line });
      }
      for (const w of this.waiters) w();
    });
    proc.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    proc.stdin!.on('error', () => {}); // EPIPE after the child died: its exit is reported through waitFor
    proc.on('exit', () => {
      this.exited = true;
      for (const w of this.waiters) w();
    });
  }

  command(c: ChildCommand): void {
    this.proc.stdin!.write(`${JSON.stringify(c)}\n`);
  }

  of(ev: string): ChildEvent[] {
    return this.events.filter((e) => e.ev === ev);
  }

  /** Resolves with the first event (from index `from`) matching pred; rejects after timeoutMs or on exit. */
  waitFor(pred: (e: ChildEvent) => boolean, timeoutMs: number, what: string, from = 0): Promise<ChildEvent> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const hit = this.events.slice(from).find(pred);
        if (hit) {
          done();
          resolve(hit);
          return true;
        }
        if (this.exited) {
          done();
          reject(new Error(`wgts child exited while waiting for ${what}\n${this.describe()}`));
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n${this.describe()}`));
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        this.waiters.delete(waiter);
      };
      const waiter = (): void => void check();
      if (!check()) this.waiters.add(waiter);
    });
  }

  /** The last events (datagram hex shortened) and stderr, for failure messages. */
  describe(): string {
    const short = this.events.slice(-25).map((e) => JSON.stringify(e, (k, v) => (k === 'hex' && typeof v === 'string' ? `${v.slice(0, 16)}…(${v.length / 2} B)` : v)));
    return `child events:\n  ${short.join('\n  ')}\nchild stderr: ${this.stderr.trim() || '(none)'}`;
  }
}

export interface InteropOptions {
  /** Run the WireGuard underlay over 2001:db8:ff::/64 instead of 198.51.100.0/24. */
  ipv6Underlay?: boolean;
  /** Seed for the child's RandomSource (deterministic ephemeral key and indices). */
  seed?: number;
}

const active = new Set<WgGoInterop>();
let seq = 0;
let handlersInstalled = false;

function installExitHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', () => {
    for (const n of active) n.cleanupSync();
  });
  for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]] as const) {
    process.on(sig, () => {
      for (const n of active) n.cleanupSync();
      process.exit(code);
    });
  }
}

/** Two namespaces, wireguard-go in A, the wgts child in B. Always close() it (finally). */
export class WgGoInterop {
  readonly tag: string;
  readonly nsA: string;
  readonly nsB: string;
  readonly ifname: string;
  readonly vethA: string;
  readonly vethB: string;
  readonly wggoLog: string[] = [];
  private wggo: ChildProcess | null = null;
  private wggoExited = false;
  private createdNs: string[] = [];
  child: WgtsChild | null = null;

  private constructor(readonly opts: InteropOptions) {
    const n = seq++;
    this.tag = n === 0 ? String(process.pid) : `${process.pid}n${n}`;
    this.nsA = `wgtsA${this.tag}`;
    this.nsB = `wgtsB${this.tag}`;
    this.ifname = `wgg${this.tag}`; // at most 15 characters (IFNAMSIZ) for any pid
    this.vethA = `wgtva${this.tag}`;
    this.vethB = `wgtvb${this.tag}`;
  }

  get socketPath(): string {
    return `${WG_RUN_DIR}/${this.ifname}.sock`;
  }

  get wggoEndpoint(): string {
    return this.opts.ipv6Underlay ? `[${NET.underlayA6}]:${NET.wggoPort}` : `${NET.underlayA}:${NET.wggoPort}`;
  }

  get wgtsEndpoint(): string {
    return this.opts.ipv6Underlay ? `[${NET.underlayB6}]:${NET.wgtsPort}` : `${NET.underlayB}:${NET.wgtsPort}`;
  }

  static async start(opts: InteropOptions = {}): Promise<WgGoInterop> {
    const missing = missingPrerequisites();
    if (missing.length) throw new Error(`wireguard-go interop cannot run:\n  ${missing.join('\n  ')}`);
    installExitHandlers();
    const net = new WgGoInterop(opts);
    active.add(net);
    try {
      await net.setup();
      return net;
    } catch (e) {
      await net.close();
      throw e;
    }
  }

  private async setup(): Promise<void> {
    const { nsA, nsB, vethA, vethB } = this;
    for (const ns of [nsA, nsB]) {
      await must('ip', ['netns', 'add', ns]);
      this.createdNs.push(ns);
      await must('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    }
    await must('ip', ['-n', nsA, 'link', 'add', vethA, 'type', 'veth', 'peer', 'name', vethB, 'netns', nsB]);
    for (const [ns, dev, v4, v6] of [[nsA, vethA, NET.underlayA, NET.underlayA6], [nsB, vethB, NET.underlayB, NET.underlayB6]]) {
      await must('ip', ['-n', ns, 'addr', 'add', `${v4}/24`, 'dev', dev]);
      // nodad: the address is usable at once instead of after ~1 s of duplicate detection.
      if (this.opts.ipv6Underlay) await must('ip', ['-n', ns, 'addr', 'add', `${v6}/64`, 'dev', dev, 'nodad']);
      await must('ip', ['-n', ns, 'link', 'set', dev, 'up']);
    }

    if (existsSync(this.socketPath)) throw new Error(`${this.socketPath} already exists: another run with our name?`);
    const wggo = spawn('ip', ['netns', 'exec', nsA, 'wireguard-go', '-f', this.ifname], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, LOG_LEVEL: 'verbose' },
    });
    this.wggo = wggo;
    wggo.on('exit', () => (this.wggoExited = true));
    for (const s of [wggo.stdout!, wggo.stderr!]) createInterface({ input: s }).on('line', (l) => this.wggoLog.push(l));
    for (let i = 0; i < 100 && !existsSync(this.socketPath); i++) {
      if (this.wggoExited) break;
      await sleep(50);
    }
    if (!existsSync(this.socketPath)) throw new Error(`wireguard-go did not create ${this.socketPath}:\n${this.wggoLog.join('\n')}`);

    // wg reads keys only from files; /dev/stdin is no help because node's stdio pipes are socketpairs,
    // which open() refuses (ENXIO). So: a file readable by root alone, removed right after.
    const dir = mkdtempSync(join(tmpdir(), `wgts-interop-${this.tag}-`));
    try {
      const keyFile = join(dir, 'wggo.key');
      writeFileSync(keyFile, `${WGGO_KEYS.privateKey}\n`, { mode: 0o600 });
      await must('ip', ['netns', 'exec', nsA, 'wg', 'set', this.ifname, 'private-key', keyFile, 'listen-port', String(NET.wggoPort),
        'peer', WGTS_KEYS.publicKey, 'allowed-ips', `${NET.tunnelB}/32`, 'endpoint', this.wgtsEndpoint]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    await must('ip', ['-n', nsA, 'addr', 'add', `${NET.tunnelA}/24`, 'dev', this.ifname]);
    await must('ip', ['-n', nsA, 'link', 'set', this.ifname, 'up']);

    const cfg: ChildConfig = {
      listen: { addr: this.opts.ipv6Underlay ? NET.underlayB6 : NET.underlayB, port: NET.wgtsPort },
      privateKey: WGTS_KEYS.privateKey,
      tunnelAddr: NET.tunnelB,
      peer: { publicKey: WGGO_KEYS.publicKey, endpoint: this.wggoEndpoint, allowedIps: [`${NET.tunnelA}/32`] },
      ...(this.opts.seed !== undefined ? { seed: this.opts.seed } : {}),
    };
    const proc = spawn('ip', ['netns', 'exec', nsB, process.execPath, CHILD], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child = new WgtsChild(proc);
    proc.stdin!.write(`${JSON.stringify(cfg)}\n`);
    await this.child.waitFor((e) => e.ev === 'ready', 5_000, 'the wgts child to bind its socket');
  }

  /** A command inside namespace A (wireguard-go's side). */
  inA(args: string[], timeoutMs = 10_000): Promise<RunResult> {
    return run('ip', ['netns', 'exec', this.nsA, ...args], timeoutMs);
  }

  /** `wg show <if> <field>` in A, as [publicKey, ...values] rows. */
  async wgShow(field: string): Promise<string[][]> {
    const out = await must('ip', ['netns', 'exec', this.nsA, 'wg', 'show', this.ifname, field]);
    return out.trim().split('\n').filter(Boolean).map((l) => l.split('\t'));
  }

  /** Stops everything gracefully (child told to exit, wireguard-go SIGTERM), then the synchronous sweep. */
  async close(): Promise<void> {
    const child = this.child;
    if (child && !child.exited) {
      try {
        child.command({ cmd: 'exit' });
      } catch {
        // its stdin may already be gone; the sweep below kills it by pid
      }
      for (let i = 0; i < 20 && !child.exited; i++) await sleep(50);
    }
    if (this.wggo?.pid && !this.wggoExited) {
      this.wggo.kill('SIGTERM');
      for (let i = 0; i < 60 && !this.wggoExited; i++) await sleep(50);
    }
    this.cleanupSync();
  }

  /**
   * Kills what we started by pid, removes our wireguard-go socket if it survived, and deletes our
   * namespaces. Synchronous so that it also works from a process 'exit' handler. Idempotent.
   */
  cleanupSync(): void {
    const kill = (pid: number | undefined, sig: NodeJS.Signals): void => {
      if (!pid) return;
      try {
        process.kill(pid, sig);
      } catch {
        // already gone
      }
    };
    if (this.child && !this.child.exited) kill(this.child.proc.pid, 'SIGKILL');
    if (this.wggo?.pid && !this.wggoExited) {
      // wireguard-go removes its socket when it exits on SIGTERM; the socket's disappearance is our signal
      // because a zombie still answers kill(pid, 0) until the (maybe blocked) event loop reaps it.
      kill(this.wggo.pid, 'SIGTERM');
      for (let i = 0; i < 60 && existsSync(this.socketPath) && alive(this.wggo.pid); i++) sleepSync(50);
      if (existsSync(this.socketPath)) kill(this.wggo.pid, 'SIGKILL');
    }
    if (existsSync(this.socketPath)) {
      try {
        unlinkSync(this.socketPath);
      } catch {
        // reported by leftovers()
      }
    }
    for (const ns of this.createdNs) {
      const pids = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8', timeout: 5000 }).stdout ?? '';
      for (const p of pids.split(/\s+/).filter(Boolean)) kill(Number(p), 'SIGKILL');
      for (let i = 0; i < 3; i++) {
        if (spawnSync('ip', ['netns', 'del', ns], { timeout: 5000 }).status === 0) break;
        sleepSync(100);
      }
    }
    this.createdNs = this.createdNs.filter((ns) => namespaceExists(ns));
    active.delete(this);
  }

  /** Anything of this run still present: namespaces or a wireguard-go socket. */
  leftovers(): string[] {
    const out = [this.nsA, this.nsB].filter(namespaceExists).map((ns) => `namespace ${ns}`);
    if (existsSync(this.socketPath)) out.push(`socket ${this.socketPath}`);
    return out;
  }
}

function namespaceExists(ns: string): boolean {
  const list = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8', timeout: 5000 }).stdout ?? '';
  return list.split('\n').some((l) => l.split(/\s+/)[0] === ns);
}
