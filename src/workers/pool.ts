// The crypto worker pool (the kernel's cmwq wg-crypt workers): a Piscina pool with one worker per core that
// shares the slot arenas and the key table. Tasks are whole batches; Piscina replaces a worker that dies.
// A tiny batch while no task is in flight runs here on the control thread instead (see batch.ts).

import { availableParallelism } from 'node:os';
import { Piscina } from 'piscina';
import { defaultSuite } from '../crypto/index.js';
import type { SlotArena } from '../queues/slots.js';
import type { KeyTable } from './keytable.js';
import type { CryptWorkerData } from './crypt.js';
import { cryptBatch, type CryptTask } from './batch.js';

/** Batches up to this size go inline when the pool is idle: below it a worker wake-up costs more than the crypto. */
export const INLINE_MAX = 4;

export class CryptPool {
  private readonly pool: Piscina;
  private readonly suite = defaultSuite();
  private inflight = 0;
  /** Batches run by workers and inline, for the benchmark and tests. */
  readonly stats = { pooled: 0, inline: 0 };

  constructor(
    private readonly outbound: SlotArena,
    private readonly inbound: SlotArena,
    private readonly keys: KeyTable,
    threads = availableParallelism(),
  ) {
    const workerData: CryptWorkerData = { outbound: outbound.shape, inbound: inbound.shape, keys: keys.sab };
    this.pool = new Piscina({
      filename: new URL('./crypt.js', import.meta.url).href,
      minThreads: threads,
      maxThreads: threads,
      idleTimeout: 2 ** 31 - 1,
      // Queue rather than reject: the slot arenas already bound how much work can be outstanding.
      maxQueue: Infinity,
      workerData,
    });
  }

  get threads(): number {
    return this.pool.threads.length;
  }

  /**
   * Runs a batch; `done` is called when its results are in the slots (synchronously for an inline batch).
   * Order between batches is the serial queues' business, not the pool's.
   */
  run(task: CryptTask, done: (err?: unknown) => void): void {
    if (task.count <= INLINE_MAX && this.inflight === 0) {
      this.stats.inline++;
      try {
        cryptBatch(task, this.suite, task.op === 'seal' ? this.outbound : this.inbound, this.keys);
      } catch (e) {
        return done(e);
      }
      return done();
    }
    this.stats.pooled++;
    this.inflight++;
    this.pool.run(task).then(
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

  async close(): Promise<void> {
    await this.pool.destroy();
  }
}
