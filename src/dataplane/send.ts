// The send path on the control thread (the kernel's wg_xmit + tx serial worker): takes packets the TUN reader
// left in slots, routes them by allowed IPs, assigns nonces in order per peer, hands whole batches to the
// crypto pool, and releases each peer's sealed packets in nonce order to the UDP bind.

import type { Device } from '../device.js';
import type { Reason } from '../errors.js';
import type { Keypair } from './keypair.js';
import type { Endpoint, Peer } from '../peer.js';
import { Data } from '../handshake/messages.js';
import { META_KEY, META_LEN, META_RESULT, type SlotArena } from '../queues/slots.js';
import type { SpscQueue } from '../queues/spsc.js';
import { BatchBoard, PeerQueues } from '../queues/serial.js';
import type { CryptPool } from '../workers/pool.js';
import { CryptJob, Spares } from '../workers/batch.js';
import { copyOf, writeDataHeader } from './transport.js';
import { hostUnreachable } from './icmp.js';
import { ipPacketLength } from './ippacket.js';

/** Packets per crypto task: large enough to amortise a ~12 us hand-off, small enough to keep latency low. */
export const BATCH = 64;

/** Where sealed datagrams go: the UDP bind's batched send, behind the routing-loop check. */
export interface Transmitter {
  /** False when datagrams to `to` must not leave (their route loops through our own TUN). */
  usable(to: Endpoint): boolean;
  /** Queues `len` bytes at `off` in `buf` (slot memory, left untouched until flush()). */
  queue(buf: Uint8Array, off: number, len: number, to: Endpoint): void;
  flush(): void;
}

/** A seal batch; each peer's value is the keypair its packets were sealed under. */
type SealJob = CryptJob<Peer, Keypair>;

export class SendPath {
  private readonly board = new BatchBoard();
  private readonly queues = new PeerQueues<Peer>();
  private scheduled = false;
  private parked = false;
  private stopped = false;
  private readonly sentSlots: Int32Array;
  private readonly jobs = new Spares((): SealJob => new CryptJob('seal', BATCH, this.finished));
  private sentCount = 0;

  constructor(
    private readonly device: Device,
    private readonly arena: SlotArena,
    /** Slots the TUN reader filled. */
    private readonly ready: SpscQueue,
    /** Slots going back to the TUN reader. */
    private readonly free: SpscQueue,
    private readonly pool: CryptPool,
    private readonly out: Transmitter,
    private readonly writeTun: (pkt: Uint8Array) => void,
    private readonly log: (msg: string) => void,
    /**
     * Who fills the ready queue (tunfeed.ts), told when slots come back. While the control thread reads the
     * TUN itself it calls kick() after each read; while a reader thread does, this path sleeps on the ready
     * queue between bursts. Unset: always a reader thread.
     */
    private readonly feed: { slotsFreed(): void; readonly threadReads: boolean } | null = null,
  ) {
    this.sentSlots = new Int32Array(arena.count); // a drain may release earlier batches' packets too
  }

  start(): void {
    this.schedule();
  }

  /**
   * The control thread just read packets into the ready queue itself: seal and send them now, in the same
   * callback, rather than one event-loop phase later (on an idle VM every phase touched costs latency).
   */
  kick(): void {
    if (this.stopped) return;
    this.turn();
    this.next();
  }

  stop(): void {
    this.stopped = true;
  }

  private schedule = (): void => this.scheduleIf(true);

  private scheduleIf(more: boolean): void {
    if (!more || this.scheduled || this.stopped) return;
    this.scheduled = true;
    setImmediate(this.pump);
  }

  /** One event-loop turn of work, then yield: the UAPI, timers and the receive path share this thread. */
  private pump = (): void => {
    this.scheduled = false;
    this.turn();
    this.next();
  };

  /** More to take: another turn. Nothing, while a reader thread fills the queue: sleep on it. */
  private next(): void {
    const more = this.ready.size > 0;
    // Called every time rather than under `if (more)`: a TCP stream read by this thread may leave nothing queued
    // until it ends, and a call that never ran deoptimised kick() there, on a lone packet's path (traced).
    this.scheduleIf(more);
    if (!more && !this.parked && !this.stopped && (!this.feed || this.feed.threadReads)) {
      this.parked = true;
      void this.ready.waitAsync().then(() => {
        this.parked = false;
        this.schedule();
      });
    }
  }

  private turn(): void {
    for (let i = 0; i < 8 && this.ready.size > 0; i++) this.collect();
    this.wakeFree(); // packets staged, unroutable or refused gave their slots back already
  }

  /** Takes up to BATCH packets off the ready queue and sends them to the crypto pool as one task. */
  private collect(): void {
    const { device, arena } = this;
    const job = this.jobs.take();
    const seq = this.board.open();
    const slots = job.slots;
    let count = 0;
    let lastPeer: Peer | undefined;
    let lastKp: Keypair | null = null;
    while (count < BATCH) {
      const s = this.ready.pop();
      if (s < 0) break;
      const buf = arena.slot(s).bytes;
      const len = arena.get(s, META_LEN);
      if (ipPacketLength(buf, Data.payload, len) < 0) {
        this.release(s, 'bad-packet');
        continue;
      }
      const peer = device.route(buf, Data.payload);
      if (!peer) {
        const icmp = hostUnreachable(buf, Data.payload, len);
        if (icmp) this.writeTun(icmp);
        this.release(s, 'no-route');
        continue;
      }
      const kp: Keypair | null = peer === lastPeer ? lastKp : device.sendingKeypair(peer);
      if (!kp || kp.keySlot < 0 || !kp.takeNonce(buf, Data.counter)) {
        // No usable key here: the control thread stages it and runs the handshake (or seals it itself).
        device.stage(peer, copyOf(buf, Data.payload, len)); // the slot is freed below
        this.release(s, null);
        device.sendStaged(peer);
        lastPeer = undefined;
        continue;
      }
      if (peer !== lastPeer) {
        lastPeer = peer;
        lastKp = kp;
        job.addPeer(peer, kp);
      }
      writeDataHeader(buf, kp.remoteIndex);
      arena.set(s, META_KEY, kp.keySlot);
      if (!this.queues.get(peer).push(seq, s)) {
        this.release(s, 'queue-full');
        continue;
      }
      slots[count++] = s;
    }
    if (count === 0) {
      job.clear();
      this.jobs.give(job);
      this.board.finish(seq);
      return;
    }
    job.count = count;
    job.mtu = device.mtu;
    job.seq = seq;
    this.pool.run(job, job.done);
  }

  private finished = (job: SealJob, err?: unknown): void => {
    if (err) this.fail(job, err);
    else this.complete(job);
    job.clear();
    this.jobs.give(job);
  };

  private complete(job: SealJob): void {
    this.board.finish(job.seq);
    const { arena, out, sentSlots } = this;
    for (let p = 0; p < job.npeers; p++) {
      const peer = job.peers[p];
      let bytes = 0;
      let n = 0;
      const ep = peer.endpoint;
      const usable = ep !== null && out.usable(ep);
      const from = this.sentCount;
      this.sentCount += this.queues.get(peer).drainInto(this.board, sentSlots, from);
      for (let i = from; i < this.sentCount; i++) {
        const s = sentSlots[i];
        const len = arena.get(s, META_RESULT);
        if (usable && len > 0) {
          out.queue(arena.bytes, arena.offset(s), len, ep);
          bytes += len;
          n++;
        } else if (len > 0 && ep) this.device.drop('routing-loop');
      }
      if (n) this.device.sent(peer, job.values[p], bytes, n);
    }
    // The queued datagrams point into the slots: they go back to the TUN reader only once sent.
    out.flush();
    for (let i = 0; i < this.sentCount; i++) this.free.push(sentSlots[i]);
    this.sentCount = 0;
    this.wakeFree();
  }

  private wakeFree(): void {
    if (this.feed) this.feed.slotsFreed();
    else this.free.wake();
  }

  /** A crashed worker loses its batch: count the drops and keep the slots flowing. */
  private fail(job: SealJob, e: unknown): void {
    this.log(`crypto worker failed a seal batch: ${e instanceof Error ? e.message : String(e)}`);
    this.board.finish(job.seq);
    for (let p = 0; p < job.npeers; p++) this.queues.get(job.peers[p]).drain(this.board, (s) => this.release(s, 'internal'));
    this.wakeFree();
  }

  /** Returns a slot to the TUN reader, counting why the packet did not go out (null: it did, or was staged). */
  private release(s: number, reason: Reason | null): void {
    if (reason) this.device.drop(reason);
    this.free.push(s);
  }
}
