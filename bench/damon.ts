// The host's DAMON memory monitors, read from sysfs for the bench report. A running kdamond samples pages
// on a fixed interval; on this VM kind each pass costs the next wake-up of every Node process ~0.5-1 ms
// (README, "The slow pings come from this VM's memory monitor"), which shows in the idle RTT rows, so a
// results file records whether one was running and how often it sampled.

import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

export const DAMON_SYSFS = '/sys/kernel/mm/damon/admin/kdamonds';

export interface DamonMonitor {
  /** kdamond index under DAMON_SYSFS. */
  index: number;
  /** 'on' or 'off'. */
  state: string;
  /** Per context: the address space monitored ('paddr', 'vaddr', 'fvaddr'). */
  operations: string[];
  /** Per context: sampling interval, microseconds. */
  sampleUs: number[];
  /** Per context: the actions of its schemes ('pageout', 'stat', ...). */
  actions: string[][];
}

function readText(path: string): string | null {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return null;
  }
}

function numbered(dir: string): number[] {
  try {
    return readdirSync(dir).filter((n) => /^\d+$/.test(n)).map(Number).sort((a, b) => a - b);
  } catch {
    return [];
  }
}

/** Every kdamond under `root`; empty when DAMON is absent or its sysfs interface cannot be read. */
export function readDamon(root = DAMON_SYSFS): DamonMonitor[] {
  return numbered(root).map((index) => {
    const base = join(root, String(index));
    const contexts = numbered(join(base, 'contexts')).map((c) => join(base, 'contexts', String(c)));
    return {
      index,
      state: readText(join(base, 'state')) ?? 'unknown',
      operations: contexts.map((c) => readText(join(c, 'operations')) ?? 'unknown'),
      sampleUs: contexts.map((c) => Number(readText(join(c, 'monitoring_attrs', 'intervals', 'sample_us')) ?? NaN)),
      actions: contexts.map((c) =>
        numbered(join(c, 'schemes')).map((s) => readText(join(c, 'schemes', String(s), 'action')) ?? 'unknown'),
      ),
    };
  });
}

/** One line for the report: the running monitors and how often they sample, or that none runs. */
export function describeDamon(monitors: DamonMonitor[]): string {
  const on = monitors.filter((m) => m.state === 'on');
  if (on.length === 0) return 'host memory monitor (DAMON): none running';
  const parts = on.map((m) => {
    const ctx = m.operations.map((op, i) => {
      const ms = m.sampleUs[i] / 1000;
      const acts = m.actions[i].length ? `, schemes: ${m.actions[i].join(' ')}` : '';
      return `${op} sampled every ${Number.isFinite(ms) ? `${ms} ms` : '? ms'}${acts}`;
    });
    return `kdamond ${m.index} (${ctx.join('; ') || 'no context'})`;
  });
  return `host memory monitor (DAMON): ${parts.join(', ')}`;
}
