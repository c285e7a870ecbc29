// What the device does when a peer's timer fires (protocol.md "Timers"; the kernel's timers.c handlers): the
// timers themselves (timers.ts) only decide which deadlines passed; this carries out their actions on the
// device, one peer at a time, so one peer's failure never stops another's timers.

import type { Peer } from '../peer.js';

/** The device operations a timer action needs. */
export interface TimerHost {
  initiate(peer: Peer, isRetry: boolean): void;
  sendKeepalive(peer: Peer): void;
  forgetSessions(peer: Peer): void;
  /** A timer constant in seconds as this device scales it, for log lines. */
  timerSeconds(s: number): string;
  log(level: 'error' | 'verbose', msg: string): void;
  internal(e: unknown): void;
}

/** Runs every due timer action of every peer. */
export function runDueTimers(peers: Iterable<Peer>, host: TimerHost): void {
  for (const peer of peers) {
    for (const action of peer.timers.poll()) {
      try {
        switch (action.kind) {
          case 'retransmit-initiation':
            host.log('verbose', `${peer.name}: handshake did not complete after ${host.timerSeconds(5)} seconds, retrying (try ${peer.timers.handshakeAttempts + 1})`);
            host.initiate(peer, true);
            break;
          case 'new-handshake':
            host.initiate(peer, false);
            break;
          case 'give-up':
            // The first initiation plus its retries: MAX_TIMER_HANDSHAKES + 2, the number both peers print.
            host.log('verbose', `${peer.name}: handshake did not complete after ${peer.timers.handshakeAttempts + 1} attempts, giving up`);
            peer.staged.clear();
            break;
          case 'send-keepalive':
            host.sendKeepalive(peer);
            break;
          case 'zero-keys':
            host.log('verbose', `${peer.name}: removing all keys, since we haven't received a new one in ${host.timerSeconds(540)} seconds`);
            host.forgetSessions(peer);
            break;
        }
      } catch (e) {
        host.internal(e);
      }
    }
  }
}

/** The earliest pending deadline over all peers (clock ms), or undefined when none is armed. */
export function earliestDeadline(peers: Iterable<Peer>): number | undefined {
  let best: number | undefined;
  for (const peer of peers) {
    const d = peer.timers.nextDeadline();
    if (d !== undefined && (best === undefined || d < best)) best = d;
  }
  return best;
}
