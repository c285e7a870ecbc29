// The crypto worker pool (the kernel's cmwq wg-crypt workers): a Piscina pool with one worker per core that
// shares the slot arenas and the key table. Tasks are whole batches; Piscina replaces a worker that dies.

import { availableParallelism } from 'node:os';
import { Piscina } from 'piscina';
import type { SlotArena } from '../queues/slots.js';
import type { KeyTable } from './keytable.js';
import type { CryptTask, CryptWorkerData } from './crypt.js';

export class CryptPool {
  private readonly pool: Piscina;

  constructor(outbound: SlotArena, inbound: SlotArena, keys: KeyTable, threads = availableParallelism()) {
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

  run(task: CryptTask): Promise<number> {
    return this.pool.run(task);
  }

  async close(): Promise<void> {
    await this.pool.destroy();
  }
}
