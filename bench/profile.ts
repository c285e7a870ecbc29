// Where an idle ping's time goes inside the wgts daemons, by function: the profile issue 4 asks for when the
// RTT target is not met. Both daemons of a wgts<->wgts topology run under `node --cpu-prof` (WGTS_NODE_FLAGS);
// after the bench's handshake and 1 s TCP warm-up, a pings b 20 ms apart, and each daemon's main-thread
// profile is cut to the pings' window. V8 samples the main thread's wall time: a sample inside a system call
// counts the time the thread waited there, preempted by the daemon it woke on the same CPU included. The
// sampler itself keeps the CPU busier than a real idle tunnel, so read shares, not the RTT it prints.
// npm run bench runs it after the hop trace; alone: npm run profile [-- pings] (root; writes
// bench/results/profile-<date>.json).

import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Topology } from '../test/harness/netns.js';
import { handshake, pingRtt, warmUp } from './tunnel.js';

/** The parts of V8's .cpuprofile format read here. */
export interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** One function's share: samples in the window and µs per ping. */
export interface ProfileRow {
  name: string;
  kind: 'system call' | 'crypto' | 'wgts' | 'node' | 'gc' | 'native';
  samples: number;
  usPerPing: number;
}

export interface DaemonProfile {
  side: 'a' | 'b';
  /** Busy (not idle) time per ping, µs. */
  busyUsPerPing: number;
  rows: ProfileRow[];
}

const SAMPLING_US = 100;

function kindOf(name: string, url: string): ProfileRow['kind'] {
  if (name === '(garbage collector)') return 'gc';
  if (url === '') return 'native';
  if (url.includes('/sodium-native/')) return 'crypto';
  if (url.endsWith('/src/tun/sys.js')) return 'system call';
  if (url.includes('/dist/src/')) return 'wgts';
  return 'node';
}

/**
 * Self time per function over the samples taken in [from, to] (µs on the profile's clock, CLOCK_MONOTONIC).
 * A sample stands for the time until the next one; idle samples (the thread asleep in epoll) are left out.
 */
export function selfTimes(p: CpuProfile, from: number, to: number, pings: number): DaemonProfile['rows'] {
  const frames = new Map(p.nodes.map((n) => [n.id, n.callFrame]));
  const rows = new Map<string, ProfileRow>();
  let t = p.startTime;
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i];
    const dt = p.timeDeltas[i + 1] ?? 0;
    const cf = frames.get(p.samples[i]);
    if (t < from || t > to || !cf || cf.functionName === '(idle)') continue;
    const file = cf.url.replace(/^file:\/\//, '').replace(/.*\/(dist|node_modules)\//, '');
    const name = cf.url ? `${cf.functionName || '(anonymous)'} ${file}:${cf.lineNumber + 1}` : cf.functionName;
    let r = rows.get(name);
    if (!r) rows.set(name, (r = { name, kind: kindOf(cf.functionName, cf.url), samples: 0, usPerPing: 0 }));
    r.samples++;
    r.usPerPing += dt / pings;
  }
  return [...rows.values()].sort((x, y) => y.usPerPing - x.usPerPing);
}

/** µs per ping by kind, for the summary line. */
export function byKind(rows: ProfileRow[]): Record<ProfileRow['kind'], number> {
  const out = { 'system call': 0, crypto: 0, wgts: 0, node: 0, gc: 0, native: 0 };
  for (const r of rows) out[r.kind] += r.usPerPing;
  return out;
}

export function formatProfile(daemons: DaemonProfile[], pings: number, top = 15): string {
  const lines = [`Idle ping time by function (node --cpu-prof, main threads, ${pings} pings -i 0.02 after 1 s TCP), µs per ping:`];
  for (const d of daemons) {
    const k = byKind(d.rows);
    const parts = Object.entries(k).map(([name, us]) => `${name} ${us.toFixed(0)}`).join(', ');
    lines.push(`  ${d.side === 'a' ? "a (pinging side)" : 'b (replying side)'}: busy ${d.busyUsPerPing.toFixed(0)}: ${parts}`);
    for (const r of d.rows.slice(0, top)) lines.push(`    ${r.usPerPing.toFixed(1).padStart(6)}  ${r.kind.padEnd(11)}  ${r.name}`);
  }
  return lines.join('\n');
}

/** The main thread's profile of pid (V8 names it CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile). */
function mainProfileOf(dir: string, pid: number): CpuProfile {
  const f = readdirSync(dir).find((n) => n.split('.')[3] === String(pid) && n.split('.')[4] === '0');
  if (!f) throw new Error(`no profile written by daemon ${pid}`);
  return JSON.parse(readFileSync(join(dir, f), 'utf8')) as CpuProfile;
}

const monotonicUs = (): number => Number(process.hrtime.bigint() / 1000n);

export interface IdleProfile {
  pings: number;
  samplingUs: number;
  /** ping's average under the sampler, ms. */
  rttMs: number | null;
  daemons: DaemonProfile[];
}

export async function profileIdlePings(pings: number): Promise<IdleProfile> {
  const dir = mkdtempSync(join(tmpdir(), 'wgts-prof-'));
  const t = await Topology.create({
    impls: ['wgts', 'wgts'],
    env: { WGTS_NODE_FLAGS: `--cpu-prof --cpu-prof-dir=${dir} --cpu-prof-interval=${SAMPLING_US}` },
  });
  try {
    const pids = { a: t.daemonPid(t.a), b: t.daemonPid(t.b) };
    if (pids.a === undefined || pids.b === undefined) throw new Error('a daemon pid was not found');
    if (!(await handshake(t))) throw new Error('no handshake');
    await warmUp(t);
    const from = monotonicUs();
    const rttMs = await pingRtt(t, '0.02', pings);
    const to = monotonicUs();
    await t.close(); // the daemons write their profiles as they exit
    const daemons = (['a', 'b'] as const).map((side): DaemonProfile => {
      const rows = selfTimes(mainProfileOf(dir, pids[side]!), from, to, pings);
      return { side, busyUsPerPing: rows.reduce((s, r) => s + r.usPerPing, 0), rows };
    });
    return { pings, samplingUs: SAMPLING_US, rttMs, daemons };
  } finally {
    await t.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const pings = Number(process.argv[2] ?? 1000);
  if (!Number.isInteger(pings) || pings < 10) throw new Error(`usage: npm run profile [-- pings (>= 10)]`);
  const r = await profileIdlePings(pings);
  console.log(formatProfile(r.daemons, pings));
  console.log(`  ping RTT under the sampler: ${r.rttMs ?? '-'} ms (the sampler's own wake-ups slow it)`);
  const results = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'results');
  mkdirSync(results, { recursive: true });
  const file = join(results, `profile-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, JSON.stringify({ date: new Date().toISOString(), ...r }, null, 1));
  console.log(`  written: ${file}`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((e: unknown) => {
    console.error(`profile: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  });
}
