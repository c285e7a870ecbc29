// The crypto worker pool (the kernel's cmwq wg-crypt workers): a Piscina pool with one worker per core that
// shares the slot arenas and the key table. Tasks are whole batches; Piscina replaces a worker that dies.
//
// When to hand a batch over is measured, not assumed: a hand-off costs tens of microseconds of CPU across
// threads while sealing a 1420-byte packet costs ~2 us. On this 2-core machine, shared with the kernel's
// network stack, handing off every batch cut tunnel throughput by a third at the same CPU. Workers only add
// parallelism when there is idle CPU for them to use, so batches go to the pool while the control thread is
// saturated AND the machine has idle cores; otherwise they are sealed and opened right here.
//
// The workers start on first demand, as cmwq starts kworkers: an idle or lightly used tunnel (most of them) never
// pays their ~11 MiB of memory and ~100 ms of CPU each. Until they have answered once, batches stay here.
//
// A worker that dies (issue 5 item 7) fails only the batch it held: the send and receive paths drop that
// batch's packets and release its slots, Piscina starts a replacement, and the loss is logged once here.
// Test-only: WGTS_TEST_CRASH_WORKER=N makes the worker running the Nth pooled batch (counted across all
// workers, so a replacement does not crash again) exit abruptly; N* makes every Nth batch's worker exit.

import { availableParallelism } from 'node:os';
import { readFileSync } from 'node:fs';
import { performance, type EventLoopUtilization } from 'node:perf_hooks';
import { createRequire } from 'node:module';
import type * as PiscinaNs from 'piscina';
import { defaultSuite } from '../crypto/index.js';
import type { SlotArena } from '../queues/slots.js';
import type { KeyTable } from './keytable.js';
import type { CryptWorkerData } from './crypt.js';
import { cryptBatch, type CryptTask } from './batch.js';

/** Batches up to this size always go inline while no task is in flight: a lone ping never pays for a hop. */
export const INLINE_MAX = 4;
/** Event-loop utilisation above which batches go to the workers, and below which they come back. */
const OFFLOAD_ON = 0.85;
const OFFLOAD_OFF = 0.6;
/** Machine-wide idle CPU fraction needed for workers to help, and below which they stop. */
const IDLE_ON = 0.2;
const IDLE_OFF = 0.1;
const SAMPLE_MS = 250;

/** Total and idle jiffies of all CPUs (/proc/stat), or null where it cannot be read. */
function cpuTimes(): { total: number; idle: number } | null {
  try {
    const f = readFileSync('/proc/stat', 'latin1');
    const v = f.slice(0, f.indexOf('\n')).trim().split(/\s+/).slice(1).map(Number);
    return { total: v.reduce((a, b) => a + b, 0), idle: v[3] + (v[4] ?? 0) };
  } catch {
    return null;
  }
}

export type CryptPolicy = 'adaptive' | 'pool' | 'inline';

/** The test-only crash hook, shared by all workers: [crash on batch N, batches started so far, every Nth?]. */
function crashHook(): Int32Array | undefined {
  const m = /^([1-9]\d*)(\*?)$/.exec(process.env.WGTS_TEST_CRASH_WORKER ?? '');
  if (!m) return undefined;
  const hook = new Int32Array(new SharedArrayBuffer(12));
  hook[0] = Number(m[1]);
  hook[2] = m[2] ? 1 : 0;
  return hook;
}

const NOOP: CryptTask = { op: 'seal', slots: new Int32Array(0), count: 0, mtu: 0 };

export class CryptPool {
  /** Null until first wanted (policy pool: at once); `ready` once a worker has answered a no-op task. */
  private pool: PiscinaNs.Piscina | null = null;
  private ready = false;
  private readonly suite = defaultSuite();
  private inflight = 0;
  private offload: boolean;
  /** Load baselines, both taken by the first sample after sampling starts (startSampling), not at start-up. */
  private elu: EventLoopUtilization = performance.eventLoopUtilization();
  private cpu: ReturnType<typeof cpuTimes> = null;
  /** this.cpu holds the previous period's reading (false: none yet since the load was last light). */
  private cpuBase = false;
  /** Armed by the first batch after an idle period and disarmed by a period without batches: idle, no wake-ups. */
  private sampler: NodeJS.Timeout | undefined;
  private batchesAtSample = 0;
  private baseline = false;
  /** Batches run by workers and inline, and workers lost, for the benchmark and tests. */
  readonly stats = { pooled: 0, inline: 0, workersLost: 0 };
  private closing = false;
  /** Thread ids of the workers Piscina reported ready: a dead worker's own id already reads -1. */
  private readonly ids = new Set<number>();
  /** Every worker is gone and Piscina started none (they failed while starting): run batches here. */
  private degraded = false;

  constructor(
    private readonly outbound: SlotArena,
    private readonly inbound: SlotArena,
    private readonly keys: KeyTable,
    readonly size = availableParallelism(),
    readonly policy: CryptPolicy = 'adaptive',
    private readonly log: (level: 'error' | 'verbose', msg: string) => void = () => {},
  ) {
    this.offload = policy === 'pool';
    if (policy === 'pool') this.start();
  }

  /**
   * Starts the workers; batches go to them from the first no-op answer on (policy pool: queued until then).
   * Piscina itself is loaded only now: ~23 ms and ~8 MiB that a daemon whose tunnels stay light never spends.
   */
  private start(): void {
    if (this.pool || this.closing) return;
    const threads = this.size;
    const { Piscina: Pool } = createRequire(import.meta.url)('piscina') as { Piscina: typeof PiscinaNs.Piscina };
    const workerData: CryptWorkerData = { outbound: this.outbound.shape, inbound: this.inbound.shape, keys: this.keys.sab, crash: crashHook() };
    const pool = (this.pool = new Pool({
      filename: new URL('./crypt.js', import.meta.url).href,
      minThreads: threads,
      maxThreads: threads,
      idleTimeout: 2 ** 31 - 1,
      // Queue rather than reject: the slot arenas already bound how much work can be outstanding.
      maxQueue: Infinity,
      workerData,
    }));
    pool.on('workerCreate', (w: { id: number }) => void this.ids.add(w.id));
    pool.on('workerDestroy', () => this.lost(pool, threads));
    // Piscina emits 'error' for a worker that fails while holding no task; unheard, it would end the daemon.
    pool.on('error', (e: unknown) => this.log('error', `Crypto worker error: ${e instanceof Error ? e.message : String(e)}`));
    const t0 = performance.now();
    pool.run(NOOP).then(
      () => {
        this.ready = true;
        if (this.policy === 'adaptive') this.log('verbose', `Crypto workers started (${threads}, first ready after ${Math.round(performance.now() - t0)} ms)`);
      },
      // A worker that fails while starting is lost() above; batches stay on the control thread meanwhile.
      () => {},
    );
  }

  /**
   * A worker went away outside close(): Piscina rejects the batch it held (the data paths drop those
   * packets) and, in the same synchronous step, starts a replacement unless workers fail while starting.
   */
  private lost(pool: PiscinaNs.Piscina, wanted: number): void {
    if (this.closing) return;
    this.stats.workersLost++;
    queueMicrotask(() => {
      const live = new Set(pool.threads.map((w) => w.threadId));
      const id = [...this.ids].find((i) => !live.has(i));
      if (id !== undefined) this.ids.delete(id);
      const running = pool.threads.length;
      if (running >= wanted) {
        this.log('error', `Crypto worker ${id ?? '(starting)'} exited unexpectedly; replaced`);
      } else {
        this.degraded = running === 0;
        this.log('error', `Crypto worker ${id ?? '(starting)'} exited unexpectedly; not replaced (${running} of ${wanted} running${this.degraded ? ', sealing and opening on the control thread' : ''})`);
      }
    });
  }

  /** Workers running now: 0 until the pool is first wanted. */
  get threads(): number {
    return this.pool?.threads.length ?? 0;
  }

  /**
   * Runs a batch; `done` is called when its results are in the slots (synchronously for an inline batch).
   * Order between batches is the serial queues' business, not the pool's.
   */
  run(task: CryptTask, done: (err?: unknown) => void): void {
    if (this.sampler === undefined && this.policy === 'adaptive' && !this.closing) this.startSampling();
    const pool = this.pool;
    if (pool === null || this.policy === 'inline' || this.degraded || !this.offload || (task.count <= INLINE_MAX && this.inflight === 0)) {
      this.stats.inline++;
      try {
        cryptBatch(task, this.suite, task.op === 'seal' ? this.outbound : this.inbound, this.keys, true);
      } catch (e) {
        return done(e);
      }
      return done();
    }
    this.stats.pooled++;
    this.inflight++;
    // Only the task's own fields cross to the worker: the caller's job may carry its completion state.
    pool.run({ op: task.op, slots: task.slots, count: task.count, mtu: task.mtu }).then(
      () => {
        this.inflight--;
        done();
      },
      (e: unknown) => {
        this.inflight--;
        done(e ?? new Error('crypto task failed'));
      },
    );
  }

  /** True while the adaptive policy samples the load (only while batches run). */
  get sampling(): boolean {
    return this.sampler !== undefined;
  }

  /** Called from a batch, so it reads nothing itself: the first period only takes the baseline. */
  private startSampling(): void {
    this.baseline = true;
    this.sampler = setInterval(() => this.sample(), SAMPLE_MS);
    this.sampler.unref();
  }

  /** Hysteresis on the control thread's utilisation and the machine's idle CPU over the last period. */
  private sample(): void {
    const batches = this.stats.inline + this.stats.pooled;
    if (this.baseline) {
      this.baseline = false;
      this.elu = performance.eventLoopUtilization();
      this.cpuBase = false;
      this.batchesAtSample = batches;
      return;
    }
    if (batches === this.batchesAtSample) {
      // A whole period without a batch: nothing to decide until traffic comes back, which starts afresh.
      clearInterval(this.sampler);
      this.sampler = undefined;
      this.offload = false;
      return;
    }
    this.batchesAtSample = batches;
    const now = performance.eventLoopUtilization();
    const u = performance.eventLoopUtilization(now, this.elu).utilization;
    this.elu = now;
    // The machine's idle CPU only matters to a saturated control thread, or to stop offloading: light traffic
    // (a ping) does not read and parse /proc/stat four times a second. The first such period takes a baseline.
    if (!this.offload && u <= OFFLOAD_ON) {
      this.cpuBase = false;
      return;
    }
    const cpu = cpuTimes();
    if (!this.cpuBase) {
      this.cpuBase = true;
      this.cpu = cpu;
      return;
    }
    const idle = cpu && this.cpu && cpu.total > this.cpu.total ? (cpu.idle - this.cpu.idle) / (cpu.total - this.cpu.total) : 1;
    this.cpu = cpu;
    if (!this.offload && u > OFFLOAD_ON && idle > IDLE_ON) {
      this.start();
      this.offload = this.ready;
    }
    else if (this.offload && (u < OFFLOAD_OFF || idle < IDLE_OFF)) this.offload = false;
  }

  async close(): Promise<void> {
    this.closing = true;
    if (this.sampler) clearInterval(this.sampler);
    await this.pool?.destroy();
  }
}
