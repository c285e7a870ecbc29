// Process and namespace figures for the issue 5 load tests (items 3 and 6): CPU time and memory of a daemon
// from /proc/PID/{stat,status}, a thread's scheduling policy (src/threads.ts), and a namespace's UDP counters from /proc/net/snmp (read inside it, since
// that file is per network namespace).

import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { Host, Topology } from '../harness/netns.js';

const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/** The fields of a /proc stat file from field 3 (state) on: field n (1-based, as proc(5) numbers them) is [n - 3]. */
function statFields(path: string): string[] {
  const stat = readFileSync(path, 'utf8');
  // After the command name, which may hold spaces.
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** utime + stime of every thread of pid, in seconds. */
export function cpuSeconds(pid: number): number {
  const f = statFields(`/proc/${pid}/stat`);
  return (Number(f[14 - 3]) + Number(f[15 - 3])) / CLK_TCK;
}

/** sched(7) policy of thread tid of process pid ('self': this one): 0 SCHED_OTHER, 3 SCHED_BATCH, ... */
export function threadPolicy(pid: number | 'self', tid: number): number {
  return Number(statFields(`/proc/${pid}/task/${tid}/stat`)[41 - 3]);
}

export interface Memory {
  /** Resident set now, and its peak (VmHWM), in MiB. */
  rssMiB: number;
  peakMiB: number;
}

export function memory(pid: number): Memory {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rssMiB: kb('VmRSS') / 1024, peakMiB: kb('VmHWM') / 1024 };
}

/** CPU use of pid between two samples, as % of one core. */
export class CpuMeter {
  private readonly cpu0: number;
  private readonly t0 = performance.now();

  constructor(private readonly pid: number) {
    this.cpu0 = cpuSeconds(pid);
  }

  percent(): number {
    return (100 * (cpuSeconds(this.pid) - this.cpu0)) / ((performance.now() - this.t0) / 1000);
  }
}

export type UdpCounters = Record<string, number>;

/** The `Udp:` line of /proc/net/snmp in h's namespace (InDatagrams, RcvbufErrors, OutDatagrams, ...). */
export async function udpCounters(t: Topology, h: Host): Promise<UdpCounters> {
  const r = await t.exec(h, ['cat', '/proc/net/snmp'], { timeoutMs: 10_000 });
  const lines = r.stdout.split('\n').filter((l) => l.startsWith('Udp:'));
  if (r.code !== 0 || lines.length < 2) throw new Error(`no Udp counters in ${h.ns}: ${r.stderr}`);
  const keys = lines[0].split(/\s+/).slice(1);
  const values = lines[1].split(/\s+/).slice(1).map(Number);
  return Object.fromEntries(keys.map((k, i) => [k, values[i]]));
}

export function udpDelta(a: UdpCounters, b: UdpCounters): UdpCounters {
  return Object.fromEntries(Object.keys(b).map((k) => [k, b[k] - (a[k] ?? 0)]));
}
