// Memory a daemon touches per ping (issue 4, "say what limited you"): the kernel's referenced bits, cleared
// through /proc/<pid>/clear_refs before one ping and summed from /proc/<pid>/smaps after it. On this VM an
// idle vCPU comes back with its TLB and caches gone, so each distinct 4 KiB page a hop touches costs a page
// walk on cold memory (~0.3 us measured): this figure, not instruction counts, is what sets an idle tunnel's
// RTT here. Between pings an idle daemon touches little (wireguard-go: 0-500 KiB in 60 ms windows; wgts
// nothing, or a few MB in a window where it wakes for a timer), and the median over pings keeps those out.

import { readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { getAffinity, setAffinity } from '../src/tun/sys.js';
import { median } from './stats.js';

/**
 * Clears pid's referenced bits (every mapping); false if that is not allowed or pid is gone. pid must be
 * another process: the caller's own threads share its address space, so visiting CPUs would not drop theirs.
 * Clearing alone is not enough on this VM (a PVM guest): translations the CPUs still cache for pid survive it,
 * and a page touched through one is not marked again (measured: 4096 pages touched right after a clear showed
 * as 16 KiB in 14 of 20 tries). So this thread then runs once on every CPU, which switches each away from
 * pid's address space and, without PCID, drops its translations: 60 of 60 tries then showed all 16 MiB.
 * Running another program on each CPU (taskset) did the same, but its libc pages came back referenced in
 * pid's smaps (shared pages: ~1.2 MB in windows with no ping); moving this thread maps nothing new.
 */
export function clearRefs(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '1');
  } catch {
    return false;
  }
  visitEveryCpu();
  return true;
}

/** Runs the calling thread briefly on each CPU it may use, then gives it back its own CPU set. */
function visitEveryCpu(): void {
  const saved = new Uint8Array(128); // cpu_set_t: 1024 CPUs
  if (getAffinity(0, saved) < 0) return;
  const one = new Uint8Array(saved.byteLength);
  for (let cpu = 0; cpu < Math.min(cpus().length, saved.byteLength * 8); cpu++) {
    if (!(saved[cpu >> 3] & (1 << (cpu & 7)))) continue;
    one.fill(0);
    one[cpu >> 3] = 1 << (cpu & 7);
    setAffinity(0, one);
  }
  setAffinity(0, saved);
}

/** KiB that pid referenced since its bits were last cleared, in all and in anonymous mappings; undefined if pid is gone. */
export function referenced(pid: number): { total: number; anon: number } | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/smaps`, 'utf8');
  } catch {
    return undefined;
  }
  let total = 0;
  let anon = 0;
  let isAnon = false;
  for (const line of text.split('\n')) {
    // A mapping's header: "start-end perms offset dev inode [path]"; its fields follow as "Name: value kB".
    const head = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head) {
      isAnon = head[1] === '';
      continue;
    }
    if (!line.startsWith('Referenced:')) continue;
    const kb = Number(line.split(/\s+/)[1]);
    if (!Number.isFinite(kb)) continue;
    total += kb;
    if (isAnon) anon += kb;
  }
  return { total, anon };
}

/**
 * Median KiB pid touched between consecutive `events` (a ping's replies, say), over `count` intervals. The
 * bits are cleared right after each event and read right at the next, so an interval holds one ping; a timer
 * of the daemon's that fires in it adds to that sample only, which the median keeps out. Null if the bits
 * cannot be cleared or read, or no interval completed.
 */
export async function footprintPerEvent(pid: number, events: AsyncIterable<unknown>, count: number): Promise<number | null> {
  const samples: number[] = [];
  let armed = false;
  for await (const _ of events) {
    if (armed) {
      const r = referenced(pid);
      if (!r) return null;
      samples.push(r.total);
      if (samples.length >= count) break;
    }
    if (!clearRefs(pid)) return null;
    armed = true;
  }
  return median(samples);
}
