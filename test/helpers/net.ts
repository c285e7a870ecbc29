// An in-memory network for protocol tests (the role of wireguard-go's bindtest/tuntest): two or more Devices
// whose datagrams go into a queue that the test delivers, drops, duplicates or reorders explicitly.

import { FakeClock, seededRandom } from '../../src/clock.js';
import { Device } from '../../src/device.js';
import type { Endpoint, Peer } from '../../src/peer.js';
import { peerEachOther } from '../../src/warmup.js';
import { defaultSuite } from '../../src/crypto/index.js';
import type { CipherSuite } from '../../src/crypto/suite.js';

export interface Datagram {
  from: Endpoint;
  to: Endpoint;
  data: Uint8Array;
}

export interface Node {
  device: Device;
  endpoint: Endpoint;
  delivered: { packet: Uint8Array; peer: Peer }[];
  sent: Datagram[];
}

export class Network {
  readonly clock = new FakeClock();
  readonly queue: Datagram[] = [];
  readonly nodes: Node[] = [];
  private seed = 1;

  constructor(readonly suite: CipherSuite = defaultSuite()) {}

  /** A device at 198.51.100.<n>:<51820+n> with a deterministic random source. */
  add(privateKey: Uint8Array, opts: { timerScale?: number; mtu?: number; suite?: CipherSuite } = {}): Node {
    const n = this.nodes.length + 1;
    const endpoint = { addr: Uint8Array.of(198, 51, 100, n), port: 51820 + n };
    const node: Node = { device: undefined as unknown as Device, endpoint, delivered: [], sent: [] };
    node.device = new Device({
      io: {
        send: (data, to) => {
          const d = { from: endpoint, to, data: Uint8Array.from(data) };
          node.sent.push(d);
          this.queue.push(d);
        },
        deliver: (packet, peer) => node.delivered.push({ packet: Uint8Array.from(packet), peer }),
      },
      clock: this.clock,
      random: seededRandom(this.seed++ * 7919),
      ...opts,
      suite: opts.suite ?? this.suite,
    });
    node.device.setPrivateKey(privateKey);
    this.nodes.push(node);
    return node;
  }

  nodeAt(ep: Endpoint): Node | undefined {
    return this.nodes.find((n) => n.endpoint.port === ep.port && n.endpoint.addr.every((b, i) => b === ep.addr[i]));
  }

  /** Delivers queued datagrams until the queue is empty (or max steps); returns the drop reasons seen. */
  run(maxSteps = 100): (string | null)[] {
    const reasons: (string | null)[] = [];
    for (let i = 0; i < maxSteps && this.queue.length; i++) {
      const d = this.queue.shift()!;
      const node = this.nodeAt(d.to);
      if (node) reasons.push(node.device.receive(d.data, d.from));
    }
    return reasons;
  }

  /** Advances the fake clock in steps, running timers and delivering traffic at each step. */
  advance(ms: number, step = 100): void {
    for (let t = 0; t < ms; t += step) {
      this.clock.advance(Math.min(step, ms - t));
      for (const n of this.nodes) n.device.tick();
      this.run();
    }
  }
}

/** Two peered devices: a at 203.0.113.1, b at 203.0.113.2, each allowing the other's /32. */
export function pair(net: Network, keyA: Uint8Array, keyB: Uint8Array, opts: { timerScale?: number } = {}) {
  const a = net.add(keyA, opts);
  const b = net.add(keyB, opts);
  const [pa, pb] = peerEachOther([a.device, b.device], [{ ...a.endpoint }, { ...b.endpoint }]); // a's view of b, b's of a
  return { a, b, pa, pb };
}

/** Two devices outside a Network made each other's peer (for tests that carry the datagrams themselves). */
export { peerEachOther };

export const key = (n: number): Uint8Array => {
  const k = new Uint8Array(32);
  seededRandom(1000 + n)(k);
  return k;
};
