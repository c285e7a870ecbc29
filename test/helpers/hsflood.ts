// Handshake-flood generator for the root flood test (issue 5 item 3), run as a child process inside a test
// namespace with `ip netns exec`. Two modes:
// - flood: builds ONE valid handshake initiation (real mac1, no mac2) for the target's public key and sends
//   that same datagram over and over, paced to a rate, from several sockets (source ports) at once.
// - probe: obtains a cookie from the target (a cookie reply to its first initiations), then sends FRESH
//   initiations carrying a valid mac2 at a steady rate, counting the handshake responses that come back:
//   under load those pass only the per-source ratelimiter (protocol.md "ratelimiter", 20/s burst 5).
// Config is the first stdin line (JSON; the private key is a throwaway test key, kept off the command line);
// the result is one JSON line on stdout when the run ends. Every loop is bounded by `seconds`.

import { createSocket, type Socket } from 'node:dgram';
import { createInterface } from 'node:readline';
import { Device } from '../../src/device.js';
import { parseIP } from '../../src/ip.js';
import { keyFromBase64 } from '../../src/keys.js';
import type { Peer } from '../../src/peer.js';

export interface FloodConfig {
  mode: 'flood' | 'probe';
  /** Our identity (base64, test-only). For the probe it must be a configured peer of the target. */
  privateKey: string;
  targetPublicKey: string;
  targetAddr: string;
  targetPort: number;
  /** Local address to send from (the ratelimiter keys on it). */
  bindAddr: string;
  /** flood: first local port, sockets use basePort..basePort+sockets-1. probe: its one port. */
  basePort: number;
  /** flood: number of sockets. */
  sockets?: number;
  /** Datagrams (flood) or fresh initiations (probe) per second. */
  rate: number;
  /** Hard bound on the run. */
  seconds: number;
}

export interface FloodResult {
  mode: 'flood' | 'probe';
  sent: number;
  sendErrors: number;
  elapsedMs: number;
  /** Datagrams received from the target, by message type (1..4). */
  received: Record<string, number>;
  /** probe: when (ms after start) the first cookie reply was accepted, -1 if never. */
  cookieAtMs: number;
  /** probe: fresh initiations sent after the cookie was accepted, and the responses received after it. */
  sentWithCookie: number;
  responsesWithCookie: number;
  /** probe: ms between the first and the last response received after the cookie (0 when fewer than 2). */
  responseSpanMs: number;
}

// A flood turn sends at most this many datagrams before yielding, so replies and timers still run.
const FLOOD_BATCH = 64;

function device(cfg: FloodConfig, onSend: (d: Uint8Array) => void): { dev: Device; peer: Peer } {
  // timerScale shrinks REKEY_TIMEOUT (which spaces a real peer's initiations 5 s apart) to 5 ns, so the
  // probe can make fresh initiations back to back; no timer ever runs here (tick() is never called).
  const dev = new Device({ io: { send: (d) => onSend(Uint8Array.from(d)), deliver: () => {} }, timerScale: 1e-9 });
  dev.setPrivateKey(keyFromBase64(cfg.privateKey));
  const peer = dev.addPeer(keyFromBase64(cfg.targetPublicKey));
  if (!peer) throw new Error('target key equals our own');
  const addr = parseIP(cfg.targetAddr);
  if (!addr) throw new Error(`bad target address ${cfg.targetAddr}`);
  peer.endpoint = { addr, port: cfg.targetPort };
  return { dev, peer };
}

/** One fresh initiation from dev to peer (with mac2 once a cookie was consumed). */
function initiation(dev: Device, peer: Peer, out: { msg: Uint8Array | null }): Uint8Array {
  out.msg = null;
  dev.initiate(peer, true);
  if (!out.msg) throw new Error('the device made no initiation');
  return out.msg;
}

function openSocket(cfg: FloodConfig, port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = createSocket(cfg.bindAddr.includes(':') ? 'udp6' : 'udp4');
    s.once('error', reject);
    s.bind({ address: cfg.bindAddr, port, exclusive: true }, () => {
      // Connected: send() needs no address lookup per datagram, and only the target's datagrams arrive.
      s.connect(cfg.targetPort, cfg.targetAddr, () => {
        s.removeListener('error', reject);
        resolve(s);
      });
    });
  });
}

function emptyResult(mode: FloodConfig['mode']): FloodResult {
  return { mode, sent: 0, sendErrors: 0, elapsedMs: 0, received: {}, cookieAtMs: -1, sentWithCookie: 0, responsesWithCookie: 0, responseSpanMs: 0 };
}

async function flood(cfg: FloodConfig): Promise<FloodResult> {
  const out = { msg: null as Uint8Array | null };
  const { dev, peer } = device(cfg, (d) => (out.msg = d));
  const packet = Buffer.from(initiation(dev, peer, out));
  const res = emptyResult('flood');
  const socks = await Promise.all(Array.from({ length: cfg.sockets ?? 1 }, (_, i) => openSocket(cfg, cfg.basePort + i)));
  for (const s of socks) {
    s.on('message', (m) => (res.received[m[0]] = (res.received[m[0]] ?? 0) + 1));
    s.on('error', () => res.sendErrors++);
  }
  const t0 = performance.now();
  const end = t0 + cfg.seconds * 1000;
  await new Promise<void>((resolve) => {
    let next = 0;
    const turn = (): void => {
      const now = performance.now();
      if (now >= end) return resolve();
      // Paced: catch up to rate * elapsed, at most one batch per turn.
      const due = Math.min(FLOOD_BATCH, Math.floor(((now - t0) / 1000) * cfg.rate) - res.sent);
      for (let i = 0; i < due; i++) {
        try {
          socks[next].send(packet);
          res.sent++;
        } catch {
          res.sendErrors++;
        }
        next = (next + 1) % socks.length;
      }
      setImmediate(turn);
    };
    turn();
  });
  res.elapsedMs = performance.now() - t0;
  // Let the last replies in flight arrive before counting stops.
  await new Promise((r) => setTimeout(r, 200));
  for (const s of socks) s.close();
  return res;
}

async function probe(cfg: FloodConfig): Promise<FloodResult> {
  const out = { msg: null as Uint8Array | null };
  const { dev, peer } = device(cfg, (d) => (out.msg = d));
  const res = emptyResult('probe');
  const sock = await openSocket(cfg, cfg.basePort);
  const t0 = performance.now();
  let firstResponse = 0;
  let lastResponse = 0;
  sock.on('error', () => res.sendErrors++);
  sock.on('message', (m) => {
    res.received[m[0]] = (res.received[m[0]] ?? 0) + 1;
    if (m[0] === 3 && res.cookieAtMs < 0) {
      // Accepted only if it answers the last initiation we stamped (the generator keeps that one's mac1).
      const from = { addr: parseIP(cfg.targetAddr)!, port: cfg.targetPort };
      if (dev.receive(new Uint8Array(m), from) === null) res.cookieAtMs = performance.now() - t0;
    } else if (m[0] === 2 && res.cookieAtMs >= 0) {
      res.responsesWithCookie++;
      lastResponse = performance.now();
      if (!firstResponse) firstResponse = lastResponse;
    }
  });
  const end = t0 + cfg.seconds * 1000;
  let paced = 0; // initiations sent since the cookie, paced to cfg.rate from then on
  for (let now = performance.now(); now < end; now = performance.now()) {
    if (res.cookieAtMs < 0) {
      // Before the cookie: one initiation in flight at a time, so its reply matches the stamped mac1.
      send(sock, initiation(dev, peer, out), res);
      await new Promise((r) => setTimeout(r, 100));
      continue;
    }
    const due = Math.min(cfg.rate, Math.floor(((now - t0 - res.cookieAtMs) / 1000) * cfg.rate) - paced);
    for (let i = 0; i < due; i++, paced++) if (send(sock, initiation(dev, peer, out), res)) res.sentWithCookie++;
    await new Promise((r) => setTimeout(r, 5));
  }
  res.elapsedMs = performance.now() - t0;
  await new Promise((r) => setTimeout(r, 200));
  res.responseSpanMs = lastResponse > firstResponse ? lastResponse - firstResponse : 0;
  sock.close();
  return res;
}

function send(sock: Socket, msg: Uint8Array, res: FloodResult): boolean {
  try {
    sock.send(msg);
    res.sent++;
    return true;
  } catch {
    res.sendErrors++;
    return false;
  }
}

async function main(): Promise<void> {
  const first = await createInterface({ input: process.stdin, crlfDelay: Infinity })[Symbol.asyncIterator]().next();
  if (first.done) throw new Error('expected the config as the first stdin line');
  const cfg = JSON.parse(first.value) as FloodConfig;
  const res = cfg.mode === 'flood' ? await flood(cfg) : await probe(cfg);
  process.stdout.write(`${JSON.stringify(res)}\n`);
  process.exit(0);
}

main().catch((e: unknown) => {
  process.stderr.write(`hsflood: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
  process.exit(1);
});
