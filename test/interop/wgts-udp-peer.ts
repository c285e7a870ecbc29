// Our side of the wireguard-go interop tests: a Device on a plain UDP socket with no TUN, run as a child
// process inside a test namespace (see wggo-peer.ts). It answers IPv4 ICMP echo requests for its tunnel
// address itself and can originate echo requests, so both handshake directions can be driven without root
// inside the child. Protocol: first stdin line = ChildConfig (JSON), later lines = commands; every event is
// one JSON line on stdout. The helpers are exported so the offline fixture test builds the same Device.

import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { realpathSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import { seededRandom, systemClock, type Clock } from '../../src/clock.js';
import { Device, type DeviceIO } from '../../src/device.js';
import { formatIP, parseIP, parsePrefix } from '../../src/ip.js';
import { keyFromBase64 } from '../../src/keys.js';
import type { Endpoint, Peer } from '../../src/peer.js';

export interface ChildConfig {
  /** Local UDP address and port to bind (inside the child's namespace). */
  listen: { addr: string; port: number };
  /** Our static private key, base64 (test-only keys). */
  privateKey: string;
  /** Our inner tunnel address: echo requests to it are answered, echo requests we send come from it. */
  tunnelAddr: string;
  peer: { publicKey: string; endpoint?: string; allowedIps: string[]; presharedKey?: string };
  /** Deterministic ephemeral keys and indices (seededRandom) instead of system randomness. */
  seed?: number;
}

export type ChildCommand =
  | { cmd: 'ping'; dst: string; count: number; intervalMs?: number; id?: number }
  | { cmd: 'stats' }
  | { cmd: 'exit' };

/** "a.b.c.d:port" or "[v6]:port" -> Endpoint. */
export function parseEndpoint(s: string): Endpoint {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(s) ?? /^([^:]+):(\d+)$/.exec(s);
  const addr = m ? parseIP(m[1]) : null;
  const port = m ? Number(m[2]) : -1;
  if (!addr || port < 1 || port > 65535) throw new Error(`bad endpoint ${JSON.stringify(s)}`);
  return { addr, port };
}

export const formatEndpoint = (ep: Endpoint): string =>
  ep.addr.length === 16 ? `[${formatIP(ep.addr)}]:${ep.port}` : `${formatIP(ep.addr)}:${ep.port}`;

/**
 * The Device as the child configures it. The order of calls is part of the fixture's contract: the seeded
 * random source must be drawn from in the same order for the recorded response to be reproducible.
 */
export function buildDevice(cfg: ChildConfig, io: DeviceIO, clock: Clock = systemClock,
  log?: (level: 'error' | 'verbose', msg: string) => void): { device: Device; peer: Peer } {
  const device = new Device({ io, clock, log, ...(cfg.seed !== undefined ? { random: seededRandom(cfg.seed) } : {}) });
  device.setPrivateKey(keyFromBase64(cfg.privateKey));
  const peer = device.addPeer(keyFromBase64(cfg.peer.publicKey));
  if (!peer) throw new Error('peer public key equals our own');
  if (cfg.peer.presharedKey) peer.presharedKey = keyFromBase64(cfg.peer.presharedKey);
  if (cfg.peer.endpoint) peer.endpoint = parseEndpoint(cfg.peer.endpoint);
  for (const p of cfg.peer.allowedIps) {
    const pre = parsePrefix(p);
    if (!pre) throw new Error(`bad allowed ip ${p}`);
    device.allowedIps.insert(pre.addr, pre.cidr, peer);
  }
  return { device, peer };
}

// ---- IPv4 / ICMP (RFC 791, RFC 792) ------------------------------------------------------------------------

/** The Internet checksum (one's complement of the one's complement sum of 16-bit words). */
export function inetChecksum(b: Uint8Array, off: number, len: number): number {
  let sum = 0;
  for (let i = 0; i + 1 < len; i += 2) sum += (b[off + i] << 8) | b[off + i + 1];
  if (len & 1) sum += b[off + len - 1] << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

export interface IcmpEcho {
  src: string;
  dst: string;
  type: 0 | 8;
  id: number;
  seq: number;
  /** Both the IPv4 header checksum and the ICMP checksum verify. */
  checksumsOk: boolean;
}

/** An IPv4 ICMP echo request/reply, or null for anything else. */
export function parseIcmpEcho(p: Uint8Array): IcmpEcho | null {
  if (p.length < 28 || p[0] >> 4 !== 4 || p[9] !== 1) return null;
  const ihl = (p[0] & 0xf) * 4;
  const total = (p[2] << 8) | p[3];
  if (ihl < 20 || total > p.length || total < ihl + 8) return null;
  const type = p[ihl];
  if ((type !== 0 && type !== 8) || p[ihl + 1] !== 0) return null;
  return {
    src: formatIP(p.subarray(12, 16)),
    dst: formatIP(p.subarray(16, 20)),
    type,
    id: (p[ihl + 4] << 8) | p[ihl + 5],
    seq: (p[ihl + 6] << 8) | p[ihl + 7],
    checksumsOk: inetChecksum(p, 0, ihl) === 0 && inetChecksum(p, ihl, total - ihl) === 0,
  };
}

function setChecksum(p: Uint8Array, at: number, off: number, len: number): void {
  p[at] = p[at + 1] = 0;
  const c = inetChecksum(p, off, len);
  p[at] = c >> 8;
  p[at + 1] = c & 0xff;
}

/** The echo reply to an echo request addressed to `self`, or null when it is not one. */
export function echoReplyFor(req: Uint8Array, self: Uint8Array): Uint8Array | null {
  const e = parseIcmpEcho(req);
  if (!e || e.type !== 8 || !equalBytes(req.subarray(16, 20), self)) return null;
  const ihl = (req[0] & 0xf) * 4;
  const total = (req[2] << 8) | req[3];
  const r = req.slice(0, total);
  r.set(req.subarray(16, 20), 12);
  r.set(req.subarray(12, 16), 16);
  r[8] = 64; // a fresh TTL, as a host originating the reply would use
  setChecksum(r, 10, 0, ihl);
  r[ihl] = 0;
  setChecksum(r, ihl + 2, ihl, total - ihl);
  return r;
}

/** A 84-byte IPv4 echo request like ping's default (56 data bytes). */
export function buildEchoRequest(src: Uint8Array, dst: Uint8Array, id: number, seq: number): Uint8Array {
  const p = new Uint8Array(84);
  p[0] = 0x45;
  p[2] = 0;
  p[3] = p.length;
  p[4] = seq >> 8;
  p[5] = seq & 0xff;
  p[6] = 0x40; // DF
  p[8] = 64;
  p[9] = 1;
  p.set(src, 12);
  p.set(dst, 16);
  setChecksum(p, 10, 0, 20);
  p[20] = 8;
  p[24] = id >> 8;
  p[25] = id & 0xff;
  p[26] = seq >> 8;
  p[27] = seq & 0xff;
  for (let i = 28; i < p.length; i++) p[i] = i & 0xff;
  setChecksum(p, 22, 20, p.length - 20);
  return p;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

// ---- the child process ------------------------------------------------------------------------------------

const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.length).toString('hex');
const t0 = performance.now();
const emit = (ev: Record<string, unknown>): void => {
  process.stdout.write(`${JSON.stringify({ t: Math.round(performance.now() - t0), ...ev })}\n`);
};

function run(cfg: ChildConfig, commands: AsyncIterator<string>): void {
  const self = parseIP(cfg.tunnelAddr);
  if (!self || self.length !== 4) throw new Error('tunnelAddr must be an IPv4 address');
  const listen = parseIP(cfg.listen.addr);
  if (!listen) throw new Error(`bad listen address ${cfg.listen.addr}`);
  const sock: Socket = createSocket(listen.length === 16 ? 'udp6' : 'udp4');
  let timer: NodeJS.Timeout | undefined;

  const io: DeviceIO = {
    send(datagram, to) {
      const copy = Buffer.from(datagram);
      emit({ ev: 'send', to: formatEndpoint(to), hex: copy.toString('hex') });
      sock.send(copy, to.port, formatIP(to.addr), (err) => err && emit({ ev: 'error', where: 'send', message: err.message }));
    },
    deliver(packet) {
      const pkt = Uint8Array.from(packet); // the device's view is only valid during this call
      emit({ ev: 'deliver', hex: hex(pkt) });
      const echo = parseIcmpEcho(pkt);
      if (echo?.type === 0) emit({ ev: 'echo-reply', src: echo.src, id: echo.id, seq: echo.seq, ok: echo.checksumsOk });
      const reply = echoReplyFor(pkt, self);
      if (!reply || !echo) return;
      emit({ ev: 'echo-request', src: echo.src, id: echo.id, seq: echo.seq, ok: echo.checksumsOk });
      // Answer after receive() has returned rather than re-entering the device from its own callback.
      queueMicrotask(() => sendPacket(reply));
    },
  };
  const { device, peer } = buildDevice(cfg, io, systemClock, (level, msg) => emit({ ev: 'log', level, msg }));

  // One real timer, always re-armed at the device's next deadline after anything happened.
  const schedule = (): void => {
    clearTimeout(timer);
    const d = device.nextDeadline();
    if (d === undefined) return;
    timer = setTimeout(() => {
      device.tick();
      schedule();
    }, Math.max(0, Math.ceil(d - systemClock.now())));
  };
  const sendPacket = (p: Uint8Array): void => {
    const r = device.sendPacket(p);
    if (r) emit({ ev: 'drop', where: 'sendPacket', reason: r });
    schedule();
  };

  sock.on('message', (msg: Buffer, rinfo: RemoteInfo) => {
    const addr = parseIP(rinfo.address);
    if (!addr) return;
    const from = { addr, port: rinfo.port };
    emit({ ev: 'recv', from: formatEndpoint(from), hex: msg.toString('hex') });
    const r = device.receive(new Uint8Array(msg.buffer, msg.byteOffset, msg.length), from);
    if (r) emit({ ev: 'drop', where: 'receive', reason: r });
    schedule();
  });
  sock.on('error', (err) => {
    emit({ ev: 'error', where: 'socket', message: err.message });
    process.exit(1);
  });
  sock.bind({ address: cfg.listen.addr, port: cfg.listen.port, exclusive: true }, () => {
    emit({ ev: 'ready', port: sock.address().port, publicKey: Buffer.from(device.publicKey!).toString('base64') });
  });

  const exit = (): void => {
    clearTimeout(timer);
    sock.close();
    process.exit(0);
  };
  process.on('SIGTERM', exit);
  process.on('SIGINT', exit);

  void (async () => {
    for (;;) {
      const next = await commands.next();
      if (next.done) return exit(); // the parent went away
      if (!next.value.trim()) continue;
      const c = JSON.parse(next.value) as ChildCommand;
      if (c.cmd === 'exit') return exit();
      if (c.cmd === 'stats') {
        emit({
          ev: 'stats', rx: String(peer.rxBytes), tx: String(peer.txBytes), endpoint: peer.endpoint && formatEndpoint(peer.endpoint),
          hasKeypair: peer.keypairs.current !== null, drops: Object.fromEntries(device.drops),
        });
      } else if (c.cmd === 'ping') {
        const dst = parseIP(c.dst);
        if (!dst || dst.length !== 4) throw new Error(`bad ping destination ${c.dst}`);
        const id = c.id ?? (process.pid & 0xffff);
        for (let seq = 1; seq <= c.count; seq++) {
          if (seq > 1) await new Promise((r) => setTimeout(r, c.intervalMs ?? 1000));
          emit({ ev: 'ping-sent', dst: c.dst, id, seq });
          sendPacket(buildEchoRequest(self, dst, id, seq));
        }
      }
    }
  })().catch((e: unknown) => {
    emit({ ev: 'error', where: 'command', message: e instanceof Error ? e.message : String(e) });
    process.exit(1);
  });
}

async function main(): Promise<void> {
  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity })[Symbol.asyncIterator]();
  const first = await lines.next();
  if (first.done) throw new Error('expected the config as the first stdin line');
  run(JSON.parse(first.value) as ChildConfig, lines);
}

const invokedDirectly = (() => {
  try {
    return process.argv[1] !== undefined && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href;
  } catch {
    return false;
  }
})();
if (invokedDirectly) {
  main().catch((e: unknown) => {
    emit({ ev: 'error', where: 'startup', message: e instanceof Error ? e.message : String(e) });
    process.exit(1);
  });
}
