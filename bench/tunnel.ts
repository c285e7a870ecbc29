// The side-by-side tunnel benchmark: wgts<->wgts, wireguard-go<->wireguard-go and wgts<->wireguard-go through
// two namespaces (test/harness/netns.ts), measured in one run with rounds alternating between configurations
// (a fresh topology per configuration per round, order rotated each round, the wgts crypto-thread scaling
// runs inside the same rounds), so machine noise hits all alike.
// Per topology: iperf3 TCP 1 stream both ways, 4 streams, UDP flood, UDP packets per second at three payload
// sizes (issue 4 item 4), ping RTT and the memory a's daemon touches per ping (bench/footprint.ts), daemon CPU
// seconds per GB, and the main-thread GC time of the wgts daemons (issue 4 item 3) through the bench/gcprobe.ts
// preload.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { Topology, type Impl, sleep } from '../test/harness/netns.js';
import { cpuSeconds, memory } from '../test/helpers/procstat.js';
import { footprintPerEvent } from './footprint.js';
import { median } from './stats.js';
import { gcDelta, gcProbeEnv, readGc, snapshotGc, sumGc, type GcDelta, type GcTotals } from './gc.js';

export interface TunnelBenchOptions {
  rounds: number;
  /** iperf3 -t for every measured run. */
  seconds: number;
  log?: (line: string) => void;
}

/** One measured iperf3 run: rates in Mbit/s, bytes delivered, daemon CPU (both daemons) during the run. */
export interface IperfSample {
  mbps: number;
  bytes: number;
  cpuSeconds: number;
  lossPercent?: number;
  /** The receiver's measured duration, s. */
  seconds?: number;
  /** UDP: datagrams the receiver got, and those per second. */
  packets?: number;
  pps?: number;
  /** Main-thread GC of the wgts daemons in the topology during the run (absent without a wgts daemon). */
  gc?: GcDelta;
  error?: string;
}

/** Everything measured on one topology (one configuration in one round). */
export interface TopologySample {
  config: string;
  round: number;
  tests: Record<string, IperfSample>;
  rttMs: number | null;
  /** The same ping 2 ms apart (-i 0.002): the tunnel busy, so each hop finds its code and data still cached. */
  rttBusyMs?: number | null;
  /**
   * The 20 ms ping again, 300 ms after the 2 ms one: as idle between pings, but by then V8 has optimised the
   * code a lone packet runs (right after the TCP warm-up much of it is still baseline code).
   */
  rttWarmMs?: number | null;
  /** The first ping's round trip on the fresh tunnel, handshake included (null: it took a retry). */
  firstPingMs?: number | null;
  /**
   * Ping RTT on the fresh tunnel right after its first ping (ms): the first 50 packets a new tunnel carries,
   * before anything warmed the daemons' JIT (the other RTT rows come after 1 s of TCP).
   */
  rttFreshMs?: number | null;
  /** The 50 pings after those: a fresh tunnel ~1.5 s after its daemons started (wgts's warm-up is over by then). */
  rttFresh2Ms?: number | null;
  /** a's daemon's resident memory right after the first ping (MiB): what a configured, idle tunnel costs. */
  rssMiB?: number | null;
  /** KiB of memory a's daemon touched per ping, median (bench/footprint.ts); measured with the RTT. */
  pingKiB?: number | null;
  /** The tunnel interface's MTU in a (the UDP payload sizes are chosen to fit 1420). */
  mtu?: number;
  /** How many wgts daemons the GC figures cover (0, 1 or 2). */
  gcDaemons?: number;
  /** Each wgts daemon's GC totals written by the probe when the daemon was stopped (lifetime, not one run). */
  gcAtExit?: GcTotals[];
  problems: string[];
}

export interface ConfigSpec {
  name: string;
  impls: [Impl, Impl];
  env?: Record<string, string>;
  /** Only the single-stream a->b test (the crypto-worker scaling runs). */
  singleOnly?: boolean;
  /** With singleOnly: the idle ping RTT too. */
  withRtt?: boolean;
}

export type Medians = Record<string, number | null>;

export interface TunnelBenchResult {
  rounds: number;
  seconds: number;
  order: string[][];
  medians: Record<string, Medians>;
  samples: TopologySample[];
}

export const CONFIGS: ConfigSpec[] = [
  { name: 'wgts<->wgts', impls: ['wgts', 'wgts'] },
  { name: 'wggo<->wggo', impls: ['wggo', 'wggo'] },
  { name: 'wgts<->wggo', impls: ['wgts', 'wggo'] },
];
export const SCALING: ConfigSpec[] = [1, 2, 4].map((n) => ({
  name: `wgts<->wgts threads=${n}`,
  impls: ['wgts', 'wgts'] as [Impl, Impl],
  env: { WGTS_CRYPTO_THREADS: String(n) },
  singleOnly: true,
}));

/**
 * The same pair with the TUN and the sockets read by reader threads instead of the control thread itself
 * (WGTS_IO=threads, the design before uvpoll.ts): the figures that decided the default.
 */
export const IO_MODES: ConfigSpec[] = [
  { name: 'wgts<->wgts io=threads', impls: ['wgts', 'wgts'], env: { WGTS_IO: 'threads' }, singleOnly: true, withRtt: true },
];

/**
 * UDP payload sizes of the packets-per-second runs. The largest is 1392, not 1420: the tunnel's MTU is 1420
 * and a 1420-byte payload plus 20 bytes of IPv4 and 8 of UDP would be fragmented into two tunnel packets.
 */
export const PPS_SIZES = [64, 512, 1392];
const TUNNEL_MTU = 1420;

interface TestSpec {
  key: string;
  args: string[];
  /** UDP datagram payload (iperf3 -l); absent for TCP. */
  payload?: number;
}
const udp = (key: string, payload: number): TestSpec => ({ key, args: ['-u', '-b', '0', '-l', String(payload)], payload });
const TESTS: TestSpec[] = [
  { key: 'tcp1_ab', args: [] },
  { key: 'tcp1_ba', args: ['-R'] },
  { key: 'tcp4_ab', args: ['-P', '4'] },
  udp('udp_ab', 1372),
  ...PPS_SIZES.map((n) => udp(`udp${n}`, n)),
];
const IPERF_PORT = '5201';

/** utime + stime of pid (all its threads, live and exited) in seconds; NaN when it is gone. */
function cpuOf(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  try {
    return cpuSeconds(pid);
  } catch {
    return NaN;
  }
}

function daemonsCpu(pids: (number | undefined)[]): number {
  return pids.reduce<number>((s, p) => s + cpuOf(p), 0);
}

/** Starts a one-shot iperf3 server in b and waits until it listens (at most 3 s). Returns its exit, boxed:
 * an async function returning a bare promise would adopt it and wait for the server to finish. */
async function startServer(t: Topology, seconds: number): Promise<{ done: Promise<unknown> }> {
  const done = t.exec(t.b, ['iperf3', '-s', '-1', '-p', IPERF_PORT], { timeoutMs: (seconds + 20) * 1000 });
  for (let i = 0; i < 30; i++) {
    const r = await t.exec(t.b, ['ss', '-ltnH', `sport = :${IPERF_PORT}`], { timeoutMs: 3000 });
    if (r.stdout.trim()) break;
    await sleep(100);
  }
  return { done };
}

/** The daemons of one topology: all of them for CPU, the wgts ones (with the GC probe) for GC. */
interface Daemons {
  pids: (number | undefined)[];
  gcPids: number[];
  gcDir: string;
}

/** GC snapshots of every probed daemon; undefined if one did not answer. */
async function gcSnapshots(d: Daemons): Promise<GcTotals[] | undefined> {
  const snaps = await Promise.all(d.gcPids.map((p) => snapshotGc(d.gcDir, p)));
  return snaps.every((s) => s !== undefined) ? (snaps as GcTotals[]) : undefined;
}

/** One iperf3 client run from a to b's tunnel address, bracketed by CPU readings and GC snapshots of the daemons. */
async function iperf(t: Topology, d: Daemons, args: string[], seconds: number, payload?: number): Promise<IperfSample> {
  const server = await startServer(t, seconds);
  const gc0 = d.gcPids.length ? await gcSnapshots(d) : undefined;
  const cpu0 = daemonsCpu(d.pids);
  const r = await t.exec(t.a, ['iperf3', '-c', t.b.tunnel4, '-p', IPERF_PORT, '-t', String(seconds), '-J', ...args], {
    timeoutMs: (seconds + 15) * 1000,
  });
  const cpu = daemonsCpu(d.pids) - cpu0;
  const gc1 = gc0 ? await gcSnapshots(d) : undefined;
  // No GC figure (gc absent) when a probed daemon did not answer; measure() reports that as a problem.
  const gc = gc0 && gc1 ? { gc: sumGc(gc1.map((s, i) => gcDelta(gc0[i], s))) } : {};
  await server.done;
  try {
    const j = JSON.parse(r.stdout) as { error?: string; end?: { sum_received?: Record<string, number> } };
    if (j.error) return { mbps: NaN, bytes: 0, cpuSeconds: cpu, error: j.error, ...gc };
    const s = j.end?.sum_received;
    if (!s) throw new Error('no end.sum_received');
    if (payload !== undefined) {
      // Delivered datagrams times their size: the receiver's own count, not the sender's byte total.
      const packets = s.packets - s.lost_packets;
      const bytes = packets * payload;
      const pps = packets / s.seconds;
      return { mbps: (bytes * 8) / s.seconds / 1e6, bytes, cpuSeconds: cpu, seconds: s.seconds, lossPercent: s.lost_percent, packets, pps, ...gc };
    }
    return { mbps: (s.bytes * 8) / s.seconds / 1e6, bytes: s.bytes, cpuSeconds: cpu, seconds: s.seconds, ...gc };
  } catch (e) {
    const why = `${e instanceof Error ? e.message : String(e)}; exit ${r.code}: ${r.stderr.trim().slice(0, 200)}`;
    return { mbps: NaN, bytes: 0, cpuSeconds: cpu, error: why, ...gc };
  }
}

/** The MTU of h's tunnel interface, or undefined. */
async function mtuOf(t: Topology, h: Topology['a']): Promise<number | undefined> {
  const r = await t.exec(h, ['ip', '-o', 'link', 'show', 'dev', h.ifname], { timeoutMs: 5000 });
  const m = / mtu (\d+)/.exec(r.stdout);
  return m ? Number(m[1]) : undefined;
}

/** Average RTT of `ping -c <count> -i <interval>` a -> b through the tunnel, ms (50 pings 20 ms apart by default). */
export async function pingRtt(t: Topology, interval = '0.02', count = 50): Promise<number | null> {
  const timeoutMs = Math.max(15_000, count * Number(interval) * 2000 + 10_000); // twice the pings' own time
  const r = await t.exec(t.a, ['ping', '-q', '-c', String(count), '-i', interval, '-W', '1', t.b.tunnel4], { timeoutMs });
  const m = /= [\d.]+\/([\d.]+)\//.exec(r.stdout);
  return m ? Number(m[1]) : null;
}

/**
 * Median KiB a's daemon touches per ping: the intervals between the replies of one `ping -i 0.1`, each holding
 * one echo request and its reply (bench/footprint.ts).
 */
export async function pingFootprint(t: Topology, pid: number): Promise<number | null> {
  const child = spawn('ip', ['netns', 'exec', t.a.ns, 'ping', '-n', '-i', '0.1', '-c', '15', '-W', '1', t.b.tunnel4], { stdio: ['ignore', 'pipe', 'ignore'] });
  child.on('error', () => {}); // no ping or ip: stdout just ends, and the figure is null
  const lines = createInterface({ input: child.stdout });
  async function* replies(): AsyncGenerator<string> {
    for await (const line of lines) if (line.includes(' bytes from ')) yield line;
  }
  try {
    return await footprintPerEvent(pid, replies(), 9);
  } finally {
    lines.close();
    child.kill();
  }
}

/**
 * Pings until the handshake is done (at most ~10 s). On a fresh tunnel the first ping carries the handshake:
 * `ms` is its round trip when it was answered, null when it took a retry (or none was answered).
 */
export async function firstPing(t: Topology): Promise<{ ok: boolean; ms: number | null }> {
  for (let i = 0; i < 10; i++) {
    const r = await t.exec(t.a, ['ping', '-c', '1', '-W', '1', t.b.tunnel4], { timeoutMs: 5000 });
    if (r.code === 0) {
      const m = /time=([\d.]+) ms/.exec(r.stdout);
      return { ok: true, ms: i === 0 && m ? Number(m[1]) : null };
    }
  }
  return { ok: false, ms: null };
}

/** Pings until the handshake is done (at most ~10 s). */
export async function handshake(t: Topology): Promise<boolean> {
  return (await firstPing(t)).ok;
}

function rssMiB(pid: number): number | null {
  try {
    return memory(pid).rssMiB;
  } catch {
    return null; // the daemon is gone: the runs after this report why
  }
}

/** No daemons to account for: iperf() then takes no CPU or GC figures. */
const UNCOUNTED: Daemons = { pids: [], gcPids: [], gcDir: '' };

/**
 * The state every RTT figure is taken in: 1 s of TCP a -> b (JIT, TCP caches), not counted, then 300 ms idle.
 * `d` only lets measure() keep its daemons' probes in the run.
 */
export async function warmUp(t: Topology, d: Daemons = UNCOUNTED): Promise<void> {
  await iperf(t, d, [], 1);
  await sleep(300);
}

async function measure(spec: ConfigSpec, round: number, seconds: number, log: (l: string) => void): Promise<TopologySample> {
  const sample: TopologySample = { config: spec.name, round, tests: {}, rttMs: null, problems: [] };
  // Every wgts daemon gets the GC probe, in every configuration, so the probe's own cost is in all wgts figures.
  const gcDir = mkdtempSync(join(tmpdir(), `wgts-bench-gc-${process.pid}-`));
  const t = await Topology.create({ impls: spec.impls, env: { ...spec.env, ...gcProbeEnv(gcDir) } });
  let gcPids: number[] = [];
  try {
    const first = await firstPing(t);
    sample.firstPingMs = first.ms;
    if (!first.ok) throw new Error(`no handshake: ${t.log(t.a).slice(-500)}`);
    if (first.ms === null) sample.problems.push('the first ping went unanswered: the handshake took a retry');
    const pids = [t.daemonPid(t.a), t.daemonPid(t.b)];
    if (pids.some((p) => p === undefined)) sample.problems.push('a daemon pid was not found: CPU figures are incomplete');
    gcPids = [t.a, t.b].flatMap((h, i) => (h.impl === 'wgts' && pids[i] !== undefined ? [pids[i]] : []));
    sample.gcDaemons = gcPids.length;
    sample.rssMiB = pids[0] === undefined ? null : rssMiB(pids[0]);
    sample.mtu = await mtuOf(t, t.a);
    if (sample.mtu !== TUNNEL_MTU) sample.problems.push(`tunnel MTU is ${sample.mtu ?? 'unknown'}, the UDP sizes assume ${TUNNEL_MTU}`);
    const withRtt = !spec.singleOnly || spec.withRtt;
    if (withRtt) {
      sample.rttFreshMs = await pingRtt(t);
      sample.rttFresh2Ms = await pingRtt(t);
    }
    const daemons: Daemons = { pids, gcPids, gcDir };
    await warmUp(t, daemons);
    // RTT on an idle tunnel, before the floods (their queues would still be draining).
    if (withRtt) {
      sample.rttMs = await pingRtt(t);
      sample.rttBusyMs = await pingRtt(t, '0.002', 500);
      await sleep(300); // as before the first: compiles the 2 ms run set off finish before it is measured
      sample.rttWarmMs = await pingRtt(t);
      sample.pingKiB = pids[0] === undefined ? null : await pingFootprint(t, pids[0]);
    }
    for (const test of spec.singleOnly ? TESTS.slice(0, 1) : TESTS) {
      const s = await iperf(t, daemons, test.args, seconds, test.payload);
      sample.tests[test.key] = s;
      if (s.error) sample.problems.push(`${test.key}: ${s.error}`);
      if (gcPids.length && !s.gc) sample.problems.push(`${test.key}: a wgts daemon did not answer the GC probe`);
      if (test.payload !== undefined) await sleep(200); // let a flood's queues drain before the next run
    }
  } catch (e) {
    sample.problems.push(e instanceof Error ? e.message : String(e));
  } finally {
    try {
      await t.close();
    } catch (e) {
      sample.problems.push(e instanceof Error ? e.message : String(e));
    }
    // The probe writes its totals on exit: a missing file means the daemon did not exit through process.exit.
    const atExit = gcPids.map((p) => readGc(gcDir, p));
    if (atExit.some((g) => !g?.final)) sample.problems.push('a wgts daemon wrote no GC totals when it was stopped');
    sample.gcAtExit = atExit.filter((g): g is GcTotals => g !== undefined);
    rmSync(gcDir, { recursive: true, force: true });
  }
  const f = (k: string) => (sample.tests[k] ? sample.tests[k].mbps.toFixed(0) : '-');
  const pps = (n: number) => (sample.tests[`udp${n}`]?.pps !== undefined ? (sample.tests[`udp${n}`].pps! / 1000).toFixed(0) : '-');
  const extra = spec.singleOnly
    ? ''
    : ` first ping ${sample.firstPingMs ?? '-'} ms, b->a ${f('tcp1_ba')}, 4 streams ${f('tcp4_ab')}, udp ${f('udp_ab')} Mbit/s, ${PPS_SIZES.map((n) => `${n} B ${pps(n)}`).join(' ')} kpps, rtt ${sample.rttMs ?? '-'} ms (${sample.rttBusyMs ?? '-'} at -i 0.002, then ${sample.rttWarmMs ?? '-'}; fresh ${sample.rttFreshMs ?? '-'}, then ${sample.rttFresh2Ms ?? '-'}), a touches ${sample.pingKiB ?? '-'} KiB/ping`;
  log(`  round ${round + 1} ${spec.name}: 1 stream a->b ${f('tcp1_ab')}${extra}${sample.problems.length ? ` [${sample.problems.join('; ')}]` : ''}`);
  return sample;
}

/** CPU seconds per GB (1e9 bytes) over the TCP runs of one topology. */
function cpuPerGb(s: TopologySample): number {
  const tcp = Object.entries(s.tests).filter(([k, v]) => k.startsWith('tcp') && !v.error);
  const bytes = tcp.reduce((n, [, v]) => n + v.bytes, 0);
  const cpu = tcp.reduce((n, [, v]) => n + v.cpuSeconds, 0);
  return bytes > 0 ? cpu / (bytes / 1e9) : NaN;
}

/** Main-thread GC ms of the wgts daemons per GB over the TCP runs; NaN without wgts or a missing snapshot. */
function gcPerGb(s: TopologySample): number {
  const tcp = Object.entries(s.tests).filter(([k, v]) => k.startsWith('tcp') && !v.error);
  if (!s.gcDaemons || !tcp.length || tcp.some(([, v]) => !v.gc)) return NaN;
  const bytes = tcp.reduce((n, [, v]) => n + v.bytes, 0);
  return bytes > 0 ? tcp.reduce((n, [, v]) => n + v.gc!.ms, 0) / (bytes / 1e9) : NaN;
}

/** Main-thread GC ms per second per wgts daemon over every measured run (TCP and the UDP floods). */
function gcPerSecond(s: TopologySample): number {
  const runs = Object.values(s.tests).filter((v) => !v.error);
  if (!s.gcDaemons || !runs.length || runs.some((v) => !v.gc || !v.seconds)) return NaN;
  const seconds = runs.reduce((n, v) => n + v.seconds!, 0) * s.gcDaemons;
  return runs.reduce((n, v) => n + v.gc!.ms, 0) / seconds;
}

interface Metric {
  key: string;
  label: string;
  better: 'higher' | 'lower';
  digits: number;
  get: (s: TopologySample) => number;
}
const mbps = (test: string) => (s: TopologySample) => s.tests[test]?.mbps ?? NaN;
const METRICS: Metric[] = [
  { key: 'tcp1_ab_mbps', label: 'TCP 1 stream a->b (Mbit/s)', better: 'higher', digits: 0, get: mbps('tcp1_ab') },
  { key: 'tcp1_ba_mbps', label: 'TCP 1 stream b->a, -R (Mbit/s)', better: 'higher', digits: 0, get: mbps('tcp1_ba') },
  { key: 'tcp4_ab_mbps', label: 'TCP 4 streams a->b, -P 4 (Mbit/s)', better: 'higher', digits: 0, get: mbps('tcp4_ab') },
  { key: 'udp_ab_mbps', label: 'UDP -b 0 -l 1372 delivered (Mbit/s)', better: 'higher', digits: 0, get: mbps('udp_ab') },
  { key: 'udp_loss_pct', label: 'UDP -b 0 loss (%)', better: 'lower', digits: 1, get: (s) => s.tests.udp_ab?.lossPercent ?? NaN },
  { key: 'rtt_ms', label: 'ping RTT avg, -c 50 -i 0.02 (ms)', better: 'lower', digits: 3, get: (s) => s.rttMs ?? NaN },
  { key: 'rtt_busy_ms', label: '  ping RTT avg, 2 ms apart: -c 500 -i 0.002 (ms)', better: 'lower', digits: 3, get: (s) => s.rttBusyMs ?? NaN },
  { key: 'rtt_warm_ms', label: '  ping RTT avg, -i 0.02 again after the 2 ms run (ms)', better: 'lower', digits: 3, get: (s) => s.rttWarmMs ?? NaN },
  { key: 'rtt_fresh_ms', label: '  ping RTT avg on a fresh tunnel, its first 50 pings (ms)', better: 'lower', digits: 3, get: (s) => s.rttFreshMs ?? NaN },
  { key: 'rtt_fresh2_ms', label: '  ping RTT avg on a fresh tunnel, the 50 pings after those (ms)', better: 'lower', digits: 3, get: (s) => s.rttFresh2Ms ?? NaN },
  { key: 'first_ping_ms', label: 'first ping on a fresh tunnel, handshake included (ms)', better: 'lower', digits: 2, get: (s) => s.firstPingMs ?? NaN },
  { key: 'rss_mib', label: "a's daemon memory after the first ping, RSS (MiB)", better: 'lower', digits: 1, get: (s) => s.rssMiB ?? NaN },
  { key: 'ping_kib', label: "  memory a's daemon touches per ping (KiB)", better: 'lower', digits: 0, get: (s) => s.pingKiB ?? NaN },
  ...PPS_SIZES.flatMap((n): Metric[] => [
    { key: `udp${n}_pps`, label: `UDP -b 0 -l ${n} delivered (packets/s)`, better: 'higher', digits: 0, get: (s) => s.tests[`udp${n}`]?.pps ?? NaN },
    { key: `udp${n}_loss_pct`, label: `  loss at -l ${n} (%)`, better: 'lower', digits: 1, get: (s) => s.tests[`udp${n}`]?.lossPercent ?? NaN },
  ]),
  { key: 'cpu_s_per_gb', label: 'daemon CPU per GB, TCP runs (CPU s/GB)', better: 'lower', digits: 1, get: cpuPerGb },
  { key: 'gc_ms_per_gb', label: 'wgts main-thread GC per GB, TCP runs (ms/GB)', better: 'lower', digits: 1, get: gcPerGb },
  { key: 'gc_ms_per_s', label: 'wgts main-thread GC per daemon-second, all runs (ms/s)', better: 'lower', digits: 2, get: gcPerSecond },
];
const metric = (key: string): Metric => METRICS.find((m) => m.key === key)!;

function summarize(samples: TopologySample[]): Medians {
  const m: Medians = {};
  for (const metric of METRICS) m[metric.key] = median(samples.map(metric.get));
  return m;
}

/** Runs every configuration `rounds` times: each round the three configurations (rotated), then the scaling runs. */
export async function runTunnelBench(opts: TunnelBenchOptions): Promise<TunnelBenchResult> {
  const log = opts.log ?? (() => {});
  const samples: TopologySample[] = [];
  const order: string[][] = [];
  const rotate = <T>(xs: T[], r: number): T[] => xs.map((_, i) => xs[(i + r) % xs.length]);
  for (let r = 0; r < opts.rounds; r++) {
    const specs = [...rotate(CONFIGS, r), ...rotate(SCALING, r), ...IO_MODES];
    order.push(specs.map((c) => c.name));
    for (const spec of specs) samples.push(await measure(spec, r, opts.seconds, log));
  }
  const medians: Record<string, Medians> = {};
  for (const spec of [...CONFIGS, ...SCALING, ...IO_MODES]) medians[spec.name] = summarize(samples.filter((s) => s.config === spec.name));
  return { rounds: opts.rounds, seconds: opts.seconds, order, medians, samples };
}

/**
 * The printed table: medians per configuration, the ratio of the wgts<->wgts median to the wireguard-go one,
 * and the range of the per-round ratios (round r of wgts against round r of wireguard-go).
 */
export function formatTunnelTable(res: TunnelBenchResult): string {
  const [TS, GO, MIX] = CONFIGS.map((c) => c.name);
  const of = (config: string, round: number) => res.samples.find((s) => s.config === config && s.round === round);
  const fmt = (x: number | null | undefined, digits: number) => (x === null || x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(digits));
  const rows: string[][] = [];
  const row = (label: string, m: Metric, config: string, mix: string | null) => {
    const med = (c: string) => res.medians[c]?.[m.key] ?? null;
    const [a, b] = [med(config), med(GO)];
    const ratio = a !== null && b !== null && b !== 0 ? a / b : null;
    const perRound: number[] = [];
    for (let r = 0; r < res.rounds; r++) {
      const [x, y] = [of(config, r), of(GO, r)];
      const q = x && y ? m.get(x) / m.get(y) : NaN;
      if (Number.isFinite(q)) perRound.push(q);
    }
    const range = perRound.length > 1 ? `${Math.min(...perRound).toFixed(2)}-${Math.max(...perRound).toFixed(2)}` : '-';
    rows.push([label, m.better, fmt(a, m.digits), fmt(b, m.digits), mix ? fmt(med(mix), m.digits) : '-', fmt(ratio, 2), range]);
  };
  for (const m of METRICS) row(m.label, m, TS, MIX);
  for (const spec of SCALING) {
    const n = spec.env?.WGTS_CRYPTO_THREADS;
    row(`TCP 1 stream a->b, WGTS_CRYPTO_THREADS=${n} (Mbit/s)`, metric('tcp1_ab_mbps'), spec.name, null);
    row(`  CPU per GB, WGTS_CRYPTO_THREADS=${n} (CPU s/GB)`, metric('cpu_s_per_gb'), spec.name, null);
    row(`  main-thread GC per GB, WGTS_CRYPTO_THREADS=${n} (ms/GB)`, metric('gc_ms_per_gb'), spec.name, null);
  }
  for (const spec of IO_MODES) {
    row(`TCP 1 stream a->b, WGTS_IO=${spec.env?.WGTS_IO} (Mbit/s)`, metric('tcp1_ab_mbps'), spec.name, null);
    row(`  ping RTT, WGTS_IO=${spec.env?.WGTS_IO} (ms)`, metric('rtt_ms'), spec.name, null);
    row(`  memory a's daemon touches per ping, WGTS_IO=${spec.env?.WGTS_IO} (KiB)`, metric('ping_kib'), spec.name, null);
    row(`  CPU per GB, WGTS_IO=${spec.env?.WGTS_IO} (CPU s/GB)`, metric('cpu_s_per_gb'), spec.name, null);
  }
  const head = ['metric', 'better', 'wgts<->wgts', 'wg-go<->wg-go', 'wgts<->wg-go', 'wgts/wg-go', 'per-round'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [
    `wgts tunnel benchmark: medians of ${res.rounds} round(s), configurations alternating, iperf3 -t ${res.seconds}`,
    line(head),
    ...rows.map(line),
    '"better": which direction wins; for RTT, loss and CPU/GB lower is better, so there a ratio wgts/wg-go < 1 favours wgts.',
    'wgts/wg-go: wgts<->wgts median over wg-go<->wg-go median; per-round: range of the same ratio taken round by round.',
    'a->b: iperf3 client in a sends to the server in b. wgts<->wg-go: a runs wgts, b runs wireguard-go.',
    'CPU: utime+stime of both daemon processes (all threads) during the TCP runs. Scaling rows compare with wg-go<->wg-go.',
    `UDP packets/s: datagrams the iperf3 server received per second (iperf3 -u -b 0, one sender); ${PPS_SIZES[PPS_SIZES.length - 1]} B is the`,
    `  largest IPv4 payload in the ${TUNNEL_MTU} MTU tunnel (1420 B would fragment). Loss: sent but not received.`,
    "Memory per ping: KiB of a's daemon's pages referenced between two replies of ping -i 0.1 (clear_refs, then smaps;",
    '  median of 9): both its hops. On this VM each cold page costs a page walk: this is what sets the idle RTT.',
    'RTT 2 ms apart: the same ping with the tunnel kept busy, so little is evicted between pings; the gap between',
    '  the two RTT rows is what 20 ms of idleness costs each implementation here.',
    'RTT again after the 2 ms run: 20 ms apart as in the first row, but after 500 more pings, by which V8 has',
    '  optimised the code a lone packet runs (after the TCP warm-up alone, much of it is baseline code; --trace-opt).',
    'Fresh tunnel: the first 50 pings after the first, as soon as both daemons are configured (before any TCP), then',
    '  the 50 after those; wgts daemons run their data-path warm-up in their first ~0.5 s (src/warmpath.ts).',
    'GC: main-thread garbage collection of the wgts daemons (bench/gcprobe.ts, PerformanceObserver), crypto workers',
    '  not included; wireguard-go has no figure. wgts<->wg-go counts only its wgts side (a).',
  ].join('\n');
}
