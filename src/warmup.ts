// A first handshake at start-up (protocol.md "Handshake" and "Transport"), between two throwaway devices in
// memory: so that a tunnel's real first handshake does not pay for V8 first running the protocol core, one
// function at a time in the middle of it. A fresh daemon's first ping (handshake included) took ~48 ms here
// against wireguard-go's ~2 (README, "Performance"). The devices use random keys nothing else sees, no I/O,
// and log nothing; the steps run one per event-loop turn, so UAPI requests and packets are not held up.

import { Device } from './device.js';
import type { CipherSuite } from './crypto/suite.js';
import { systemRandom, type Clock } from './clock.js';
import type { Endpoint, Peer } from './peer.js';

/** What a warm-up moved: datagrams between the devices, and packets each delivered to its (absent) TUN. */
export interface WarmUpResult {
  datagrams: number;
  delivered: number;
}

/**
 * A 28-byte IPv4 ICMP echo request from 203.0.113.<from> to 203.0.113.<to>: what a first packet often is. The
 * addresses (and the endpoints' 198.51.100.x) are documentation ranges; nothing here reaches a network.
 */
function echo(from: number, to: number): Uint8Array {
  const p = new Uint8Array(28);
  p[0] = 0x45;
  p[3] = p.length;
  p[8] = 64;
  p[9] = 1;
  p.set([203, 0, 113, from], 12);
  p.set([203, 0, 113, to], 16);
  p[20] = 8;
  return p;
}

/** A random private key for each device; the scratch copy is zeroed once they hold theirs. */
export function randomKeys(devices: Device[]): void {
  const key = new Uint8Array(32);
  for (const d of devices) {
    systemRandom(key);
    d.setPrivateKey(key);
  }
  key.fill(0);
}

/**
 * Makes two devices each other's peer: device n reaches the other at eps[1 - n] and allows its
 * 203.0.113.<other + 1>/32, so an echo from 203.0.113.1 to .2 crosses from devs[0] to devs[1]. Returns each
 * device's peer (devs[0]'s view of devs[1] first). Used by both warm-ups and by the tests' pairs.
 */
export function peerEachOther(devs: Device[], eps: Endpoint[]): [Peer, Peer] {
  const peers: Peer[] = [];
  for (const n of [0, 1]) {
    const p = devs[n].addPeer(devs[1 - n].publicKey!);
    if (!p) throw new Error('a device refused the other as its peer');
    p.endpoint = eps[1 - n];
    devs[n].allowedIps.insert(Uint8Array.of(203, 0, 113, 2 - n), 32, p);
    peers.push(p);
  }
  return [peers[0], peers[1]];
}

/**
 * The warm-up as steps: set-up, each datagram's delivery, a packet each way, a keepalive, and the teardown
 * (which zeroes both private keys and forgets the sessions). `result` is filled in as the steps run.
 */
export function* warmUpSteps(suite: CipherSuite, clock: Clock, result: WarmUpResult): Generator<void, void, void> {
  const queue: { data: Uint8Array; from: Endpoint; to: Device }[] = [];
  const ends: Endpoint[] = [
    { addr: Uint8Array.of(198, 51, 100, 1), port: 1 },
    { addr: Uint8Array.of(198, 51, 100, 2), port: 2 },
  ];
  const devices: Device[] = [];
  for (const from of ends) {
    devices.push(
      new Device({
        io: {
          send: (data, to) => queue.push({ data: Uint8Array.from(data), from, to: devices[to.port - 1] }),
          deliver: () => void result.delivered++,
        },
        suite,
        clock,
      }),
    );
  }
  const [a, b] = devices;
  randomKeys(devices);
  try {
    const [pa] = peerEachOther(devices, ends);
    a.up();
    b.up();
    yield;
    const deliver = function* (): Generator<void, void, void> {
      for (let d = queue.shift(); d; d = queue.shift()) {
        d.to.receive(d.data, d.from);
        result.datagrams++;
        yield;
      }
    };
    a.sendPacket(echo(1, 2)); // staged; the initiation goes out
    yield* deliver(); // initiation, response, then the staged packet
    b.sendPacket(echo(2, 1));
    yield* deliver();
    a.sendKeepalive(pa);
    yield* deliver();
  } finally {
    for (const d of devices) {
      d.down();
      d.setPrivateKey(null);
    }
  }
}

/** Runs the steps all at once (tests, and anything that wants the result now). */
export function warmUp(suite: CipherSuite, clock: Clock): WarmUpResult {
  const result = { datagrams: 0, delivered: 0 };
  const steps = warmUpSteps(suite, clock, result);
  while (!steps.next().done);
  return result;
}

/**
 * Runs the steps one per event-loop turn; `cancelled` is asked before each (a stopping daemon ends it). The
 * promise tells what moved, or null when cancelled or failed; it never rejects.
 */
export function warmUpInBackground(suite: CipherSuite, clock: Clock, cancelled: () => boolean): Promise<WarmUpResult | null> {
  const result = { datagrams: 0, delivered: 0 };
  const steps = warmUpSteps(suite, clock, result);
  return new Promise((resolve) => {
    const next = (): void => {
      try {
        if (cancelled()) {
          steps.return();
          resolve(null);
        } else if (steps.next().done) resolve(result);
        else setImmediate(next);
      } catch {
        resolve(null); // a warm-up that failed has warmed up less; the daemon itself is unaffected
      }
    };
    setImmediate(next);
  });
}
