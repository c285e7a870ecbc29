// Reads the UDP payloads out of a classic pcap file written by `tcpdump -w` on a veth (Ethernet framing,
// IPv4 or IPv6 without extension headers). Root tests use it to pick real WireGuard messages off the wire,
// e.g. a handshake response held back and replayed later (issue 5 item 4, key erasure).

import { readFileSync } from 'node:fs';

export interface UdpRecord {
  /** Capture time in ms since the epoch. */
  time: number;
  sport: number;
  dport: number;
  payload: Buffer;
}

const ETH_HEADER = 14;

/** Every UDP datagram in the capture, in capture order; throws on a file that is not pcap over Ethernet. */
export function readPcapUdp(path: string): UdpRecord[] {
  const f = readFileSync(path);
  if (f.length < 24) return []; // tcpdump stopped before writing its header
  const magic = f.readUInt32LE(0);
  // Microsecond or nanosecond timestamps, little-endian as tcpdump writes on this machine.
  const fraction = magic === 0xa1b2c3d4 ? 1e3 : magic === 0xa1b23c4d ? 1e6 : 0;
  if (!fraction) throw new Error(`${path}: not a little-endian pcap file (magic ${magic.toString(16)})`);
  const linktype = f.readUInt32LE(20);
  if (linktype !== 1) throw new Error(`${path}: link type ${linktype}, expected Ethernet (1)`);
  const out: UdpRecord[] = [];
  for (let off = 24; off + 16 <= f.length;) {
    const time = f.readUInt32LE(off) * 1000 + f.readUInt32LE(off + 4) / fraction;
    const caplen = f.readUInt32LE(off + 8);
    const frame = f.subarray(off + 16, off + 16 + caplen);
    off += 16 + caplen;
    if (frame.length < ETH_HEADER) continue;
    const ethertype = frame.readUInt16BE(12);
    let l4: number;
    let proto: number;
    if (ethertype === 0x0800) {
      proto = frame[ETH_HEADER + 9];
      l4 = ETH_HEADER + (frame[ETH_HEADER] & 0x0f) * 4;
    } else if (ethertype === 0x86dd) {
      proto = frame[ETH_HEADER + 6];
      l4 = ETH_HEADER + 40;
    } else {
      continue;
    }
    if (proto !== 17 || frame.length < l4 + 8) continue;
    const udpLen = frame.readUInt16BE(l4 + 4);
    out.push({
      time,
      sport: frame.readUInt16BE(l4),
      dport: frame.readUInt16BE(l4 + 2),
      payload: Buffer.from(frame.subarray(l4 + 8, l4 + Math.min(udpLen, frame.length - l4))),
    });
  }
  return out;
}
