// The bench's side of the GC probe (issue 4 item 3, "show GC time in the benchmark"): the environment that
// loads bench/gcprobe.ts into wgts daemons, snapshots taken by signal around each measurement, and their
// difference.

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { gcFile, type GcKindTotals, type GcTotals } from './gcprobe.js';

export type { GcTotals };

/** GC of one interval: the main threads of the probed daemons, summed. */
export interface GcDelta {
  count: number;
  ms: number;
  byKind: Record<string, GcKindTotals>;
}

export const GC_PROBE = fileURLToPath(new URL('./gcprobe.js', import.meta.url));

/** Environment for Topology's wgts daemons: bin/wgts passes WGTS_NODE_FLAGS to node. */
export function gcProbeEnv(dir: string): Record<string, string> {
  const flags = `${process.env.WGTS_NODE_FLAGS ?? ''} --import ${GC_PROBE}`.trim();
  return { WGTS_NODE_FLAGS: flags, WGTS_GCPROBE_DIR: dir };
}

export function readGc(dir: string, pid: number): GcTotals | undefined {
  try {
    return JSON.parse(readFileSync(gcFile(dir, pid), 'utf8')) as GcTotals;
  } catch {
    return undefined;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Asks pid for a fresh snapshot (SIGUSR2) and waits for it; undefined if none came within timeoutMs. */
export async function snapshotGc(dir: string, pid: number, timeoutMs = 2000): Promise<GcTotals | undefined> {
  const before = readGc(dir, pid)?.seq ?? 0;
  try {
    process.kill(pid, 'SIGUSR2');
  } catch {
    return undefined;
  }
  for (const end = Date.now() + timeoutMs; Date.now() < end; await sleep(20)) {
    const t = readGc(dir, pid);
    if (t && t.seq > before) return t;
  }
  return undefined;
}

export function gcDelta(from: GcTotals, to: GcTotals): GcDelta {
  const byKind: Record<string, GcKindTotals> = {};
  for (const [k, v] of Object.entries(to.byKind)) {
    const f = from.byKind[k] ?? { count: 0, ms: 0 };
    byKind[k] = { count: v.count - f.count, ms: v.ms - f.ms };
  }
  return { count: to.count - from.count, ms: to.ms - from.ms, byKind };
}

export function sumGc(ds: GcDelta[]): GcDelta {
  const out: GcDelta = { count: 0, ms: 0, byKind: {} };
  for (const d of ds) {
    out.count += d.count;
    out.ms += d.ms;
    for (const [k, v] of Object.entries(d.byKind)) {
      const o = (out.byKind[k] ??= { count: 0, ms: 0 });
      o.count += v.count;
      o.ms += v.ms;
    }
  }
  return out;
}
