// Per-peer WireGuard timers as a pure state machine (whitepaper §6.5 / protocol.md "Limits and timers"; the
// rules of the kernel's timers.c and send.c/receive.c keep_key_fresh, and wireguard-go device/timers.go).
// The endpoint reports events, arms one real timer at nextDeadline() and performs whatever poll() returns:
// nothing here sleeps, sends or reads time except through the injected Clock.

import type { Clock, RandomSource } from '../clock.js';
import {
  KEEPALIVE_TIMEOUT,
  KEY_ERASE_AFTER,
  MAX_TIMER_HANDSHAKES,
  REKEY_AFTER_MESSAGES,
  REKEY_AFTER_TIME,
  REKEY_ON_RECEIVE_AGE,
  REKEY_TIMEOUT,
  REKEY_TIMEOUT_JITTER_MAX,
} from '../constants.js';
import { Errno, WgError } from '../errors.js';

/** What the caller must do when a timer fires. */
export type TimerAction =
  /** Clear the endpoint's cached source address, then `requestInitiation(true)` and send if allowed. */
  | { kind: 'retransmit-initiation' }
  /** Retries exhausted: drop every staged packet and stop trying until new traffic asks for a handshake. */
  | { kind: 'give-up' }
  /** Send a keepalive (an empty data packet, or flush staged packets if any are waiting). */
  | { kind: 'send-keepalive'; reason: 'passive' | 'persistent' }
  /** We sent data but heard nothing back: clear the cached source address, then `requestInitiation(false)`. */
  | { kind: 'new-handshake' }
  /** No new session for 3 x REJECT_AFTER_TIME: erase every keypair and any half-done handshake state. */
  | { kind: 'zero-keys' };

/** The five per-peer timers, named as in the kernel. */
export type TimerName =
  | 'retransmitHandshake'
  | 'sendKeepalive'
  | 'newHandshake'
  | 'zeroKeyMaterial'
  | 'persistentKeepalive';

// Tie-break order for timers sharing a deadline; any fixed order is fine, this one is the kernel's listing.
const TIMER_NAMES: readonly TimerName[] = [
  'retransmitHandshake',
  'sendKeepalive',
  'newHandshake',
  'zeroKeyMaterial',
  'persistentKeepalive',
];
/** Each timer's place in TIMER_NAMES, which is its slot in PeerTimers.deadlines. */
const TIMER_INDEX = Object.fromEntries(TIMER_NAMES.map((name, i) => [name, i])) as Readonly<Record<TimerName, number>>;

export interface PeerTimersOptions {
  /** Persistent keepalive interval in seconds, 0 (the default) disables it. */
  persistentKeepalive?: number;
  /**
   * Multiplies every protocol time constant this module uses (REKEY_TIMEOUT and its jitter, KEEPALIVE_TIMEOUT,
   * REKEY_AFTER_TIME, REKEY_ON_RECEIVE_AGE, key erasure), default 1. Test-only: it lets rekey, give-up and key
   * erasure happen in seconds. The persistent keepalive interval is user configuration and is never scaled.
   */
  timerScale?: number;
}

/** The facts about the current keypair that the freshness rules need. */
export interface KeypairAge {
  isInitiator: boolean;
  /** Clock time (ms) at which the keypair was created. */
  createdAt: number;
}

export interface SendingKeypair extends KeypairAge {
  /** The next nonce to be used for sending, i.e. how many messages this key has sent. */
  sendCounter: bigint;
  /** The same counter as two u32 halves, where the keypair keeps it so (no BigInt per check). */
  readonly sendHi?: number;
  readonly sendLo?: number;
}

/** REKEY_AFTER_MESSAGES's upper 32 bits (its lower ones are zero). */
const REKEY_AFTER_MESSAGES_HI = Number(REKEY_AFTER_MESSAGES >> 32n);

/**
 * Send-side freshness: after sending data, start a new (non-retry) handshake when the key has sent more than
 * REKEY_AFTER_MESSAGES, or when we initiated it and it is older than REKEY_AFTER_TIME. Only the initiator
 * rekeys by age so that both sides do not race to initiate at the same moment.
 * Strict "older than" follows wireguard-go; the kernel's birthdate check also fires at exactly the limit.
 */
export function shouldRekeyOnSend(kp: SendingKeypair | undefined, now: number, timerScale = 1): boolean {
  if (!kp) return false;
  const hi = kp.sendHi;
  if (hi !== undefined && kp.sendLo !== undefined) {
    if (hi > REKEY_AFTER_MESSAGES_HI || (hi === REKEY_AFTER_MESSAGES_HI && kp.sendLo > 0)) return true;
  } else if (kp.sendCounter > REKEY_AFTER_MESSAGES) return true;
  return kp.isInitiator && now - kp.createdAt > REKEY_AFTER_TIME * timerScale;
}

/**
 * Receive-side "last minute" rule: an initiator receiving on a key older than REKEY_ON_RECEIVE_AGE (165 s)
 * initiates once, so that a peer that only receives still rekeys before the key is rejected at 180 s. The
 * "once" is per peer and reset by a completed handshake; PeerTimers.rekeyOnReceive keeps that flag for you.
 */
export function shouldRekeyOnReceive(
  kp: KeypairAge | undefined,
  now: number,
  alreadySentLastMinute: boolean,
  timerScale = 1,
): boolean {
  if (!kp || alreadySentLastMinute || !kp.isInitiator) return false;
  return now - kp.createdAt > REKEY_ON_RECEIVE_AGE * timerScale;
}

// Largest multiple of the jitter range below 2^32: draws at or above it are rejected so the jitter is uniform.
const JITTER_LIMIT = Math.floor(2 ** 32 / REKEY_TIMEOUT_JITTER_MAX) * REKEY_TIMEOUT_JITTER_MAX;
/** 4-byte jitter draws fetched from the random source per call. */
const JITTER_DRAWS = 64;

/** The per-peer timer state machine. */
export class PeerTimers {
  readonly timerScale: number;
  /**
   * Deadlines by TIMER_INDEX, NaN when not pending. A typed array, because a property that may hold undefined
   * boxes every number stored in it: the timers are re-armed on every packet, and that was garbage each time.
   */
  private readonly deadlines = new Float64Array(TIMER_NAMES.length).fill(NaN);
  private attempts = 0;
  private needAnotherKeepalive = false;
  private sentLastMinute = false;
  private lastSentHandshake: number | undefined;
  private lastHandshake: number | undefined;
  private lastHandshakeWallTime: { sec: bigint; nsec: number } | undefined;
  private keepaliveInterval = 0;
  // Mirrors the kernel's "netif_running && !is_dead" guard: while stopped, events never arm a timer.
  private running = true;
  /**
   * Jitter draws come from a pool refilled JITTER_DRAWS at a time: dataSent() arms a jittered timer after
   * nearly every send of a request-response flow, and one call into the system CSPRNG costs ~15 us on an idle
   * tunnel's cold path (measured per ping hop), a tenth of the whole hop.
   */
  private readonly jitterPool = new Uint8Array(JITTER_DRAWS * 4);
  private jitterAt = JITTER_DRAWS * 4;

  /**
   * Told every deadline armed (clock ms), so the endpoint can keep one real timer at the earliest instead of
   * waking to poll. Cancels are not reported: a real timer that finds nothing due just re-arms.
   */
  onArm: ((deadline: number) => void) | null = null;

  constructor(
    private readonly clock: Clock,
    private readonly random: RandomSource,
    opts: PeerTimersOptions = {},
  ) {
    const scale = opts.timerScale ?? 1;
    if (!Number.isFinite(scale) || scale <= 0) {
      throw new WgError('bad-timer-scale', `timer scale must be a positive number, got ${scale}`, Errno.EINVAL);
    }
    this.timerScale = scale;
    this.setPersistentKeepalive(opts.persistentKeepalive ?? 0);
  }

  // ---- events -------------------------------------------------------------------------------------------

  /**
   * Asks whether a handshake initiation may be sent now. A non-retry request (new traffic, rekey, "stopped
   * hearing back") first resets the attempt counter, even when the rate limit then refuses it: this is why a
   * peer with steady outgoing traffic never gives up. When allowed, the send time is recorded at once, as both
   * implementations do before building the message, so a failed build still counts against the rate limit.
   */
  requestInitiation(isRetry: boolean): boolean {
    if (!isRetry) this.attempts = 0;
    if (!this.initiationAllowed()) return false;
    this.lastSentHandshake = this.clock.now();
    return true;
  }

  /** Call after an initiation went out: starts the REKEY_TIMEOUT + jitter retransmit timer. */
  handshakeInitiated(): void {
    this.lastSentHandshake = this.clock.now();
    this.arm('retransmitHandshake', (REKEY_TIMEOUT + this.jitter()) * this.timerScale);
  }

  /** Call after a handshake response went out; it rate-limits our own initiations just like one. */
  handshakeResponseSent(): void {
    this.lastSentHandshake = this.clock.now();
  }

  /** Call after a response was processed, or on key confirmation by the first data packet (responder). */
  handshakeComplete(): void {
    this.cancel('retransmitHandshake');
    this.attempts = 0;
    this.sentLastMinute = false;
    this.lastHandshake = this.clock.now();
    this.lastHandshakeWallTime = this.clock.wall();
  }

  /** Call whenever a new keypair is derived (before sending a response, or after receiving one). */
  sessionDerived(): void {
    this.arm('zeroKeyMaterial', KEY_ERASE_AFTER * this.timerScale);
  }

  /** Call after an authenticated non-keepalive data packet was sent. */
  dataSent(): void {
    // Not re-armed while pending: the deadline counts from the first unanswered packet, not the last.
    if (this.pending('newHandshake')) return;
    this.arm('newHandshake', (KEEPALIVE_TIMEOUT + REKEY_TIMEOUT + this.jitter()) * this.timerScale);
  }

  /** Call after an authenticated non-keepalive data packet was received. */
  dataReceived(): void {
    if (!this.running) return;
    if (!this.pending('sendKeepalive')) this.arm('sendKeepalive', KEEPALIVE_TIMEOUT * this.timerScale);
    else this.needAnotherKeepalive = true;
  }

  /** Call after any authenticated packet (data, keepalive or handshake) was sent. */
  authenticatedSent(): void {
    // Anything we send already tells the peer we are alive, so no passive keepalive is owed.
    this.cancel('sendKeepalive');
  }

  /** Call after any authenticated packet (data, keepalive or handshake) was received. */
  authenticatedReceived(): void {
    // The peer answered, so the "stopped hearing back" suspicion is over.
    this.cancel('newHandshake');
  }

  /** Call before any authenticated packet is sent and after one is received. */
  authenticatedTraversal(): void {
    // Re-armed on every packet: the persistent keepalive only fills silence, it is not a fixed beat.
    if (this.keepaliveInterval > 0) this.arm('persistentKeepalive', this.keepaliveInterval * 1000);
  }

  /**
   * Sets the persistent keepalive interval (seconds, 0 disables). Returns true when the caller should send a
   * keepalive right away: both implementations do so when the setting goes from off to on while running,
   * which is what makes a fresh NAT mapping appear without waiting for traffic.
   */
  setPersistentKeepalive(seconds: number): boolean {
    if (!Number.isInteger(seconds) || seconds < 0 || seconds > 0xffff) {
      throw new WgError('bad-keepalive', `persistent keepalive must be 0..65535 seconds, got ${seconds}`, Errno.EINVAL);
    }
    const wasOff = this.keepaliveInterval === 0;
    this.keepaliveInterval = seconds;
    // The kernel leaves the timer pending and lets its handler see interval 0; cancelling is equivalent and
    // spares the caller a pointless wake-up.
    if (seconds === 0) this.cancel('persistentKeepalive');
    return wasOff && seconds > 0 && this.running;
  }

  /** Cancels every timer and ignores arming events until start() (peer removed or device down). */
  stop(): void {
    for (const name of TIMER_NAMES) this.cancel(name);
    this.needAnotherKeepalive = false;
    this.running = false;
  }

  /**
   * Lets events arm timers again (device up). Nothing is re-armed by itself: traffic does that. The handshake
   * state starts over as wireguard-go's peer start does: the sessions were forgotten at down, so the first
   * packet after up must be able to start a handshake at once, even within REKEY_TIMEOUT of the last one
   * (otherwise it waits, staged, for a later packet, since no retransmit timer is left to send one).
   */
  start(): void {
    this.running = true;
    this.lastSentHandshake = undefined;
    this.attempts = 0;
    this.sentLastMinute = false;
    this.needAnotherKeepalive = false;
  }

  // ---- expiry -------------------------------------------------------------------------------------------

  /** Fires every timer whose deadline <= now and returns the actions in deadline order. */
  poll(): TimerAction[] {
    const now = this.clock.now();
    const actions: TimerAction[] = [];
    // Each timer fires at most once per poll, so a re-arm that rounds onto `now` cannot loop forever.
    const fired = new Set<TimerName>();
    for (;;) {
      let next: TimerName | undefined;
      let best = Infinity;
      for (const name of TIMER_NAMES) {
        const d = this.deadlines[TIMER_INDEX[name]];
        if (d <= now && d < best && !fired.has(name)) {
          best = d;
          next = name;
        }
      }
      if (next === undefined) return actions;
      fired.add(next);
      this.deadlines[TIMER_INDEX[next]] = NaN;
      this.expire(next, actions);
    }
  }

  private expire(name: TimerName, actions: TimerAction[]): void {
    switch (name) {
      case 'retransmitHandshake':
        // attempts counts retries, so this gives up on the expiry after the 19th retry: 20 initiations in all
        // (the kernel and wireguard-go both log "after MAX_TIMER_HANDSHAKES + 2 attempts").
        if (this.attempts > MAX_TIMER_HANDSHAKES) {
          this.cancel('sendKeepalive');
          // Erase whatever a partial exchange left behind, unless a live session already scheduled it.
          if (!this.pending('zeroKeyMaterial')) this.arm('zeroKeyMaterial', KEY_ERASE_AFTER * this.timerScale);
          actions.push({ kind: 'give-up' });
        } else {
          this.attempts++;
          actions.push({ kind: 'retransmit-initiation' });
        }
        return;
      case 'sendKeepalive':
        actions.push({ kind: 'send-keepalive', reason: 'passive' });
        // More data arrived while the timer ran; owe the peer one more keepalive. (The keepalive just
        // requested usually cancels this again via authenticatedSent(), exactly as in both implementations.)
        if (this.needAnotherKeepalive) {
          this.needAnotherKeepalive = false;
          this.arm('sendKeepalive', KEEPALIVE_TIMEOUT * this.timerScale);
        }
        return;
      case 'newHandshake':
        actions.push({ kind: 'new-handshake' });
        return;
      case 'zeroKeyMaterial':
        actions.push({ kind: 'zero-keys' });
        return;
      case 'persistentKeepalive':
        if (this.keepaliveInterval > 0) actions.push({ kind: 'send-keepalive', reason: 'persistent' });
        return;
    }
  }

  // ---- predicates and state -----------------------------------------------------------------------------

  /** True unless a handshake message went out less than REKEY_TIMEOUT ago. */
  initiationAllowed(): boolean {
    if (this.lastSentHandshake === undefined) return true;
    return this.clock.now() - this.lastSentHandshake >= REKEY_TIMEOUT * this.timerScale;
  }

  /** shouldRekeyOnSend with this peer's timer scale and the current clock. */
  rekeyOnSend(kp: SendingKeypair | undefined): boolean {
    return shouldRekeyOnSend(kp, this.clock.now(), this.timerScale);
  }

  /** The "last minute" rule, remembering that it fired until the next completed handshake. */
  rekeyOnReceive(kp: KeypairAge | undefined): boolean {
    if (!shouldRekeyOnReceive(kp, this.clock.now(), this.sentLastMinute, this.timerScale)) return false;
    this.sentLastMinute = true;
    return true;
  }

  /** The earliest pending deadline (clock ms), or undefined when no timer is armed. */
  nextDeadline(): number | undefined {
    let best: number | undefined;
    for (let i = 0; i < TIMER_NAMES.length; i++) {
      const d = this.deadlines[i];
      if (d === d && (best === undefined || d < best)) best = d; // d === d: not NaN
    }
    return best;
  }

  /** One timer's deadline (clock ms), or undefined when it is not pending. */
  deadline(name: TimerName): number | undefined {
    const d = this.deadlines[TIMER_INDEX[name]];
    return d === d ? d : undefined;
  }

  /** Retries made since the last completed handshake or non-retry initiation request. */
  get handshakeAttempts(): number {
    return this.attempts;
  }

  /** Clock time (ms) of the last completed handshake. */
  get lastHandshakeAt(): number | undefined {
    return this.lastHandshake;
  }

  /** Wall-clock time of the last completed handshake, for the UAPI's last_handshake_time_sec/nsec. */
  get lastHandshakeWall(): { sec: bigint; nsec: number } | undefined {
    return this.lastHandshakeWallTime;
  }

  get persistentKeepalive(): number {
    return this.keepaliveInterval;
  }

  get sentLastMinuteHandshake(): boolean {
    return this.sentLastMinute;
  }

  get isRunning(): boolean {
    return this.running;
  }

  // ---- internals ----------------------------------------------------------------------------------------

  private arm(name: TimerName, delay: number): void {
    if (!this.running) return;
    const d = this.clock.now() + delay;
    this.deadlines[TIMER_INDEX[name]] = d;
    this.onArm?.(d);
  }

  private cancel(name: TimerName): void {
    this.deadlines[TIMER_INDEX[name]] = NaN;
  }

  private pending(name: TimerName): boolean {
    const d = this.deadlines[TIMER_INDEX[name]];
    return d === d;
  }

  /** Uniform whole milliseconds in [0, REKEY_TIMEOUT_JITTER_MAX). */
  private jitter(): number {
    const b = this.jitterPool;
    for (;;) {
      if (this.jitterAt === b.length) {
        this.random(b);
        this.jitterAt = 0;
      }
      const i = this.jitterAt;
      this.jitterAt += 4;
      const v = (b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24)) >>> 0;
      if (v < JITTER_LIMIT) return v % REKEY_TIMEOUT_JITTER_MAX;
    }
  }
}
