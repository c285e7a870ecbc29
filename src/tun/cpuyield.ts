// When to give up the CPU after handing a lone packet to the kernel. On a quiet tunnel the packet just sent
// often wakes the task that waits for it on this very CPU (a local peer's daemon, an application reading the
// TUN), and a sync wake-up puts that task on our run queue. If it was asleep, it preempted us inside
// sendmsg(2). If it was merely runnable (it had been preempted by us earlier), it waits until our turn ends,
// and the bookkeeping after the send (returning through libuv to epoll, ~30 us on an idle VM) sits on the
// packet's path. sched_yield(2) right after the send lets it run first. A ping through two wgts daemons on one
// machine was 5-12% faster in five of six A/B runs (10-16 rounds each) and level in the sixth. The same yield
// after TUN writes gained nothing in two A/Bs, though the reader then ran ~6 us sooner (medians), so it is not
// done. A send within QUIET_MS of the previous one never yields: at 1 ms a TCP run still yielded on ~8% of its
// ACKs (the stream's pauses), at 5 ms about 10 times a second.

import type { Clock } from '../clock.js';

/** A send this long after the previous one finds the tunnel quiet. */
export const QUIET_MS = 5;

export class QuietYield {
  private lastSend = -Infinity;
  /** Yields so far (for tests). */
  yields = 0;

  constructor(
    private readonly clock: Clock,
    private readonly yieldCpu: () => void,
  ) {}

  /** `datagrams` just went to the kernel in one flush. */
  sent(datagrams: number): void {
    if (datagrams === 0) return;
    const t = this.clock.now();
    const quiet = t - this.lastSend >= QUIET_MS;
    this.lastSend = t;
    if (datagrams === 1 && quiet) {
      this.yields++;
      this.yieldCpu();
    }
  }
}
