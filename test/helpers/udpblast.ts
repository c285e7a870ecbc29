// A paced UDP sender for the overload soak (issue 5 item 6), run inside a test namespace: datagrams of a
// fixed size to one address, at a rate, for a bounded time. Aimed at a tunnel route whose peer never
// completes a handshake, it keeps that peer's staged queue (MAX_STAGED_PACKETS) full for the whole run.
// Usage: node udpblast.js ADDR PORT RATE SECONDS [SIZE]; prints {"sent":N,"errors":N} when done.

import { createSocket } from 'node:dgram';

const [addr, portText, rateText, secondsText, sizeText] = process.argv.slice(2);
const port = Number(portText);
const rate = Number(rateText);
const seconds = Number(secondsText);
const size = Number(sizeText ?? 200);
if (!addr || !(port > 0) || !(rate > 0) || !(seconds > 0) || !(size > 0)) {
  process.stderr.write('usage: udpblast ADDR PORT RATE SECONDS [SIZE]\n');
  process.exit(2);
}

const sock = createSocket(addr.includes(':') ? 'udp6' : 'udp4');
const payload = Buffer.alloc(size, 0x5a);
let sent = 0;
let errors = 0;
sock.on('error', () => errors++);
sock.connect(port, addr, () => {
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  const timer = setInterval(() => {
    const now = performance.now();
    if (now >= end) {
      clearInterval(timer);
      sock.close();
      process.stdout.write(`${JSON.stringify({ sent, errors })}\n`);
      return;
    }
    // Catch up to rate * elapsed (at most a second's worth at once, after a stall).
    const due = Math.min(rate, Math.floor(((now - t0) / 1000) * rate) - sent);
    for (let i = 0; i < due; i++) {
      try {
        sock.send(payload);
        sent++;
      } catch {
        errors++;
      }
    }
  }, 10);
});
