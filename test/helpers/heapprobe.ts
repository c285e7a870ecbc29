// Test preload for a wgts daemon (WGTS_NODE_FLAGS="--import <this file>", WGTS_HEAPPROBE_DIR=<dir>): SIGUSR2
// starts V8's sampling heap profiler on the control thread, counting objects the collector has already freed
// too (garbage is what this probe is for); the next SIGUSR2 stops it and writes <dir>/heap-<pid>.json, the
// bytes allocated per call stack. Daemon mode re-spawns node with the same flags, so the probe is in the parent
// too, which exits at once; the test reads the daemon's pid's file.

import { Session } from 'node:inspector';
import { isMainThread } from 'node:worker_threads';
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface AllocSite {
  /** Innermost frames first: "function file:line". */
  stack: string[];
  bytes: number;
}

interface ProfileNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: ProfileNode[];
}

export const heapFile = (dir: string, pid: number): string => join(dir, `heap-${pid}.json`);

/** Allocation sites of a sampling heap profile; frames of this probe itself are left out. */
export function allocSites(head: ProfileNode): AllocSite[] {
  const sites: AllocSite[] = [];
  const walk = (node: ProfileNode, stack: string[]): void => {
    const f = node.callFrame;
    if (f.url.includes('heapprobe')) return;
    const here = [`${f.functionName || '(anonymous)'} ${f.url.replace(/^.*\/dist\//, '')}:${f.lineNumber + 1}`, ...stack];
    if (node.selfSize > 0) sites.push({ stack: here, bytes: node.selfSize });
    for (const c of node.children) walk(c, here);
  };
  walk(head, []);
  return sites;
}

function install(dir: string): void {
  const session = new Session();
  session.connect();
  let sampling = false;
  process.on('SIGUSR2', () => {
    if (!sampling) {
      sampling = true;
      // Every 16 bytes on average: each of a packet's few allocations is seen, whatever its size.
      session.post('HeapProfiler.startSampling', { samplingInterval: 16, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
      return;
    }
    sampling = false;
    session.post('HeapProfiler.stopSampling', (err, res) => {
      const file = heapFile(dir, process.pid);
      writeFileSync(`${file}.tmp`, JSON.stringify(err ? { error: String(err) } : allocSites(res.profile.head as ProfileNode)));
      renameSync(`${file}.tmp`, file);
    });
  });
}

const dir = process.env.WGTS_HEAPPROBE_DIR;
if (dir && isMainThread) install(dir);
