// Where a paced ping's round trip goes, hop by hop, for wgts and wireguard-go side by side (issue 4, "say what
// limited you"). Syscall tracepoints (`perf record -a -e raw_syscalls:*`) over 60 pings 20 ms apart through a
// fresh tunnel, after a 1 s TCP run as the tunnel benchmark does, cut each round trip at the syscalls every
// implementation must make: a's daemon wakes, sends the datagram; b's daemon wakes, writes the TUN, sends the
// reply; a's daemon writes the TUN; ping has its reply. The cuts are generic (any thread of the daemon, any of
// the wait, send and TUN-write calls), so the same code reads wgts's readv/sendmsg/recvmmsg/writev and
// wireguard-go's read/sendmsg/recvmsg/write. Tracing slows both, wireguard-go's many threads more; compare
// hops, not totals. x86-64 syscall numbers; needs perf (Debian: linux-perf).

import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Topology, sleep, type Impl } from '../test/harness/netns.js';
import { handshake, warmUp } from './tunnel.js';
import { median } from './stats.js';

const NR = {
  read: 0, write: 1, poll: 7, readv: 19, writev: 20, sendto: 44, sendmsg: 46, recvmsg: 47,
  epollWait: 232, ppoll: 271, epollPwait: 281, recvmmsg: 299, sendmmsg: 307, epollPwait2: 441,
} as const;
/** Calls a thread sleeps in until a packet comes: a daemon "wakes" when one returns that began before the cue. */
const WAITS: ReadonlySet<number> = new Set([
  NR.read, NR.poll, NR.readv, NR.recvmsg, NR.epollWait, NR.ppoll, NR.epollPwait, NR.recvmmsg, NR.epollPwait2,
]);
const SENDS: ReadonlySet<number> = new Set([NR.sendto, NR.sendmsg, NR.sendmmsg]);
const WRITES: ReadonlySet<number> = new Set([NR.write, NR.writev]);

export type Actor = 'a' | 'b' | 'ping';

/** One syscall entry or exit: time in µs, the actor and thread, the call, and its first argument (the fd). */
export interface SysEvent {
  us: number;
  actor: Actor;
  tid: number;
  enter: boolean;
  nr: number;
  arg0: number;
}

/** Segment names, in round-trip order, and what each spans. */
export const SEGMENTS = [
  ['toA', "ping's send to a's daemon awake"],
  ['aSend', "a: awake to its UDP send (the send hop)"],
  ['toB', "a's send to b's daemon awake"],
  ['bReceive', 'b: awake to its TUN write (the receive hop)'],
  ['bReply', 'b: TUN write to its UDP send (the reply)'],
  ['aReceive', "b's send to a's TUN write (a's wake-up and receive hop)"],
  ['toPing', "a's TUN write to ping holding the reply"],
  ['total', 'round trip, traced'],
] as const;
export type Segment = (typeof SEGMENTS)[number][0];
export type Hops = Record<Segment, number>;

/**
 * Parses `perf script -F comm,tid,time,event,trace` output of raw_syscalls events, in time order. Threads not
 * in `actors` are dropped, except that a thread whose command is `ping` is the pinger.
 */
export function parsePerfScript(text: string, actors: ReadonlyMap<number, Actor>): SysEvent[] {
  const out: SysEvent[] = [];
  const re = /^\s*(\S+)\s+(\d+)\s+([\d.]+):\s+raw_syscalls:sys_(enter|exit):\s+NR (\d+)(?: \(([0-9a-f]+))?/;
  for (const line of text.split('\n')) {
    const m = re.exec(line);
    if (!m) continue;
    const tid = Number(m[2]);
    const actor = actors.get(tid) ?? (m[1] === 'ping' ? 'ping' : undefined);
    if (!actor) continue;
    out.push({ us: Number(m[3]) * 1e6, actor, tid, enter: m[4] === 'enter', nr: Number(m[5]), arg0: m[6] ? parseInt(m[6], 16) : -1 });
  }
  return out.sort((x, y) => x.us - y.us); // perf script orders by time already; a hand-made trace may not
}

/**
 * Cuts each round trip into SEGMENTS (µs). A round trip starts at ping's sendto; one whose cuts cannot all be
 * found (a lost packet, a trace that ended early) is left out. `tunFds` are each daemon's TUN descriptors.
 */
export function cutRoundTrips(events: SysEvent[], tunFds: Record<'a' | 'b', ReadonlySet<number>>): Hops[] {
  const starts = events.flatMap((e, i) => (e.actor === 'ping' && e.enter && e.nr === NR.sendto ? [i] : []));
  const entered = new Map<number, number>(); // tid -> when its pending syscall began
  for (let i = 0; i < (starts[0] ?? 0); i++) if (events[i].enter) entered.set(events[i].tid, events[i].us);
  const out: Hops[] = [];
  for (let k = 0; k < starts.length; k++) {
    const end = k + 1 < starts.length ? starts[k + 1] : events.length;
    const at: number[] = [events[starts[k]].us];
    for (let i = starts[k]; i < end; i++) {
      const e = events[i];
      const began = entered.get(e.tid);
      if (e.enter) entered.set(e.tid, e.us);
      const step = at.length - 1;
      if (step === 7) continue; // this trip is cut; the rest of its window only updates `entered`
      const cue = at[step];
      const woke = (who: Actor): boolean => e.actor === who && !e.enter && WAITS.has(e.nr) && began !== undefined && began < cue;
      const tunWrite = (who: 'a' | 'b'): boolean => e.actor === who && e.enter && WRITES.has(e.nr) && tunFds[who].has(e.arg0);
      const send = (who: Actor): boolean => e.actor === who && e.enter && SENDS.has(e.nr);
      const replied = e.actor === 'ping' && !e.enter && e.nr === NR.recvmsg;
      const hit = [woke('a'), send('a'), woke('b'), tunWrite('b'), send('b'), tunWrite('a'), replied][step];
      if (hit) at.push(e.us);
    }
    if (at.length < 8) continue;
    const d = (i: number): number => at[i + 1] - at[i];
    out.push({ toA: d(0), aSend: d(1), toB: d(2), bReceive: d(3), bReply: d(4), aReceive: d(5), toPing: d(6), total: at[7] - at[0] });
  }
  return out;
}

/** Median of each segment over the round trips; null when there were none. */
export function medianHops(trips: Hops[]): Hops | null {
  if (!trips.length) return null;
  return Object.fromEntries(SEGMENTS.map(([k]) => [k, median(trips.map((t) => t[k])) ?? NaN])) as Hops;
}

export interface HopsResult {
  impl: Impl;
  trips: number;
  hops: Hops | null;
  error?: string;
}

const perfMissing = (): boolean => spawnSync('perf', ['--version'], { stdio: 'ignore' }).status !== 0;

/** fds of pid that are the TUN (/dev/net/tun). */
function tunFdsOf(pid: number): Set<number> {
  const fds = new Set<number>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`) === '/dev/net/tun') fds.add(Number(fd));
    } catch {
      // closed meanwhile
    }
  }
  return fds;
}

const threadsOf = (pid: number): number[] => readdirSync(`/proc/${pid}/task`).map(Number);

/** One traced run for impl<->impl. */
export async function traceHops(impl: Impl, pings = 60): Promise<HopsResult> {
  if (perfMissing()) return { impl, trips: 0, hops: null, error: 'perf is not installed (Debian: linux-perf)' };
  const dir = mkdtempSync(join(tmpdir(), 'wgts-hops-'));
  const t = await Topology.create({ impls: [impl, impl] });
  try {
    if (!(await handshake(t))) throw new Error('no handshake');
    await warmUp(t);
    const pa = t.daemonPid(t.a);
    const pb = t.daemonPid(t.b);
    if (pa === undefined || pb === undefined) throw new Error('a daemon pid was not found');
    const actors = new Map<number, Actor>([...threadsOf(pa).map((x) => [x, 'a'] as const), ...threadsOf(pb).map((x) => [x, 'b'] as const)]);
    const data = join(dir, 'perf.data');
    const rec = spawn('perf', ['record', '-q', '-a', '-o', data, '-e', 'raw_syscalls:sys_enter', '-e', 'raw_syscalls:sys_exit'], { stdio: 'ignore' });
    const recorded = new Promise((r) => rec.on('close', r));
    await sleep(800); // perf needs a moment before it records
    await t.exec(t.a, ['ping', '-q', '-c', String(pings), '-i', '0.02', '-W', '1', t.b.tunnel4], { timeoutMs: 30_000 });
    rec.kill('SIGINT');
    await recorded;
    const script = spawnSync('perf', ['script', '-i', data, '-F', 'comm,tid,time,event,trace'], { encoding: 'utf8', maxBuffer: 1 << 30 });
    if (script.status !== 0) throw new Error(`perf script failed: ${script.stderr.slice(0, 200)}`);
    const trips = cutRoundTrips(parsePerfScript(script.stdout, actors), { a: tunFdsOf(pa), b: tunFdsOf(pb) });
    return { impl, trips: trips.length, hops: medianHops(trips) };
  } catch (e) {
    return { impl, trips: 0, hops: null, error: e instanceof Error ? e.message : String(e) };
  } finally {
    await t.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The side-by-side table: one row per segment, µs medians, and wgts / wireguard-go. */
export function formatHops(results: HopsResult[]): string {
  const by = (impl: Impl): HopsResult | undefined => results.find((r) => r.impl === impl);
  const w = by('wgts');
  const g = by('wggo');
  const lines = [`Round trip by hop, µs (medians of ${w?.trips ?? 0} and ${g?.trips ?? 0} traced pings, -i 0.02 after 1 s TCP):`];
  for (const r of results) if (r.error) lines.push(`  ${r.impl}: not traced: ${r.error}`);
  const f = (x: number | undefined): string => (x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(0));
  const width = Math.max(...SEGMENTS.map(([, label]) => label.length));
  lines.push(`  ${'segment'.padEnd(width)}  ${'wgts'.padStart(6)}  ${'wg-go'.padStart(6)}  ratio`);
  for (const [k, label] of SEGMENTS) {
    const a = w?.hops?.[k];
    const b = g?.hops?.[k];
    const ratio = a !== undefined && b !== undefined && b > 0 ? (a / b).toFixed(2) : '-';
    lines.push(`  ${label.padEnd(width)}  ${f(a).padStart(6)}  ${f(b).padStart(6)}  ${ratio}`);
  }
  return lines.join('\n');
}
