// Sends given datagrams from a socket of its own (another source address and/or port than the peer that
// made them) and reports what came back (issue 5 item 2, replay and forgery). Run as a child inside a test
// namespace via jsonchild.ts; config on the first stdin line, one `done` JSON line on stdout.

import { createSocket } from 'node:dgram';
import { createInterface } from 'node:readline';

export interface ReplayConfig {
  /** Local address to send from; the port is ephemeral unless given. */
  bind: { addr: string; port?: number };
  sends: { hex: string; addr: string; port: number }[];
  /** Pause after every `burst` datagrams, so a receiver's socket buffer never overflows. */
  burst?: number;
  /** How long to listen for answers after the last send. */
  listenMs?: number;
}

export interface ReplayResult {
  port: number;
  sent: number;
  errors: number;
  received: { from: string; len: number; type: number }[];
}

const emit = (ev: Record<string, unknown>): void => void process.stdout.write(`${JSON.stringify(ev)}\n`);

async function main(cfg: ReplayConfig): Promise<void> {
  const sock = createSocket(cfg.bind.addr.includes(':') ? 'udp6' : 'udp4');
  const res: ReplayResult = { port: 0, sent: 0, errors: 0, received: [] };
  sock.on('message', (m, r) => res.received.push({ from: `${r.address}:${r.port}`, len: m.length, type: m[0] ?? -1 }));
  await new Promise<void>((r) => sock.bind({ address: cfg.bind.addr, port: cfg.bind.port ?? 0, exclusive: true }, r));
  res.port = sock.address().port;
  const burst = cfg.burst ?? 64;
  for (let i = 0; i < cfg.sends.length; i++) {
    const s = cfg.sends[i];
    await new Promise<void>((resolve) => sock.send(Buffer.from(s.hex, 'hex'), s.port, s.addr, (err) => {
      if (err) res.errors++;
      else res.sent++;
      resolve();
    }));
    if ((i + 1) % burst === 0) await new Promise((r) => setTimeout(r, 5));
  }
  await new Promise((r) => setTimeout(r, cfg.listenMs ?? 300));
  emit({ ev: 'done', ...res });
  sock.close();
}

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
lines.next().then(async (first) => {
  if (first.done) throw new Error('expected the config as the first stdin line');
  await main(JSON.parse(first.value) as ReplayConfig);
  process.exit(0);
}).catch((e: unknown) => {
  emit({ ev: 'error', message: e instanceof Error ? e.stack ?? e.message : String(e) });
  process.exit(1);
});
