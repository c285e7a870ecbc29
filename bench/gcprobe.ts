// Benchmark preload (issue 4 item 3, "show GC time in the benchmark"): loaded into a wgts daemon with
// WGTS_NODE_FLAGS="--import <this file>" and WGTS_GCPROBE_DIR=<dir>, it totals the main thread's garbage
// collections and writes them to <dir>/gc-<pid>.json on SIGUSR2 (a snapshot, so the bench can take the
// difference around one measurement) and on exit (final: true).
//
// Daemon mode re-spawns node with process.execArgv, so the probe is in the parent too; the parent exits at
// once and its file is simply never read (the bench reads the file of the daemon's pid). Worker threads do not
// run --import preloads, so crypto-worker GC is not counted: the main thread is where per-packet garbage
// would stall the data path. No SIGTERM handler here: one would run next to the daemon's own and could
// end the process before its clean stop; 'exit' fires after that stop, when cli.ts calls process.exit.

import { PerformanceObserver, constants, type PerformanceEntry } from 'node:perf_hooks';
import { isMainThread } from 'node:worker_threads';
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface GcKindTotals {
  count: number;
  ms: number;
}

export interface GcTotals {
  pid: number;
  /** Snapshots written so far, this one included: the reader waits for it to grow. */
  seq: number;
  final: boolean;
  count: number;
  ms: number;
  byKind: Record<string, GcKindTotals>;
}

const KINDS: Record<number, string> = {
  [constants.NODE_PERFORMANCE_GC_MINOR]: 'minor',
  [constants.NODE_PERFORMANCE_GC_MAJOR]: 'major',
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb',
};

export const gcFile = (dir: string, pid: number): string => join(dir, `gc-${pid}.json`);

function install(dir: string): void {
  const totals: GcTotals = { pid: process.pid, seq: 0, final: false, count: 0, ms: 0, byKind: {} };
  const add = (entries: PerformanceEntry[]) => {
    for (const e of entries) {
      const kind = KINDS[(e as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind ?? -1] ?? 'other';
      const k = (totals.byKind[kind] ??= { count: 0, ms: 0 });
      k.count++;
      k.ms += e.duration;
      totals.count++;
      totals.ms += e.duration;
    }
  };
  const obs = new PerformanceObserver((list) => add(list.getEntries()));
  obs.observe({ entryTypes: ['gc'] });
  const write = (final: boolean) => {
    // Entries are delivered to the callback later; take the ones still queued so the snapshot is current.
    add(obs.takeRecords());
    totals.seq++;
    totals.final = final;
    const file = gcFile(dir, process.pid);
    try {
      // Rename so a reader never sees half a file.
      writeFileSync(`${file}.tmp`, JSON.stringify(totals));
      renameSync(`${file}.tmp`, file);
    } catch {
      // The bench removed the directory: nobody wants the numbers any more.
    }
  };
  process.on('SIGUSR2', () => write(false));
  process.on('exit', () => write(true));
}

const dir = process.env.WGTS_GCPROBE_DIR;
if (isMainThread && dir) install(dir);
