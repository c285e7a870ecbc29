// Who reads the TUN (the kernel's xmit entry point). By default the control thread reads it itself when libuv
// reports it readable (uvpoll.ts): one wake-up per packet hop, which is what an idle tunnel's latency needs.
// Under a flood of small packets, though, one read(2) per packet is the control thread's largest cost, so
// past HANDOVER_RATE reads/s the reading moves to the TUN reader thread (reader.ts), which reads in
// parallel on another core and hands slots over in batches; once it sees less than HANDBACK_RATE it hands
// the TUN back. TCP with TSO stays on the control thread: a read is a 64 KB super-packet, ~3k reads/s at
// 1.6 Gbit/s. WGTS_IO=threads keeps the reader thread in charge all the time (its design before this one).
// Ownership is one shared word: only its owner reads, so packets never race each other out of order.
// The reader thread starts only once reads pass PRESTART_RATE (it costs ~11 MiB and ~100 ms of CPU to start,
// which most tunnels never need) and takes the TUN once it says it is waiting for it (word 2).

import { Worker } from 'node:worker_threads';
import type { IoMode } from './bind.js';
import type { TunDevice } from './tun.js';
import type { SlotArena } from '../queues/slots.js';
import type { SpscQueue } from '../queues/spsc.js';
import { BUDGET, NO_SLOTS, TunIngest } from './ingest.js';
import { FdWatcher } from './uvpoll.js';
import { setNonBlocking } from './sys.js';
import { E } from './libc.js';
import { WgError } from '../errors.js';
import { OWNER_MAIN, OWNER_THREAD, type TunReaderData, type TunReaderMessage } from './reader.js';

/** TUN reads per readiness callback on the control thread (a read may be a 64 KB super-packet). */
const READS_PER_TURN = 16;
/** Reads per second on the control thread above which the reader thread takes over, measured per window. */
const HANDOVER_RATE = 20_000;
/** Reads per second at which the reader thread is started, so that it is ready by the hand-over. */
const PRESTART_RATE = 10_000;
const WINDOW_MS = 100;
const LOG_EVERY_MS = 5_000;

export interface TunFeedHooks {
  /** Packets are in the ready queue. */
  kick(): void;
  /** Reading failed for good (the interface was deleted, say). */
  failed(why: string): void;
  error(msg: string): void;
  verbose(msg: string): void;
}

export class TunFeed {
  private watcher: FdWatcher | undefined;
  private reader: Worker | undefined;
  /** Word 0: who reads; word 1: stop; word 2: the reader thread is up and waiting (reader.ts). */
  private readonly owner = new Int32Array(new SharedArrayBuffer(12));
  private stalled = false;
  private closed = false;
  private windowStart = performance.now();
  private windowReads = 0;
  private lastLog = -Infinity;
  /** Hand-overs to the reader thread so far, for the log line. */
  private handovers = 0;
  /** The control thread's read of the TUN (loop mode), for the readiness callback and pollNow(). */
  private readable: (() => void) | null = null;

  constructor(
    private readonly tun: TunDevice,
    private readonly io: IoMode,
    private readonly arena: SlotArena,
    private readonly ready: SpscQueue,
    private readonly free: SpscQueue,
    private readonly hooks: TunFeedHooks,
  ) {}

  start(): void {
    if (this.io === 'threads') {
      Atomics.store(this.owner, 0, OWNER_THREAD);
      this.startReader();
      return;
    }
    const r = setNonBlocking(this.tun.fd);
    if (r < 0) throw new WgError('EIO', `cannot make the TUN non-blocking: errno ${-r}`, -r);
    // Newest free slot first: the reader thread pops (and so uses the oldest) only while it owns the TUN, and
    // then this ingest does not run (owner word, handOver).
    const ingest = new TunIngest(this.tun.fd, this.tun.vnetHdr, this.arena, this.ready, this.free, true);
    const readable = (this.readable = (): void => {
      // The first read goes out before the rest are looked for: a lone packet (a ping, an ACK) leaves without
      // waiting for the read that finds the queue empty.
      let res = ingest.read(1);
      this.hooks.kick();
      if (res === BUDGET) {
        res = ingest.read(READS_PER_TURN - 1);
        this.hooks.kick();
      }
      if (res === NO_SLOTS) {
        // Every slot is in flight: stop reading (the TUN queue holds the rest) until the send path frees some.
        this.stalled = true;
        this.watcher?.stop();
      } else if (res < 0) this.fail(res);
      else this.measure(ingest.reads);
    });
    this.watcher = new FdWatcher(this.tun.fd, readable, () => {
      // POLLERR: a read says why (-EBADFD once the interface is gone); anything else, carry on watching.
      const res = ingest.read(1);
      this.hooks.kick();
      if (res < 0) this.fail(res);
      else if (res === NO_SLOTS) this.stalled = true;
      else this.watcher?.start();
    });
    Atomics.store(this.owner, 0, OWNER_MAIN);
    this.watcher.start();
  }

  /** True while the reader thread reads: the send path then sleeps on the ready queue between bursts. */
  get threadReads(): boolean {
    return Atomics.load(this.owner, 0) === OWNER_THREAD;
  }

  /**
   * Reads the TUN now, if the control thread is the one reading it: called right after packets were written
   * to the TUN, because the local stack often answers within that write (an ICMP echo reply, TCP ACKs), and
   * reading the answer at once saves the event-loop turn that would otherwise find it (~10 us per hop idle).
   */
  pollNow(): void {
    if (this.readable && this.watcher?.running) this.readable();
  }

  /** The send path returned slots. */
  slotsFreed(): void {
    this.free.wake();
    if (!this.stalled || this.free.size === 0) return;
    this.stalled = false;
    if (!this.threadReads) this.watcher?.start();
  }

  close(): void {
    this.closed = true;
    this.watcher?.close();
    Atomics.store(this.owner, 1, 1); // stop
    Atomics.notify(this.owner, 0);
    void this.reader?.terminate();
  }

  private measure(reads: number): void {
    const now = performance.now();
    const ms = now - this.windowStart;
    if (ms < WINDOW_MS) return;
    const rate = ((reads - this.windowReads) * 1000) / ms;
    this.windowStart = now;
    this.windowReads = reads;
    if (rate > PRESTART_RATE && !this.reader) this.startReader();
    if (rate > HANDOVER_RATE && Atomics.load(this.owner, 2) === 1) this.handOver(rate);
  }

  private handOver(rate: number): void {
    this.watcher?.stop();
    this.handovers++;
    // Logged at most every few seconds: a load near the threshold may move the TUN to and fro.
    const now = performance.now();
    const log = now - this.lastLog > LOG_EVERY_MS;
    if (log) {
      this.lastLog = now;
      this.hooks.verbose(`TUN reads moved to the reader thread at ${Math.round(rate)} reads/s (hand-over ${this.handovers})`);
    }
    Atomics.store(this.owner, 0, OWNER_THREAD);
    Atomics.notify(this.owner, 0);
    this.hooks.kick(); // the send path parks on the ready queue once it has drained it
    const r = Atomics.waitAsync(this.owner, 0, OWNER_THREAD);
    const back = (): void => {
      if (this.closed) return;
      if (log) this.hooks.verbose('TUN reads are back on the control thread');
      this.windowStart = performance.now();
      if (!this.stalled) this.watcher?.start();
      this.hooks.kick();
    };
    if (r.async) void r.value.then(back);
    else back();
  }

  private fail(errno: number): void {
    this.watcher?.stop();
    this.hooks.failed(errno === -E.EBADFD ? 'interface deleted' : `TUN read failed: errno ${-errno}`);
  }

  private startReader(): void {
    const data: TunReaderData = {
      fd: this.tun.fd,
      vnetHdr: this.tun.vnetHdr,
      arena: this.arena.shape,
      ready: this.ready.sab,
      free: this.free.sab,
      owner: this.owner.buffer as SharedArrayBuffer,
      shared: this.io === 'loop',
    };
    this.reader = new Worker(new URL('./reader.js', import.meta.url), { workerData: data });
    this.reader.unref();
    this.reader.on('message', (m: TunReaderMessage) => {
      if (m.kind === 'error') this.fail(m.errno);
    });
    this.reader.on('error', (e) => {
      this.hooks.error(`TUN reader thread failed: ${e.message}`);
      this.hooks.failed('TUN reader failed');
    });
  }
}
