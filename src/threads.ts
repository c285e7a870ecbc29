// Node's own helper threads (V8's background compiler and GC workers, the platform's delayed-task thread,
// libuv's pool) under SCHED_BATCH (sched(7)). Not a protocol module: it keeps the JIT off the packet path.
//
// Why: V8 optimises hot functions on a worker thread, which the control thread wakes with a futex. The Linux
// scheduler lets a freshly woken thread preempt the one that woke it, and on this VM it is placed on the same
// CPU even with the other one idle, so a ping's hop sat runnable for the whole compile: 1-2 ms (traced with
// sched_switch; ~1% of paced pings after a TCP run, 5% of their mean RTT). A SCHED_BATCH thread never preempts
// on wake-up, yet keeps its full share of CPU time, so compiles and GC marking still finish as fast when
// there is work. Our own threads (crypto workers, readers) start later and keep SCHED_OTHER.

import { readdirSync } from 'node:fs';
import { setScheduler } from './tun/sys.js';

export const SCHED_OTHER = 0;
export const SCHED_BATCH = 3;

/** The process's threads other than the main one, now (thread ids from /proc/self/task). */
export function otherThreads(): number[] {
  try {
    return readdirSync('/proc/self/task')
      .map(Number)
      .filter((tid) => Number.isInteger(tid) && tid !== process.pid);
  } catch {
    return [];
  }
}

/** Puts each thread under `policy` (priority 0); returns how many took it. A thread that has exited is skipped. */
export function setPolicy(tids: readonly number[], policy: number): number {
  const param = new Int32Array(1); // struct sched_param { int sched_priority; }
  let n = 0;
  for (const tid of tids) if (setScheduler(tid, policy, param) === 0) n++;
  return n;
}
