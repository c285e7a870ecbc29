// A UDP_SEGMENT (UDP GSO) sender for the USO test, run inside a test namespace: each sendto(2) hands the kernel
// `per` datagrams of `size` bytes in one buffer, as QUIC stacks do. With USO on the TUN the super-packet
// reaches the daemon whole; datagram k starts with k as a u32 and is filled with a pattern of k, so the
// receiver can check each one. Usage: node usosend.js ADDR PORT SENDS PER SIZE; prints {"sent":N} when done.

import { createRequire } from 'node:module';
import { isIPv6 } from 'node:net';

const [addr, portText, sendsText, perText, sizeText] = process.argv.slice(2);
const [port, sends, per, size] = [portText, sendsText, perText, sizeText].map(Number);
if (!addr || !(port > 0) || !(sends > 0) || !(per > 0) || !(size >= 4)) {
  process.stderr.write('usage: usosend ADDR PORT SENDS PER SIZE\n');
  process.exit(2);
}

const koffi = createRequire(import.meta.url)('koffi') as typeof import('koffi');
const lib = koffi.load('libc.so.6');
const socket = lib.func('int socket(int, int, int)') as (d: number, t: number, p: number) => number;
const setsockopt = lib.func('int setsockopt(int, int, int, void *, uint32_t)') as (fd: number, l: number, n: number, v: Buffer, len: number) => number;
const sendto = lib.func('intptr_t sendto(int, void *, uint64_t, int, void *, uint32_t)') as (fd: number, b: Buffer, n: number, f: number, sa: Buffer, l: number) => number;
const SOL_UDP = 17;
const UDP_SEGMENT = 103;

const v6 = isIPv6(addr);
const fd = socket(v6 ? 10 : 2, 2, 0); // AF_INET6 / AF_INET, SOCK_DGRAM
if (fd < 0) throw new Error(`socket: errno ${koffi.errno()}`);
const seg = Buffer.alloc(4);
seg.writeInt32LE(size);
if (setsockopt(fd, SOL_UDP, UDP_SEGMENT, seg, 4) < 0) throw new Error(`UDP_SEGMENT: errno ${koffi.errno()}`);
const sa = Buffer.alloc(v6 ? 28 : 16);
sa.writeUInt16LE(v6 ? 10 : 2, 0);
sa.writeUInt16BE(port, 2);
if (v6) {
  const groups = addr.split('::');
  const head = groups[0] ? groups[0].split(':') : [];
  const tail = groups.length > 1 && groups[1] ? groups[1].split(':') : [];
  const words = [...head, ...new Array<string>(8 - head.length - tail.length).fill('0'), ...tail];
  words.forEach((w, i) => sa.writeUInt16BE(parseInt(w, 16), 8 + 2 * i));
} else {
  addr.split('.').forEach((o, i) => (sa[4 + i] = Number(o)));
}

const buf = Buffer.alloc(per * size);
let k = 0;
for (let s = 0; s < sends; s++) {
  for (let i = 0; i < per; i++, k++) {
    buf.fill(k & 0xff, i * size, (i + 1) * size);
    buf.writeUInt32BE(k, i * size);
  }
  if (sendto(fd, buf, buf.length, 0, sa, sa.length) !== buf.length) throw new Error(`sendto: errno ${koffi.errno()}`);
  await new Promise((r) => setTimeout(r, 20));
}
process.stdout.write(`${JSON.stringify({ sent: k })}\n`);
