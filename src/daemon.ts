// One running interface (the kernel's wg_device with its sockets, queues and workers): the TUN, the UDP bind,
// the protocol Device, the UAPI, and the data plane of the design card. TUN reader thread -> SharedArrayBuffer
// slots -> Piscina crypto workers -> per-peer serial queues -> UDP send, and back the other way to the TUN.

import { Device, type KeypairHooks } from './device.js';
import { Errno, WgError } from './errors.js';
import { Logger } from './log.js';
import { systemClock } from './clock.js';
import { defaultSuite } from './crypto/index.js';
import { warmUpInBackground } from './warmup.js';
import { warmDataPath } from './warmpath.js';
import { SlotArena } from './queues/slots.js';
import { SpscQueue } from './queues/spsc.js';
import { MAX_QUEUED_PACKETS } from './constants.js';
import { ReceivePath } from './dataplane/receive.js';
import { SendPath } from './dataplane/send.js';
import { CryptPool, type CryptPolicy } from './workers/pool.js';
import { KeyTable } from './workers/keytable.js';
import { openBindSync, type Bind, type IoMode } from './tun/bind.js';
import { TunFeed } from './tun/tunfeed.js';
import { watchLink, type LinkEvent, type TunDevice } from './tun/tun.js';
import { NetWatch } from './tun/netwatch.js';
import { LoopGuard } from './tun/route.js';
import { TunWriter } from './tun/writer.js';
import { QuietYield } from './tun/cpuyield.js';
import { schedYield } from './tun/sys.js';
import type { Endpoint } from './peer.js';
import { listenUapi, serveUapi, type UapiServer } from './uapi/server.js';
import type { UapiHost } from './uapi/uapi.js';

/**
 * Ping round trips of the data-path warm-up (warmpath.ts); each runs the shared code on both its daemons. In
 * fresh tunnels pinged once it had ended, 200-500 halved the first 50 pings' RTT (README, "Performance").
 */
const WARM_ROUND_TRIPS = 500;

/** Slot size: the largest packet plus header, tag and padding (MTUs up to 4032 fit). */
const SLOT_SIZE = 4096;

export interface DaemonOptions {
  tun: TunDevice;
  log: Logger;
  /** Adopt this listening UAPI socket (WG_UAPI_FD) instead of binding the path. */
  uapiFd?: number;
  /** Crypto worker threads (default: one per core). */
  cryptoThreads?: number;
  /** When batches go to the crypto workers (WGTS_CRYPTO_POLICY): adaptive (default), pool or inline. */
  cryptoPolicy?: CryptPolicy;
  /** Test-only: multiplies every protocol time constant (WGTS_TIMER_SCALE). */
  timerScale?: number;
  /** UDP GSO/GRO when the kernel has them (default true; WGTS_UDP_OFFLOAD=0 turns them off). */
  udpOffload?: boolean;
  /** Who reads the TUN and the sockets (WGTS_IO): the control thread ('loop', default) or reader threads. */
  io?: IoMode;
  /** Round trips of the data-path warm-up at start (WGTS_WARM_ROUND_TRIPS; 0: none). Default WARM_ROUND_TRIPS. */
  warmRoundTrips?: number;
  /** The MTU, for a TUN that has no link to ask (the warm-up's socket stand-ins, warmpath.ts). */
  mtu?: number;
}

export class Daemon implements UapiHost {
  readonly device: Device;
  private bind!: Bind;
  private uapi!: UapiServer;
  private readonly keys = KeyTable.create(4 * 1024);
  private readonly outbound = SlotArena.create(MAX_QUEUED_PACKETS, SLOT_SIZE);
  private readonly inbound = SlotArena.create(MAX_QUEUED_PACKETS, SLOT_SIZE);
  private readonly ready = new SpscQueue(MAX_QUEUED_PACKETS);
  private readonly free = new SpscQueue(MAX_QUEUED_PACKETS);
  private readonly pool: CryptPool;
  private readonly send: SendPath;
  private readonly receive: ReceivePath;
  private readonly io: IoMode;
  private readonly feed: TunFeed;
  /** One real timer, at the earliest armed peer deadline (none when nothing is armed: an idle daemon sleeps). */
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;
  private timerStopped = false;
  private unwatch: (() => void) | undefined;
  /** rtnetlink change notifications of the daemon's namespace (null: unavailable, and the watchers poll). */
  private net: NetWatch | null = null;
  private unfollow: (() => void) | undefined;
  private mark = 0;
  private readonly udpOffload: boolean;
  private readonly writer: TunWriter;
  private readonly loopGuard = new LoopGuard(() => this.tun.name, () => this.mark);
  private lastLoopLog = -Infinity;
  private stopping: Promise<void> | undefined;
  private readonly exitCbs: ((why: string) => void)[] = [];

  private constructor(
    readonly tun: TunDevice,
    private readonly log: Logger,
    opts: DaemonOptions,
  ) {
    this.udpOffload = opts.udpOffload ?? true;
    this.io = opts.io ?? 'loop';
    this.writer = new TunWriter(
      tun,
      (errno) => {
        if (errno !== Errno.EIO) log.verbose(`TUN write failed: errno ${errno}`);
      },
      this.inbound.bytes,
    );
    const keys = this.keys;
    const hooks: KeypairHooks = {
      installed: (kp) => {
        kp.keySlot = keys.put(kp.sendKey, kp.receiveKey);
      },
      dropped: (kp) => {
        keys.release(kp.keySlot);
        kp.keySlot = -1;
      },
    };
    this.device = new Device({
      io: {
        send: (data, to) => this.transmit(data, to),
        deliver: (pkt) => this.writeTun(pkt, 0, pkt.length),
      },
      mtu: opts.mtu ?? safeMtu(tun),
      timerScale: opts.timerScale,
      log: log.at,
      keypairHooks: hooks,
    });
    this.pool = new CryptPool(this.outbound, this.inbound, keys, opts.cryptoThreads, opts.cryptoPolicy, log.at);
    this.feed = new TunFeed(tun, this.io, this.outbound, this.ready, this.free, {
      kick: () => this.send.kick(),
      failed: (why) => void this.stop(why),
      error: (msg) => log.error(msg),
      verbose: (msg) => log.verbose(msg),
    });
    // Datagrams queued since the last flush: a lone one on a quiet tunnel yields the CPU once sent (cpuyield.ts).
    let queued = 0;
    const quiet = new QuietYield(systemClock, schedYield);
    const out = {
      usable: (to: Endpoint) => !this.loops(to),
      queue: (buf: Uint8Array, off: number, len: number, to: Endpoint) => {
        queued++;
        this.bind.queue(buf, off, len, to);
      },
      flush: () => {
        const n = queued;
        queued = 0;
        this.bind.flush();
        quiet.sent(n);
      },
    };
    this.send = new SendPath(this.device, this.outbound, this.ready, this.free, this.pool, out,
      (pkt) => this.writeTun(pkt, 0, pkt.length), log.error, this.io === 'loop' ? this.feed : null);
    // After the opened packets are written, whatever the stack answered at once goes out in the same turn.
    // Only here, at the end of a receive batch: writeTun() below also serves the send path (ICMP unreachable
    // from inside collect()), where reading the TUN would re-enter the send path mid-batch.
    const tunOut = {
      write: (buf: Uint8Array, off: number, len: number) => this.writer.write(buf, off, len),
      flush: () => {
        this.writer.flush();
        this.feed.pollNow();
      },
    };
    this.receive = new ReceivePath(this.device, this.inbound, this.pool, tunOut, log.error);
  }

  static async start(opts: DaemonOptions): Promise<Daemon> {
    const d = new Daemon(opts.tun, opts.log, opts);
    d.begin(false);
    d.uapi = await listenUapi(opts.tun.name, serveUapi(d, opts.log.at), opts.uapiFd !== undefined ? { fd: opts.uapiFd } : {});
    d.uapi.onDeleted(() => void d.stop('UAPI socket deleted'));
    d.net = NetWatch.open();
    if (d.net) d.unfollow = d.loopGuard.follow(d.net);
    else opts.log.verbose('No rtnetlink notifications here: polling the link and re-checking routes every second');
    d.unwatch = watchLink(opts.tun, (ev) => d.onLink(ev), { changes: d.net });
    // After start-up, not in it: a tunnel's first handshake then finds the protocol core run once (warmup.ts).
    // Then the data path, through two detached daemons of this process (warmpath.ts; loop mode only: in
    // threads mode each would start its reader threads).
    const cancelled = (): boolean => d.stopping !== undefined;
    const warmRoundTrips = opts.warmRoundTrips ?? WARM_ROUND_TRIPS;
    const began = performance.now();
    void warmUpInBackground(defaultSuite(), systemClock, cancelled)
      .then(() =>
        d.io === 'loop' && warmRoundTrips > 0 && !cancelled()
          ? warmDataPath({
              open: (tun, mtu) => Daemon.detached({ tun, mtu, log: new Logger(tun.name, 'silent'), io: d.io, udpOffload: d.udpOffload }),
              vnetHdr: opts.tun.vnetHdr,
              uso: opts.tun.uso ?? false,
              roundTrips: warmRoundTrips,
              cancelled,
            })
          : null,
      )
      .then((n) => opts.log.verbose(`Warm-up done in ${Math.round(performance.now() - began)} ms: ${n ?? 0} data-path round trips`));
    opts.log.verbose('UAPI listener started');
    opts.log.verbose(`Interface ${opts.tun.name} ready: ${d.pool.size} crypto workers (policy ${d.pool.policy}${d.pool.policy === 'adaptive' ? ', started on load' : ''}), UDP port ${d.bind.port}, UDP GSO ${onOff(d.bind.gso)}, GRO ${onOff(d.bind.gro)}, TUN offload ${opts.tun.vnetHdr ? (opts.tun.uso ? 'TSO+USO' : 'TSO') : 'off'}, TUN and UDP read by ${d.io === 'loop' ? 'the control thread' : 'reader threads'}`);
    return d;
  }

  /**
   * A daemon with only a data path: no UAPI socket, link watch, route notifications or warm-up of its own,
   * its UDP sockets on loopback. The data-path warm-up runs two of these against each other (warmpath.ts).
   */
  static detached(opts: DaemonOptions): Daemon {
    const d = new Daemon(opts.tun, opts.log, opts);
    try {
      d.begin(true);
    } catch (e) {
      void d.stop('failed to start');
      throw e;
    }
    return d;
  }

  // ---- timers ---------------------------------------------------------------------------------------------

  /**
   * A peer armed a timer: the real timer moves earlier if it must. Polling every few ms instead cost an idle
   * daemon ~1.5% of a core and 100 wake-ups a second; wireguard-go, like the kernel, sleeps until a deadline.
   */
  private readonly armTimer = (deadline: number): void => {
    if (deadline >= this.timerAt || this.timerStopped) return;
    this.timerAt = deadline;
    if (this.timer) clearTimeout(this.timer);
    // Deadlines are on systemClock, the device's clock here. libuv counts whole milliseconds, so this may fire
    // a little early: tick() then finds nothing due, and the timer is armed again for the rest.
    this.timer = setTimeout(this.fireTimers, Math.max(1, Math.ceil(deadline - systemClock.now())));
  };

  private readonly fireTimers = (): void => {
    this.timer = undefined;
    this.timerAt = Infinity;
    this.device.tick(); // actions that arm timers come back through armTimer()
    const next = this.device.nextDeadline();
    if (next !== undefined) this.armTimer(next);
  };

  // ---- UapiHost -------------------------------------------------------------------------------------------

  get listenPort(): number {
    return this.bind.port;
  }

  setListenPort(port: number): number {
    if (port === this.bind.port) return 0;
    let next: Bind;
    try {
      next = openBindSync(port, { mark: this.mark, offload: this.udpOffload, io: this.io });
    } catch (e) {
      this.log.error(`Failed to bind UDP port ${port}: ${(e as Error).message}`);
      return e instanceof WgError ? e.errno : Errno.EADDRINUSE;
    }
    const old = this.bind;
    this.bind = next;
    next.onReceive(this.receive.onDatagram, this.receive.onBatchEnd);
    next.setSourceCheck?.(this.sourceOk);
    void old.close();
    this.log.verbose(`UDP bind has been updated (port ${next.port}, UDP GSO ${onOff(next.gso)}, GRO ${onOff(next.gro)})`);
    return 0;
  }

  get fwmark(): number {
    return this.mark;
  }

  setFwmark(mark: number): number {
    const err = this.bind.setMark(mark);
    if (err === 0 && mark !== this.mark) {
      this.mark = mark;
      this.loopGuard.forget(); // routes are looked up with the mark, and policy rules may select on it
    }
    return err;
  }

  // ---- lifecycle ------------------------------------------------------------------------------------------

  onExit(cb: (why: string) => void): void {
    this.exitCbs.push(cb);
  }

  stop(why: string): Promise<void> {
    this.stopping ??= (async () => {
      this.log.verbose(`Shutting down: ${why} (crypto batches: ${this.pool.stats.inline} inline, ${this.pool.stats.pooled} in workers)`);
      this.timerStopped = true;
      if (this.timer) clearTimeout(this.timer);
      this.unwatch?.();
      this.unfollow?.();
      this.net?.close();
      this.send.stop();
      await this.uapi?.close();
      await this.bind?.close();
      // Closing the TUN deletes the link, which wakes a reader thread out of its blocking read(2)
      // (terminate() alone cannot interrupt a syscall).
      this.feed.close();
      this.tun.close();
      await this.pool.close();
      for (const peer of this.device.allPeers()) this.device.removePeer(peer);
      this.device.setPrivateKey(null);
      for (const cb of this.exitCbs) cb(why);
    })();
    return this.stopping;
  }

  /** The UDP sockets (on loopback for a detached daemon), the TUN reader, the send path and the timers. */
  private begin(loopback: boolean): void {
    this.bind = openBindSync(0, { offload: this.udpOffload, io: this.io, loopback });
    this.bind.setSourceCheck?.(this.sourceOk);
    this.bind.onReceive(this.receive.onDatagram, this.receive.onBatchEnd);
    for (let i = 0; i < this.outbound.count; i++) this.free.push(i);
    this.feed.start();
    this.send.start();
    this.device.onTimerArmed(this.armTimer);
  }

  private onLink(ev: LinkEvent): void {
    switch (ev.kind) {
      case 'deleted':
        void this.stop('interface deleted');
        break;
      case 'mtu':
        this.log.verbose(`MTU updated: ${ev.mtu}`);
        this.device.mtu = ev.mtu;
        break;
      case 'up':
        this.log.verbose('Interface state was Down, requested Up, now Up');
        this.device.up();
        break;
      case 'down':
        this.log.verbose('Interface state was Up, requested Down, now Down');
        this.device.down();
        break;
    }
  }

  /**
   * Every datagram leaves here. An endpoint whose route goes out through our own TUN (learned, say, from a
   * packet that came through the tunnel itself) would loop our traffic into ourselves: refuse, as the kernel
   * does, until authenticated traffic from a real address moves the endpoint again.
   */
  private transmit(data: Uint8Array, to: Endpoint): void {
    if (this.loops(to)) this.device.drop('routing-loop');
    else this.bind.send(data, to);
  }

  /**
   * A sticky source address is kept only while the route to the peer still leaves through the interface
   * its datagrams came in on; a better route elsewhere resets it, as the kernel module does.
   */
  private readonly sourceOk = (to: Endpoint): boolean => to.srcIf === undefined || this.loopGuard.outInterface(to) === to.srcIf;

  private loops(to: Endpoint): boolean {
    if (!this.loopGuard.loops(to)) return false;
    const now = performance.now();
    if (now - this.lastLoopLog > 1_000) {
      this.lastLoopLog = now;
      this.log.verbose('Avoiding routing loop: the route to a peer endpoint goes through this interface');
    }
    return true;
  }

  /** A packet from outside a receive batch (ICMP errors, packets the Device opened itself): written at once. */
  private writeTun(buf: Uint8Array, off: number, len: number): void {
    this.writer.write(buf, off, len);
    this.writer.flush();
  }
}

function safeMtu(tun: TunDevice): number {
  try {
    return tun.mtu();
  } catch (e) {
    throw new WgError('tun-mtu', `cannot read the MTU of ${tun.name}: ${(e as Error).message}`, Errno.ENODEV);
  }
}

const onOff = (b: boolean | undefined): string => (b ? 'on' : 'off');
