// The receive path on the control thread (the kernel's wg_packet_receive + rx serial worker): handshake
// messages go to the handshake queue and the Device; data messages are copied into slots, opened by the
// crypto pool in batches, and each peer's packets pass the replay window, roaming, confirmation and the
// allowed-IPs source check in arrival order before the TUN write.

import { MAX_QUEUED_INCOMING_HANDSHAKES, MESSAGE_DATA, DATA_MIN_SIZE } from '../constants.js';
import type { DataTarget, Device } from '../device.js';
import type { Endpoint, Peer } from '../peer.js';
import { Data, readU32 } from '../handshake/messages.js';
import { META_KEY, META_LEN, META_RESULT, type SlotArena } from '../queues/slots.js';
import { BatchBoard, PeerQueues } from '../queues/serial.js';
import type { CryptPool } from '../workers/pool.js';
import { CryptJob, Spares } from '../workers/batch.js';
import { BATCH } from './send.js';
import { copyOf } from './transport.js';

/**
 * Handshake messages get at most this much of each event-loop turn. Their real backlog sits in the socket
 * buffer, of which libuv reads only 32 datagrams per socket per turn: draining everything every turn kept
 * the queue far below UNDER_LOAD_QUEUE_LEN, so a flood never turned on cookies and cost a DH per message
 * (issue 5 item 3). With a budget the queue grows whenever handshakes arrive faster than they are handled,
 * as the kernel's handshake queue does, and "under load" follows from its length.
 */
const HANDSHAKE_BUDGET_MS = 1;
/** Datagrams up to this size are copied into their slot word by word (measured: ~57 ns for 96 bytes). */
const SMALL_COPY = 256;

/** An open batch: the peers whose queues its completion drains. */
type OpenJob = CryptJob<Peer, undefined>;

export class ReceivePath {
  private readonly board = new BatchBoard();
  private readonly queues = new PeerQueues<Peer>();
  private readonly freeSlots: number[] = [];
  private readonly targets: (DataTarget | undefined)[] = [];
  private readonly sources: (Endpoint | undefined)[] = [];
  private readonly jobs = new Spares((): OpenJob => new CryptJob('open', BATCH, this.finished));
  /** The batch being filled: data packets of the current burst, dispatched at its end or when full. */
  private pending: OpenJob | null = null;
  /** Slots a completion drained from the peers' queues (at most every slot there is). */
  private readonly drained: Int32Array;
  /** copyIn's views: the arena's, and the bind's receive buffer's (the bind reuses one buffer). */
  private readonly arenaView: DataView;
  private copyFrom: Uint8Array | null = null;
  private copyFromView: DataView | null = null;
  private readonly handshakes: { msg: Uint8Array; from: Endpoint }[] = [];
  private flushScheduled = false;

  constructor(
    private readonly device: Device,
    private readonly arena: SlotArena,
    private readonly pool: CryptPool,
    /**
     * Packets of one batch are written together (coalesced in offload mode), then flushed; the slots they lie
     * in are released before the flush, but nothing reuses them until this batch's complete() has returned.
     */
    private readonly tun: { write(buf: Uint8Array, off: number, len: number): void; flush(): void },
    private readonly log: (msg: string) => void,
  ) {
    for (let i = arena.count - 1; i >= 0; i--) this.freeSlots.push(i);
    this.drained = new Int32Array(arena.count);
    this.arenaView = new DataView(arena.bytes.buffer, arena.bytes.byteOffset, arena.bytes.byteLength);
    // Both kinds of copy run once now (slot 0 onto itself), so V8 has seen both when it optimises data(): a
    // sending peer gets only small datagrams (ACKs) until its transfer ends, and its first large one sent data()
    // back to baseline code just as the tunnel went quiet (traced). Needs node's --no-lazy-feedback-allocation
    // (bin/wgts); without it these calls record nothing and cost nothing.
    if (arena.bytes.length > SMALL_COPY) this.copyIn(arena.bytes, 0, SMALL_COPY + 1, 0);
    this.copyIn(arena.bytes, 0, 1, 0);
  }

  /** Every datagram from the UDP bind: `len` bytes at `off` in `buf`, valid during the call. Never throws. */
  onDatagram = (buf: Uint8Array, off: number, len: number, from: Endpoint): void => {
    try {
      if (len >= DATA_MIN_SIZE && readU32(buf, off) === MESSAGE_DATA) this.data(buf, off, len, from);
      else this.handshake(copyOf(buf, off, len), from);
    } catch (e) {
      this.log(`receive path: ${e instanceof Error ? e.stack ?? e.message : String(e)}`);
      this.device.drop('internal');
    }
  };

  /** After each burst from the bind: its data packets are opened now, not one event-loop phase later. */
  onBatchEnd = (): void => {
    try {
      this.dispatch(true);
    } catch (e) {
      this.log(`receive path: ${e instanceof Error ? e.stack ?? e.message : String(e)}`);
      this.device.drop('internal');
    }
  };

  /** Handshake messages wait in a bounded queue; its length is what decides "under load" (cookies). */
  private handshake(msg: Uint8Array, from: Endpoint): void {
    if (this.handshakes.length >= MAX_QUEUED_INCOMING_HANDSHAKES) {
      this.device.drop('queue-full');
      return;
    }
    this.handshakes.push({ msg, from });
    this.scheduleFlush();
  }

  private data(buf: Uint8Array, off: number, len: number, from: Endpoint): void {
    if (len > this.arena.slotSize) {
      this.oversized(copyOf(buf, off, len), from);
      return;
    }
    const s = this.freeSlots.pop();
    if (s === undefined) {
      this.device.drop('queue-full'); // every slot in flight: drop, as a full ptr_ring does
      return;
    }
    // Copied into its slot first: the slot is what the workers open, and dataTarget reads it in place.
    const bytes = this.arena.bytes;
    const at = this.arena.offset(s);
    this.copyIn(buf, off, len, at);
    const target = this.device.dataTarget(this.arena.slot(s).bytes);
    if (typeof target === 'string') {
      this.release(s);
      this.device.drop(target);
      return;
    }
    const q = this.queues.get(target.peer);
    if (target.keypair.keySlot < 0) {
      // No worker copy of the key (the table is full): open it here, but only when nothing of this peer's
      // is in flight, or it would overtake packets still queued.
      if (q.size === 0) this.device.receive(copyOf(bytes, at, len), from);
      else this.device.drop('queue-full');
      this.release(s);
      return;
    }
    this.arena.set(s, META_LEN, len);
    this.arena.set(s, META_KEY, target.keypair.keySlot);
    this.targets[s] = target;
    this.sources[s] = from;
    if (!q.push(this.board.peek(), s)) {
      this.release(s);
      this.device.drop('queue-full');
      return;
    }
    const job = (this.pending ??= this.jobs.take());
    job.addPeer(target.peer, undefined);
    job.slots[job.count++] = s;
    // The rest of a partial batch goes at the end of the burst (onBatchEnd), which every bind signals.
    // Called every time rather than under `if`: a call that never ran deoptimised data() when a batch first
    // filled, late in a transfer (traced).
    this.dispatch(job.count === BATCH);
  }

  /**
   * Copies a datagram into the arena at `at`. A small one (a ping, a keepalive, a TCP ACK) goes word by word
   * through DataViews kept across calls: the subarray that TypedArray.set needs is garbage on every datagram,
   * and copying two buffers word by word costs no more than that for packets this small. Larger ones amortise
   * their subarray.
   */
  private copyIn(buf: Uint8Array, off: number, len: number, at: number): void {
    if (len > SMALL_COPY) {
      this.arena.bytes.set(buf.subarray(off, off + len), at);
      return;
    }
    if (buf !== this.copyFrom) {
      this.copyFrom = buf;
      this.copyFromView = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    }
    const src = this.copyFromView!;
    const dst = this.arenaView; // over arena.bytes: `at` is an offset in it
    let i = 0;
    for (; i + 4 <= len; i += 4) dst.setUint32(at + i, src.getUint32(off + i));
    for (; i < len; i++) dst.setUint8(at + i, src.getUint8(off + i));
  }

  /** A datagram too large for a slot: the Device opens it itself, if nothing of its peer's is in flight. */
  private oversized(msg: Uint8Array, from: Endpoint): void {
    const target = this.device.dataTarget(msg);
    if (typeof target === 'string') this.device.drop(target);
    else if (this.queues.get(target.peer).size === 0) this.device.receive(msg, from);
    else this.device.drop('queue-full');
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    // setImmediate runs after the poll phase: every datagram libuv read in this turn joins one batch.
    setImmediate(this.flush);
  }

  private flush = (): void => {
    this.flushScheduled = false;
    this.dispatch(true);
    const hs = this.handshakes;
    const stop = performance.now() + HANDSHAKE_BUDGET_MS;
    while (hs.length) {
      const { msg, from } = hs.shift()!;
      this.device.receive(msg, from, hs.length);
      // Under load each one is cheap (a cookie reply, or a DH for at most 20/s per source): drain them all,
      // or a full queue would starve whichever socket libuv reads second.
      if (!this.device.underLoad(hs.length) && performance.now() >= stop) break;
    }
    if (hs.length) this.scheduleFlush(); // the rest waits for the next turn, and counts as backlog there
  };

  /** Sends the pending batch, if any, to the pool when `now`. */
  private dispatch(now: boolean): void {
    const job = now ? this.pending : null;
    if (job === null) return;
    this.pending = null;
    job.seq = this.board.open();
    job.mtu = this.device.mtu;
    this.pool.run(job, job.done);
  }

  private finished = (job: OpenJob, err?: unknown): void => {
    if (err) {
      this.log(`crypto worker failed an open batch: ${err instanceof Error ? err.message : String(err)}`);
      for (let i = 0; i < job.count; i++) this.arena.set(job.slots[i], META_RESULT, -1);
    }
    this.complete(job);
    job.clear();
    this.jobs.give(job);
  };

  private complete(job: OpenJob): void {
    this.board.finish(job.seq);
    const { arena, drained } = this;
    let n = 0;
    for (let p = 0; p < job.npeers; p++) n += this.queues.get(job.peers[p]).drainInto(this.board, drained, n);
    for (let i = 0; i < n; i++) {
      const s = drained[i];
      const plain = arena.get(s, META_RESULT);
      const target = this.targets[s]!;
      const from = this.sources[s]!;
      this.targets[s] = undefined;
      this.sources[s] = undefined;
      if (plain < 0) {
        this.device.drop('decrypt-failed');
      } else {
        const len = this.device.received(target, from, arena.slot(s).bytes, arena.get(s, META_LEN), plain);
        // Written from the arena itself: the TUN writer sends arena packets in place (writer.ts).
        if (typeof len === 'number' && len > 0) this.tun.write(arena.bytes, arena.offset(s) + Data.payload, len);
      }
      this.release(s);
    }
    this.tun.flush();
  }

  private release(s: number): void {
    this.freeSlots.push(s);
  }
}
