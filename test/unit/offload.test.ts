// Unit tests for TUN offload packet logic (src/dataplane/offload.ts, src/dataplane/checksum.ts): virtio-net
// header codec, TSO splitting of hand-built IPv4/IPv6 TCP super-packets, GRO coalescing and its flow-ending
// rules, and split-then-coalesce round trips. Checksums are verified with an independent implementation here.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fold, ipv4HeaderChecksum, pseudoHeaderSum, sum16 } from '../../src/dataplane/checksum.js';
import {
  GroTable,
  VNET_HDR_F_DATA_VALID,
  VNET_HDR_F_NEEDS_CSUM,
  VNET_HDR_GSO_ECN,
  VNET_HDR_GSO_NONE,
  VNET_HDR_GSO_TCPV4,
  VNET_HDR_GSO_TCPV6,
  VNET_HDR_GSO_UDP,
  VNET_HDR_GSO_UDP_L4,
  VNET_HDR_LEN,
  completeChecksum,
  parseVnetHdr,
  writeVnetHdr,
  type VnetHdr,
} from '../../src/dataplane/offload.js';
import { lastSplit, tsoSplit, tsoSplitScattered, TSO_LAYOUT_MISMATCH } from '../../src/dataplane/tso.js';

const FIN = 0x01, SYN = 0x02, RST = 0x04, PSH = 0x08, ACK = 0x10, URG = 0x20, CWR = 0x80;

// ---- independent checksum reference: byte array -> 16-bit words, end-around carry after every add ----
function refSum(bytes: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < bytes.length; i += 2) {
    s += (bytes[i] << 8) + (i + 1 < bytes.length ? bytes[i + 1] : 0);
    if (s > 0xffff) s = (s & 0xffff) + 1;
  }
  return s;
}
const u16 = (b: Uint8Array, i: number): number => (b[i] << 8) | b[i + 1];
const u32 = (b: Uint8Array, i: number): number => ((b[i] << 24) | (b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3]) >>> 0;
const ipHlOf = (pkt: Uint8Array): number => (pkt[0] >> 4 === 4 ? (pkt[0] & 15) * 4 : 40);
function pseudo(pkt: Uint8Array): number[] {
  const v4 = pkt[0] >> 4 === 4;
  const tcpLen = pkt.length - ipHlOf(pkt);
  const addrs = Array.from(v4 ? pkt.subarray(12, 20) : pkt.subarray(8, 40));
  return v4 ? [...addrs, 0, 6, tcpLen >> 8, tcpLen & 255] : [...addrs, 0, 0, tcpLen >> 8, tcpLen & 255, 0, 0, 0, 6];
}
/** True if the TCP checksum of the complete packet verifies. */
function tcpOk(pkt: Uint8Array): boolean {
  return refSum([...pseudo(pkt), ...pkt.subarray(ipHlOf(pkt))]) === 0xffff;
}
/** The folded pseudo-header sum, as a partial (NEEDS_CSUM) checksum field holds it. */
const refPseudo = (pkt: Uint8Array): number => refSum(pseudo(pkt));
const ipv4Ok = (pkt: Uint8Array): boolean => refSum(pkt.subarray(0, (pkt[0] & 15) * 4)) === 0xffff;

// ---- packet builders ----
interface Opt {
  v6?: boolean;
  payload: Uint8Array | number; // bytes, or a length for a patterned payload
  seq?: number;
  ack?: number;
  flags?: number;
  opts?: number[]; // TCP options (multiple of 4)
  id?: number;
  ttl?: number;
  tos?: number;
  sport?: number;
  dport?: number;
  win?: number;
  partial?: boolean; // checksum field = pseudo-header sum (TSO style) instead of the full checksum
  src?: number[];
  dst?: number[];
  ipOpts?: number[];
}
const pattern = (n: number, seed = 3): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (i * 7 + seed + (i >> 8)) & 255);
const TS = (val: number, ecr: number): number[] => [1, 1, 8, 10, val >>> 24, (val >> 16) & 255, (val >> 8) & 255, val & 255, ecr >>> 24, (ecr >> 16) & 255, (ecr >> 8) & 255, ecr & 255];

function build(o: Opt): Uint8Array {
  const payload = typeof o.payload === 'number' ? pattern(o.payload) : o.payload;
  const opts = o.opts ?? [];
  const ipOpts = o.ipOpts ?? [];
  const ipHl = o.v6 ? 40 : 20 + ipOpts.length;
  const thl = 20 + opts.length;
  const len = ipHl + thl + payload.length;
  const b = new Uint8Array(len);
  const dv = new DataView(b.buffer);
  if (o.v6) {
    dv.setUint32(0, (6 << 28) | ((o.tos ?? 0) << 20) | 0x12345);
    dv.setUint16(4, len - 40);
    b[6] = 6;
    b[7] = o.ttl ?? 64;
    b.set(o.src ?? [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], 8);
    b.set(o.dst ?? [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2], 24);
  } else {
    b[0] = 0x40 | (ipHl / 4);
    b[1] = o.tos ?? 0;
    dv.setUint16(2, len);
    dv.setUint16(4, o.id ?? 0x1234);
    dv.setUint16(6, 0x4000);
    b[8] = o.ttl ?? 64;
    b[9] = 6;
    b.set(o.src ?? [10, 0, 0, 1], 12);
    b.set(o.dst ?? [10, 0, 0, 2], 16);
    b.set(ipOpts, 20);
    dv.setUint16(10, (~refSum(b.subarray(0, ipHl))) & 0xffff);
  }
  const t = ipHl;
  dv.setUint16(t, o.sport ?? 40000);
  dv.setUint16(t + 2, o.dport ?? 443);
  dv.setUint32(t + 4, o.seq ?? 1000);
  dv.setUint32(t + 8, o.ack ?? 77777);
  b[t + 12] = (thl / 4) << 4;
  b[t + 13] = o.flags ?? ACK;
  dv.setUint16(t + 14, o.win ?? 502);
  b.set(opts, t + 20);
  b.set(payload, t + thl);
  const ps = refPseudo(b);
  dv.setUint16(t + 16, o.partial ? ps : (~refSum([...pseudo(b), ...b.subarray(t)])) & 0xffff);
  return b;
}

const slots = (n: number, size = 70000): Uint8Array[] => Array.from({ length: n }, () => new Uint8Array(size));
const tsoHdr = (pkt: Uint8Array, gsoSize: number): VnetHdr => {
  const ipHl = ipHlOf(pkt);
  return {
    flags: VNET_HDR_F_NEEDS_CSUM,
    gsoType: pkt[0] >> 4 === 4 ? VNET_HDR_GSO_TCPV4 : VNET_HDR_GSO_TCPV6,
    hdrLen: ipHl + (pkt[ipHl + 12] >> 4) * 4,
    gsoSize,
    csumStart: ipHl,
    csumOffset: 16,
  };
};
function split(pkt: Uint8Array, gso: number, outOff = 0): Uint8Array[] {
  const out = slots(64);
  const lens = new Int32Array(64);
  const n = tsoSplit(pkt, 0, pkt.length, tsoHdr(pkt, gso), out, outOff, lens);
  assert.ok(n > 0, `split failed: ${n}`);
  return Array.from({ length: n }, (_, i) => out[i].slice(outOff, outOff + lens[i]));
}
/** Runs packets through a GroTable and returns each written slot as [vnet header, packet]. */
function gro(pkts: Uint8Array[], outOff = 0, opts: { verifyTcp?: boolean; dataValid?: boolean } = {}): { hdr: VnetHdr; pkt: Uint8Array }[] {
  const out = slots(pkts.length + 1);
  const t = new GroTable(out, outOff, 64, opts);
  for (const p of pkts) assert.equal(t.push(p, 0, p.length), true);
  const lens = new Int32Array(out.length);
  const n = t.flush(lens);
  const res = Array.from({ length: n }, (_, i) => ({
    hdr: parseVnetHdr(out[i], outOff)!,
    pkt: out[i].slice(outOff + VNET_HDR_LEN, outOff + lens[i]),
  }));
  // Gather mode must write exactly the same bytes, from the packets where they lie plus payload pieces.
  assert.deepEqual(groGather(pkts, opts), res, 'gather mode differs from copy mode');
  return res;
}
/** The same through a gather-mode GroTable: packets 16 bytes apart in one arena, each output reassembled. */
function groGather(pkts: Uint8Array[], opts: { verifyTcp?: boolean; dataValid?: boolean }): { hdr: VnetHdr; pkt: Uint8Array }[] {
  const offs: number[] = [];
  let end = 0;
  for (const p of pkts) {
    offs.push(end + 16);
    end += 16 + p.length;
  }
  const arena = new Uint8Array(end).fill(0xee);
  pkts.forEach((p, i) => arena.set(p, offs[i]));
  const t = new GroTable({ gather: pkts.length + 1, pieces: 4096 }, 0, 64, opts);
  pkts.forEach((p, i) => assert.equal(t.push(arena, offs[i], p.length), true));
  const lens = new Int32Array(pkts.length + 1);
  const n = t.flush(lens);
  return Array.from({ length: n }, (_, s) => {
    const parts = [arena.slice(t.at[s] - VNET_HDR_LEN, t.at[s] + t.first[s])];
    for (let q = t.pieceHead[s]; q >= 0; q = t.pieceNext[q]) parts.push(arena.slice(t.pieceOff[q], t.pieceOff[q] + t.pieceLen[q]));
    const whole = Uint8Array.from(parts.flatMap((x) => [...x]));
    assert.equal(whole.length, lens[s]);
    return { hdr: parseVnetHdr(whole, 0)!, pkt: whole.slice(VNET_HDR_LEN) };
  });
}

// ---- checksum.ts ----
test('checksum: RFC 1071 example, odd length, IPv4 header, pseudo-header', () => {
  const ex = Uint8Array.from([0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]);
  assert.equal(sum16(ex, 0, 8), 0x2ddf0);
  assert.equal(fold(sum16(ex, 0, 8)), 0xddf2);
  assert.equal(sum16(ex, 1, 3), 0x01f2 + 0x0300);
  assert.equal(fold(0x12345678), 0x68ac);
  assert.equal(fold(0x300000005), 8); // beyond 32 bits
  assert.equal(fold(0x1fffe), 0xffff);
  const big = pattern(65535, 9);
  assert.equal(fold(sum16(big, 0, big.length, 12345)), fold(refSum(big) + 12345));
  assert.equal(fold(sum16(big, 1, 1001)), refSum(big.subarray(1, 1002)));
  // The 32-bit fast path (4-aligned runs of 64 bytes or more, as in packet slots) against the byte-wise
  // reference: every alignment, odd and even lengths, all-0xff words (the largest carries), in a SAB.
  const sab = new Uint8Array(new SharedArrayBuffer(8192));
  for (let i = 0; i < sab.length; i++) sab[i] = (i * 7919 + 13) & 0xff;
  for (const off of [0, 1, 2, 3, 4, 36, 4000]) {
    for (const len of [63, 64, 65, 66, 67, 1400, 1401, 4096]) {
      assert.equal(fold(sum16(sab, off, len, 7)), fold(refSum(sab.subarray(off, off + len)) + 7), `offset ${off}, length ${len}`);
    }
  }
  sab.fill(0xff, 0, 4096);
  assert.equal(fold(sum16(sab, 0, 4096)), refSum(sab.subarray(0, 4096)));
  assert.equal(fold(sum16(sab.subarray(4), 0, 1000)), refSum(sab.subarray(4, 1004)), 'a view with its own byteOffset');
  sab.fill(0, 0, 4096);
  assert.equal(sum16(sab, 0, 4096), 0);
  // Wikipedia's IPv4 header example: checksum 0xb861.
  const h = Uint8Array.from([0x45, 0, 0, 0x73, 0, 0, 0x40, 0, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0, 1, 0xc0, 0xa8, 0, 0xc7]);
  assert.equal(ipv4HeaderChecksum(h, 0), 0xb861);
  h[10] = 0xde; // the stored field is ignored
  assert.equal(ipv4HeaderChecksum(h, 0), 0xb861);
  const p4 = build({ payload: 100 });
  assert.equal(fold(pseudoHeaderSum(6, p4.subarray(12, 16), p4.subarray(16, 20), p4.length - 20)), refPseudo(p4));
  const p6 = build({ v6: true, payload: 100 });
  assert.equal(fold(pseudoHeaderSum(6, p6.subarray(8, 24), p6.subarray(24, 40), p6.length - 40)), refPseudo(p6));
});

// ---- virtio header ----
test('vnet header: write/parse round trip, little-endian, invalid rejected', () => {
  const b = new Uint8Array(14);
  const h: VnetHdr = { flags: 1, gsoType: VNET_HDR_GSO_TCPV6 | VNET_HDR_GSO_ECN, hdrLen: 0x0134, gsoSize: 0x05a8, csumStart: 40, csumOffset: 16 };
  writeVnetHdr(b, 2, h);
  assert.deepEqual(Array.from(b.subarray(2, 12)), [1, 0x84, 0x34, 0x01, 0xa8, 0x05, 40, 0, 16, 0]);
  assert.deepEqual(parseVnetHdr(b, 2), h);
  const into: VnetHdr = { flags: 9, gsoType: 9, hdrLen: 9, gsoSize: 9, csumStart: 9, csumOffset: 9 };
  assert.equal(parseVnetHdr(b, 2, into), into);
  assert.deepEqual(into, h);
  assert.equal(parseVnetHdr(b, 5), null); // truncated
  const bad = (f: number, g: number): VnetHdr | null => parseVnetHdr(Uint8Array.from([f, g, 0, 0, 0, 0, 0, 0, 0, 0]), 0);
  assert.equal(bad(4, 0), null);
  assert.equal(bad(0, 2), null);
  assert.notEqual(bad(VNET_HDR_F_NEEDS_CSUM, VNET_HDR_GSO_UDP_L4), null); // USO
  assert.equal(bad(0, VNET_HDR_GSO_UDP_L4 | VNET_HDR_GSO_ECN), null); // ECN is TCP's
  assert.equal(bad(0, 6), null);
  assert.equal(bad(0, VNET_HDR_GSO_NONE | VNET_HDR_GSO_ECN), null);
  assert.notEqual(bad(VNET_HDR_F_DATA_VALID, VNET_HDR_GSO_UDP), null);
  assert.notEqual(bad(0, 0), null);
});

// ---- TSO split ----
function checkSplit(orig: Uint8Array, segsOut: Uint8Array[], gso: number): void {
  const ipHl = ipHlOf(orig);
  const thl = (orig[ipHl + 12] >> 4) * 4;
  const hl = ipHl + thl;
  const payload = orig.length - hl;
  const v4 = orig[0] >> 4 === 4;
  assert.equal(segsOut.length, Math.ceil(payload / gso));
  const origFlags = orig[ipHl + 13];
  const joined: number[] = [];
  segsOut.forEach((s, i) => {
    const last = i === segsOut.length - 1;
    assert.equal(s.length, hl + (last ? payload - gso * i : gso), `seg ${i} length`);
    if (v4) {
      assert.equal(u16(s, 2), s.length);
      assert.equal(u16(s, 4), (u16(orig, 4) + i) & 0xffff, `seg ${i} id`);
      assert.ok(ipv4Ok(s), `seg ${i} IPv4 checksum`);
      // everything else in the IP header is the original's
      assert.deepEqual([...s.subarray(6, 10), ...s.subarray(12, ipHl)], [...orig.subarray(6, 10), ...orig.subarray(12, ipHl)]);
    } else {
      assert.equal(u16(s, 4), s.length - 40);
      assert.deepEqual([...s.subarray(0, 4), ...s.subarray(6, 40)], [...orig.subarray(0, 4), ...orig.subarray(6, 40)]);
    }
    assert.equal(u32(s, ipHl + 4), (u32(orig, ipHl + 4) + i * gso) >>> 0, `seg ${i} seq`);
    let want = origFlags;
    if (!last) want &= ~(FIN | PSH);
    if (i !== 0) want &= ~CWR;
    assert.equal(s[ipHl + 13], want, `seg ${i} flags`);
    assert.ok(tcpOk(s), `seg ${i} TCP checksum`);
    // ports, ack, data offset, window, urgent, options unchanged
    assert.deepEqual([...s.subarray(ipHl, ipHl + 4), ...s.subarray(ipHl + 8, ipHl + 13), ...s.subarray(ipHl + 14, ipHl + 16), ...s.subarray(ipHl + 18, hl)],
      [...orig.subarray(ipHl, ipHl + 4), ...orig.subarray(ipHl + 8, ipHl + 13), ...orig.subarray(ipHl + 14, ipHl + 16), ...orig.subarray(ipHl + 18, hl)]);
    joined.push(...s.subarray(hl));
  });
  assert.deepEqual(Uint8Array.from(joined), orig.subarray(hl));
}

test('tsoSplit IPv4 with timestamps, FIN|PSH|CWR, uneven tail, seq wrap, ID wrap', () => {
  const orig = build({ payload: 3500, opts: TS(0xdeadbeef, 0x01020304), flags: ACK | PSH | FIN | CWR, seq: 0xfffffa00, id: 0xffff, partial: true });
  const segs = split(orig, 1448);
  assert.equal(segs.length, 3);
  checkSplit(orig, segs, 1448);
  assert.equal(segs[0][20 + 13], ACK | CWR);
  assert.equal(segs[1][20 + 13], ACK);
  assert.equal(segs[2][20 + 13], ACK | PSH | FIN);
  assert.equal(u16(segs[1], 4), 0); // ID wrapped
  assert.equal(u32(segs[1], 24), (0xfffffa00 + 1448) >>> 0); // seq wrapped
});

test('tsoSplit IPv6 without options, exact multiple, and with options', () => {
  const a = build({ v6: true, payload: 4 * 1220, flags: ACK | PSH, partial: true });
  const sa = split(a, 1220);
  assert.equal(sa.length, 4);
  checkSplit(a, sa, 1220);
  const b = build({ v6: true, payload: 60000, flags: ACK | FIN, opts: [1, 1, ...TS(5, 6).slice(2), 1, 1], partial: true, tos: 0x2e });
  const sb = split(b, 1208);
  assert.equal(sb.length, 50);
  checkSplit(b, sb, 1208);
});

test('tsoSplit writes after outOff and leaves the headroom alone; a single segment works', () => {
  const orig = build({ payload: 1000, partial: true });
  const out = [new Uint8Array(2000).fill(0xaa)];
  const lens = new Int32Array(1);
  assert.equal(tsoSplit(orig, 0, orig.length, tsoHdr(orig, 1448), out, 16, lens), 1);
  assert.equal(lens[0], orig.length);
  assert.ok(out[0].subarray(0, 16).every((x) => x === 0xaa));
  checkSplit(orig, [out[0].slice(16, 16 + lens[0])], 1448);
  // and from a nonzero source offset
  const src = new Uint8Array(orig.length + 7);
  src.set(orig, 7);
  const out2 = slots(4);
  const lens2 = new Int32Array(4);
  assert.equal(tsoSplit(src, 7, orig.length, tsoHdr(orig, 400), out2, 0, lens2), 3);
  checkSplit(orig, [0, 1, 2].map((i) => out2[i].slice(0, lens2[i])), 400);
});

test('tsoSplit rejects malformed input', () => {
  const good = build({ payload: 3000, partial: true });
  const h = tsoHdr(good, 1000);
  const run = (pkt: Uint8Array, hdr: VnetHdr = h, n = 8, size = 2000, len = pkt.length): number =>
    tsoSplit(pkt, 0, len, hdr, slots(n, size), 0, new Int32Array(n));
  assert.equal(run(good), 3);
  assert.equal(run(good, { ...h, gsoSize: 0 }), -1);
  assert.equal(run(good, { ...h, gsoType: VNET_HDR_GSO_TCPV6 }), -1); // version mismatch
  assert.equal(run(good, { ...h, gsoType: VNET_HDR_GSO_UDP }), -1);
  assert.equal(run(good, { ...h, csumStart: 24 }), -1);
  assert.equal(run(good, { ...h, csumOffset: 6 }), -1);
  assert.equal(run(good, h, 2), -1); // more segments than outputs
  assert.equal(run(good, h, 8, 1000), -1); // slots too small
  assert.equal(run(good, h, 8, 2000, good.length - 1), -1); // IP total length disagrees
  const udp = good.slice();
  udp[9] = 17;
  assert.equal(run(udp), -1);
  const frag = good.slice();
  frag[6] |= 0x20;
  assert.equal(run(frag), -1);
  const thl = good.slice();
  thl[32] = 0x40; // data offset 16 bytes
  assert.equal(run(thl), -1);
  const hdrOnly = build({ payload: 0, partial: true });
  assert.equal(run(hdrOnly), -1); // no payload
  const beyond = build({ payload: 0, partial: true, opts: TS(1, 2) });
  assert.equal(run(beyond.subarray(0, 44), h, 8, 2000, 44), -1); // truncated before the TCP header ends
  const v6 = build({ v6: true, payload: 100, partial: true });
  const v6ext = v6.slice();
  v6ext[6] = 0; // hop-by-hop header: not supported
  assert.equal(run(v6ext, tsoHdr(v6, 50)), -1);
  assert.equal(run(v6, tsoHdr(v6, 50)), 2);
  assert.equal(tsoSplit(good, 10, good.length, h, slots(8), 0, new Int32Array(8)), -1); // beyond src
});

// ---- USO split (UDP_SEGMENT super-packets) ----
/** An IPv4 or IPv6 UDP packet from 4000 to 5000 whose checksum field holds the pseudo-header sum (USO style). */
function buildUdp(o: { v6?: boolean; payload: number; id?: number }): Uint8Array {
  const ipHl = o.v6 ? 40 : 20;
  const pay = pattern(o.payload, 11);
  const b = new Uint8Array(ipHl + 8 + pay.length);
  const dv = new DataView(b.buffer);
  if (o.v6) {
    b[0] = 0x60;
    dv.setUint16(4, b.length - 40);
    b[6] = 17;
    b[7] = 64;
    b.set([0x20, 0x01, 0x0d, 0xb8, ...new Array<number>(11).fill(0), 1], 8);
    b.set([0x20, 0x01, 0x0d, 0xb8, ...new Array<number>(11).fill(0), 2], 24);
  } else {
    b[0] = 0x45;
    dv.setUint16(2, b.length);
    dv.setUint16(4, o.id ?? 0x1234);
    b[8] = 64;
    b[9] = 17;
    b.set([192, 0, 2, 1, 198, 51, 100, 9], 12);
    dv.setUint16(10, (~refSum(b.subarray(0, 20))) & 0xffff);
  }
  dv.setUint16(ipHl, 4000);
  dv.setUint16(ipHl + 2, 5000);
  dv.setUint16(ipHl + 4, b.length - ipHl);
  b.set(pay, ipHl + 8);
  dv.setUint16(ipHl + 6, refSum(pseudoUdp(b)));
  return b;
}
function pseudoUdp(pkt: Uint8Array): number[] {
  const v4 = pkt[0] >> 4 === 4;
  const l = pkt.length - ipHlOf(pkt);
  const addrs = Array.from(v4 ? pkt.subarray(12, 20) : pkt.subarray(8, 40));
  return v4 ? [...addrs, 0, 17, l >> 8, l & 255] : [...addrs, 0, 0, l >> 8, l & 255, 0, 0, 0, 17];
}
const usoHdr = (pkt: Uint8Array, gsoSize: number): VnetHdr => ({
  flags: VNET_HDR_F_NEEDS_CSUM, gsoType: VNET_HDR_GSO_UDP_L4, hdrLen: ipHlOf(pkt) + 8, gsoSize, csumStart: ipHlOf(pkt), csumOffset: 6,
});
/** Every datagram a valid packet of its own (lengths, IDs, checksums, ports) and the payloads in order. */
function checkUdpSplit(orig: Uint8Array, segs: Uint8Array[], gso: number): void {
  const ipHl = ipHlOf(orig);
  const v4 = ipHl === 20;
  assert.equal(segs.length, Math.ceil((orig.length - ipHl - 8) / gso));
  const joined: number[] = [];
  segs.forEach((seg, i) => {
    if (v4) {
      assert.ok(ipv4Ok(seg), `segment ${i}: IPv4 header checksum`);
      assert.equal(u16(seg, 2), seg.length);
      assert.equal(u16(seg, 4), (u16(orig, 4) + i) & 0xffff);
    } else {
      assert.equal(u16(seg, 4), seg.length - 40);
    }
    assert.deepEqual(seg.subarray(ipHl, ipHl + 4), orig.subarray(ipHl, ipHl + 4), 'ports');
    assert.equal(u16(seg, ipHl + 4), seg.length - ipHl, `segment ${i}: UDP length`);
    assert.notEqual(u16(seg, ipHl + 6), 0, 'a UDP checksum is present');
    assert.equal(refSum([...pseudoUdp(seg), ...seg.subarray(ipHl)]), 0xffff, `segment ${i}: UDP checksum`);
    assert.ok(seg.length - ipHl - 8 <= gso);
    joined.push(...seg.subarray(ipHl + 8));
  });
  assert.deepEqual(Uint8Array.from(joined), orig.subarray(ipHl + 8));
}

test('USO: UDP super-packets split into datagrams, IPv4 with an uneven tail and IPv6, in both layouts', () => {
  for (const { pkt, gso } of [
    { pkt: buildUdp({ payload: 3000, id: 0xfffe }), gso: 1200 },
    { pkt: buildUdp({ v6: true, payload: 4 * 1180 }), gso: 1180 },
    { pkt: buildUdp({ payload: 60000 }), gso: 1392 },
  ]) {
    const h = usoHdr(pkt, gso);
    const out = slots(64, 2048);
    const lens = new Int32Array(64);
    const n = tsoSplit(pkt, 0, pkt.length, h, out, 16, lens);
    const segs = Array.from({ length: n }, (_, i) => out[i].slice(16, 16 + lens[i]));
    checkUdpSplit(pkt, segs, gso);
    const { buf, at } = scatter(pkt, h.hdrLen, gso, 64);
    const lens2 = new Int32Array(64);
    assert.equal(tsoSplitScattered(buf, at, pkt.length, h, h.hdrLen, gso, lens2), n);
    for (let i = 0; i < n; i++) assert.deepEqual(buf.slice(at[i], at[i] + lens2[i]), segs[i], `scattered segment ${i}`);
  }
});

test('USO: malformed UDP super-packets are refused', () => {
  const pkt = buildUdp({ payload: 3000 });
  const h = usoHdr(pkt, 1200);
  const run = (p: Uint8Array, hdr: VnetHdr = h, len = p.length): number => tsoSplit(p, 0, len, hdr, slots(8, 2048), 0, new Int32Array(8));
  assert.equal(run(pkt), 3);
  assert.equal(run(pkt, { ...h, csumOffset: 16 }), -1); // TCP's checksum offset
  assert.equal(run(pkt, { ...h, gsoSize: 0 }), -1);
  assert.equal(run(pkt, h, pkt.length - 1), -1); // IP length disagrees
  assert.equal(run(build({ payload: 3000, partial: true }), { ...h, csumOffset: 16 }), -1); // TCP under a UDP type
  const frag = pkt.slice();
  frag[6] |= 0x20;
  assert.equal(run(frag), -1);
  assert.equal(run(buildUdp({ payload: 0 })), -1); // no payload
});

/** A super-packet as readv(2) scatters it into slots laid out for (hl, gso): see tsoSplitScattered. */
function scatter(pkt: Uint8Array, hl: number, gso: number, count: number, slotSize = 2048, headroom = 16): { buf: Uint8Array; at: Int32Array } {
  const buf = new Uint8Array(count * slotSize).fill(0x5a);
  const at = Int32Array.from({ length: count }, (_, i) => i * slotSize + headroom);
  buf.set(pkt.subarray(0, hl + gso), at[0]);
  for (let i = 1, p = hl + gso; p < pkt.length; i++, p += gso) buf.set(pkt.subarray(p, Math.min(p + gso, pkt.length)), at[i] + hl);
  return { buf, at };
}

test('tsoSplitScattered gives exactly what tsoSplit gives, copying only headers', () => {
  const cases = [
    { pkt: build({ payload: 3500, opts: TS(0xdeadbeef, 7), flags: ACK | PSH | FIN | CWR, seq: 0xfffffa00, id: 0xffff, partial: true }), gso: 1368 },
    { pkt: build({ v6: true, payload: 60000, flags: ACK | PSH, opts: TS(5, 6), partial: true }), gso: 1348 },
    { pkt: build({ payload: 4 * 1000, flags: ACK, partial: true }), gso: 1000 }, // exact multiple
    { pkt: build({ payload: 500, flags: ACK | PSH, partial: true }), gso: 1380 }, // one short segment
  ];
  for (const { pkt, gso } of cases) {
    const hdr = tsoHdr(pkt, gso);
    const want = split(pkt, gso);
    const { buf, at } = scatter(pkt, hdr.hdrLen, gso, 64);
    const lens = new Int32Array(64);
    const n = tsoSplitScattered(buf, at, pkt.length, hdr, hdr.hdrLen, gso, lens);
    assert.equal(n, want.length);
    assert.deepEqual(lastSplit, { hl: hdr.hdrLen, gso }, 'the layout the reader learns');
    for (let i = 0; i < n; i++) assert.deepEqual(buf.slice(at[i], at[i] + lens[i]), want[i], `segment ${i}`);
    checkSplit(pkt, want, gso);
    assert.ok(buf.subarray(at[0] - 16, at[0]).every((x) => x === 0x5a), 'headroom untouched');
  }
});

test('tsoSplitScattered: a non-GSO packet in the first piece, layout mismatches untouched, malformed input', () => {
  const small = build({ payload: 100, flags: ACK | PSH, partial: true });
  const csum = { flags: VNET_HDR_F_NEEDS_CSUM, gsoType: VNET_HDR_GSO_NONE, hdrLen: 0, gsoSize: 0, csumStart: 20, csumOffset: 16 };
  let { buf, at } = scatter(small, 52, 1368, 4);
  const lens = new Int32Array(4);
  assert.equal(tsoSplitScattered(buf, at, small.length, csum, 52, 1368, lens), 1);
  assert.equal(lens[0], small.length);
  assert.equal(lastSplit.gso, 0, 'a plain packet teaches no layout');
  checkSplit(small, [buf.slice(at[0], at[0] + lens[0])], 1448); // checksum completed in place
  // Longer than the first piece: its tail sits in the next slot, so the caller must gather it.
  const big = build({ payload: 1500 });
  ({ buf, at } = scatter(big, 20, 1000, 4));
  const before = buf.slice();
  const none = { ...csum, flags: 0 };
  assert.equal(tsoSplitScattered(buf, at, big.length, none, 20, 1000, lens), TSO_LAYOUT_MISMATCH);
  assert.deepEqual(buf, before);
  // Another gso_size or header length than the iovecs assumed: nothing modified.
  const pkt = build({ payload: 5000, opts: TS(1, 2), partial: true });
  const h = tsoHdr(pkt, 1368);
  ({ buf, at } = scatter(pkt, 52, 1368, 8));
  const orig = buf.slice();
  assert.equal(tsoSplitScattered(buf, at, pkt.length, h, 52, 1400, lens), TSO_LAYOUT_MISMATCH);
  assert.equal(tsoSplitScattered(buf, at, pkt.length, h, 40, 1368, lens), TSO_LAYOUT_MISMATCH);
  assert.deepEqual(buf, orig);
  // Malformed: IP length disagreeing with the read, UDP GSO, too few slots for the segments.
  assert.equal(tsoSplitScattered(buf, at, pkt.length - 1, h, 52, 1368, lens), -1);
  assert.equal(tsoSplitScattered(buf, at, pkt.length, { ...h, gsoType: VNET_HDR_GSO_UDP }, 52, 1368, lens), -1);
  assert.equal(tsoSplitScattered(buf, at.subarray(0, 2), pkt.length, h, 52, 1368, lens), -1);
  assert.deepEqual(buf, orig);
  assert.equal(lastSplit.gso, 0, 'a refused packet teaches no layout');
  // tsoSplit reports the same: a valid super-packet's layout, then nothing for a malformed one.
  const outs = slots(8, 2048);
  assert.equal(tsoSplit(pkt, 0, pkt.length, h, outs, 16, lens), 4);
  assert.deepEqual(lastSplit, { hl: 52, gso: 1368 });
  assert.equal(tsoSplit(pkt, 0, pkt.length - 1, h, outs, 16, lens), -1);
  assert.equal(lastSplit.gso, 0);
});

test('tsoSplit gso NONE: completes a partial checksum in place, or copies unchanged', () => {
  const p = build({ payload: 333, partial: true, opts: TS(1, 2) });
  assert.equal(tcpOk(p), false);
  const src = p.slice();
  const out = slots(1, 1000);
  const lens = new Int32Array(1);
  const h: VnetHdr = { flags: VNET_HDR_F_NEEDS_CSUM, gsoType: VNET_HDR_GSO_NONE, hdrLen: 0, gsoSize: 0, csumStart: 20, csumOffset: 16 };
  assert.equal(tsoSplit(src, 0, src.length, h, out, 4, lens), 1);
  assert.equal(lens[0], p.length);
  const got = out[0].slice(4, 4 + p.length);
  assert.ok(tcpOk(got));
  assert.deepEqual(got, build({ payload: 333, opts: TS(1, 2) }));
  assert.deepEqual(src, got); // completed in place
  // no NEEDS_CSUM: passed through byte for byte
  const full = build({ v6: true, payload: 50 });
  assert.equal(tsoSplit(full, 0, full.length, { ...h, flags: 0 }, out, 0, lens), 1);
  assert.deepEqual(out[0].slice(0, lens[0]), full);
  // offsets out of range
  assert.equal(tsoSplit(p.slice(), 0, p.length, { ...h, csumStart: p.length - 1 }, out, 0, lens), -1);
  assert.equal(completeChecksum(p.slice(), 0, p.length, 20, p.length), false);
  // UDP-style: a computed 0 is sent as 0xffff
  const z = new Uint8Array([0, 0, 0, 0, 0xff, 0xff]);
  assert.equal(completeChecksum(z, 0, 6, 0, 0), true);
  assert.deepEqual(Array.from(z.subarray(0, 2)), [0xff, 0xff]);
});

// ---- GRO ----
function seg(o: Partial<Opt> & { seq: number; payload: Uint8Array | number }): Uint8Array {
  return build({ opts: TS(100, 200), ...o });
}
function checkCoalesced(r: { hdr: VnetHdr; pkt: Uint8Array }, gsoSize: number): void {
  const pkt = r.pkt;
  const v4 = pkt[0] >> 4 === 4;
  const ipHl = ipHlOf(pkt);
  assert.equal(r.hdr.flags, VNET_HDR_F_NEEDS_CSUM);
  assert.equal(r.hdr.gsoType, v4 ? VNET_HDR_GSO_TCPV4 : VNET_HDR_GSO_TCPV6);
  assert.equal(r.hdr.gsoSize, gsoSize);
  assert.equal(r.hdr.hdrLen, ipHl + (pkt[ipHl + 12] >> 4) * 4);
  assert.equal(r.hdr.csumStart, ipHl);
  assert.equal(r.hdr.csumOffset, 16);
  if (v4) {
    assert.equal(u16(pkt, 2), pkt.length);
    assert.ok(ipv4Ok(pkt));
  } else {
    assert.equal(u16(pkt, 4), pkt.length - 40);
  }
  assert.equal(u16(pkt, ipHl + 16), refPseudo(pkt)); // partial: pseudo-header sum
  const done = pkt.slice();
  assert.ok(completeChecksum(done, 0, done.length, r.hdr.csumStart, r.hdr.csumOffset));
  assert.ok(tcpOk(done), 'completed checksum verifies');
}

test('GRO coalesces a run of IPv4 segments into one super-packet', () => {
  const data = pattern(1448 * 3 + 500, 11);
  const pkts = [0, 1, 2, 3].map((i) =>
    seg({ seq: 5000 + i * 1448, payload: data.subarray(i * 1448, Math.min(data.length, (i + 1) * 1448)), id: 7 + i, flags: i === 3 ? ACK | PSH : ACK }),
  );
  const r = gro(pkts, 12);
  assert.equal(r.length, 1);
  checkCoalesced(r[0], 1448);
  const p = r[0].pkt;
  assert.equal(p.length, 20 + 32 + data.length);
  assert.deepEqual(p.subarray(52), data);
  assert.equal(u32(p, 24), 5000);
  assert.equal(p[33], ACK | PSH);
  assert.equal(u16(p, 4), 7); // the first ID
});

test('GRO coalesces IPv6 segments, keeps two interleaved flows apart', () => {
  const A = (i: number, extra: Partial<Opt> = {}): Uint8Array => seg({ v6: true, seq: 1 + i * 1200, payload: 1200, ...extra });
  const B = (i: number): Uint8Array => seg({ v6: true, seq: 9 + i * 1200, payload: 1200, sport: 40001 });
  const r = gro([A(0), B(0), A(1), B(1), A(2), B(2)]);
  assert.equal(r.length, 2);
  for (const x of r) {
    checkCoalesced(x, 1200);
    assert.equal(x.pkt.length, 40 + 32 + 3600);
  }
  assert.equal(u16(r[0].pkt, 40), 40000);
  assert.equal(u16(r[1].pkt, 40), 40001);
});

test('GRO: each rule ends coalescing, order within a flow is kept', () => {
  const P = 1000;
  const S = (i: number, extra: Partial<Opt> = {}): Uint8Array => seg({ seq: 100 + i * P, payload: P, ...extra });
  const shape = (pkts: Uint8Array[]): number[] => gro(pkts).map((x) => x.hdr.gsoType === 0 ? 1 : (x.pkt.length - 52) / P);
  const seqs = (pkts: Uint8Array[]): number[] => gro(pkts).map((x) => u32(x.pkt, 24));
  assert.deepEqual(shape([S(0), S(1), S(2)]), [3]); // baseline
  // flow change: different dst address / port / TTL / TOS split the run
  assert.deepEqual(shape([S(0), S(1, { dst: [10, 0, 0, 3] }), S(2)]), [1, 1, 1]);
  assert.deepEqual(shape([S(0), S(1, { ttl: 63 }), S(2)]), [1, 1, 1]);
  assert.deepEqual(shape([S(0), S(1, { tos: 4 }), S(2)]), [1, 1, 1]);
  // out-of-order seq
  assert.deepEqual(seqs([S(0), S(2), S(1)]), [100, 100 + 2 * P, 100 + P]);
  // flags other than ACK/PSH: SYN, RST, URG, FIN, CWR pass through and the next packet does not join the earlier one
  for (const f of [SYN | ACK, RST | ACK, URG | ACK, FIN | ACK, CWR | ACK]) {
    const r = gro([S(0), S(1, { flags: f }), S(2)]);
    assert.deepEqual(r.map((x) => u32(x.pkt, 24)), [100, 100 + P, 100 + 2 * P], `flag ${f}`);
    assert.ok(r.every((x) => x.hdr.gsoType === 0 && x.hdr.flags === 0));
  }
  // PSH is allowed on the last one only: it closes the super-packet
  assert.deepEqual(shape([S(0), S(1, { flags: ACK | PSH }), S(2), S(3)]), [2, 2]);
  // a short segment ends the run (it joins as last); a short first segment sets gso_size, a larger one can't follow
  assert.deepEqual(shape([S(0), seg({ seq: 100 + P, payload: 10 }), seg({ seq: 110 + P, payload: P })]).length, 2);
  const short = gro([seg({ seq: 100, payload: 10 }), seg({ seq: 110, payload: P })]);
  assert.equal(short.length, 2);
  // different ACK, window, timestamp value
  assert.deepEqual(shape([S(0), S(1, { ack: 1 }), S(2, { ack: 1 })]), [1, 2]);
  assert.deepEqual(shape([S(0), S(1, { win: 1 })]), [1, 1]);
  assert.deepEqual(shape([S(0), S(1, { opts: TS(101, 200) })]), [1, 1]);
  assert.deepEqual(shape([S(0), S(1, { opts: [] })]), [1, 1]);
  // IPv4 options: never coalesced
  assert.deepEqual(shape([S(0, { ipOpts: [1, 1, 1, 0] }), S(1, { ipOpts: [1, 1, 1, 0] })]), [1, 1]);
});

test('GRO passes through non-TCP, pure ACKs and corrupt packets unchanged with a zero header', () => {
  const udp = build({ payload: 100 });
  udp[9] = 17;
  const pureAck = seg({ seq: 100, payload: 0 });
  const corrupt = seg({ seq: 100, payload: 500 });
  corrupt[100] ^= 1;
  const badIp = seg({ seq: 100, payload: 500 });
  badIp[10] ^= 1;
  const junk = Uint8Array.from([0x11, 2, 3]);
  for (const group of [[udp, udp], [pureAck, pureAck], [corrupt, seg({ seq: 600, payload: 500 })], [badIp, seg({ seq: 600, payload: 500 })], [junk]]) {
    const r = gro(group);
    assert.equal(r.length, group.length);
    r.forEach((x, i) => {
      assert.deepEqual(x.hdr, { flags: 0, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 0, csumOffset: 0 });
      assert.deepEqual(x.pkt, group[i]);
    });
  }
});

test('GRO respects 65535 bytes, slot capacity and the slot count', () => {
  const pkts = Array.from({ length: 100 }, (_, i) => seg({ seq: i * 1448, payload: 1448 }));
  const r = gro(pkts);
  assert.ok(r.length > 1);
  let total = 0;
  for (const x of r) {
    assert.ok(x.pkt.length <= 65535);
    if (x.hdr.gsoType !== 0) checkCoalesced(x, 1448);
    total += x.pkt.length - 52;
  }
  assert.equal(total, 100 * 1448);
  assert.equal(r[0].pkt.length, 52 + 45 * 1448); // 45 segments fit, 46 would not

  // small slots coalesce less
  const out = slots(4, 4000);
  const t = new GroTable(out);
  for (let i = 0; i < 4; i++) assert.ok(t.push(pkts[i], 0, pkts[i].length));
  assert.equal(t.count, 2);
  const lens = new Int32Array(4);
  assert.equal(t.flush(lens), 2);
  assert.equal(lens[0], VNET_HDR_LEN + 52 + 2 * 1448);
  // out of slots: push refuses, flush, then it goes in
  const t2 = new GroTable(slots(1, 2000));
  assert.ok(t2.push(pkts[0], 0, pkts[0].length));
  assert.ok(t2.push(pkts[2], 0, pkts[2].length) === false);
  assert.equal(t2.flush(lens), 1);
  assert.ok(t2.push(pkts[2], 0, pkts[2].length));
  assert.throws(() => new GroTable(slots(1, 100)).push(pkts[0], 0, pkts[0].length), RangeError);
});

test('split then coalesce round-trips to the original super-packet and header (IPv4, IPv6)', () => {
  const cases: [Uint8Array, number][] = [
    [build({ payload: 5000, opts: TS(0x11223344, 0x55667788), flags: ACK | PSH, id: 0xfffe, seq: 0xffffff00, partial: true }), 1448],
    [build({ payload: 3000, partial: true }), 1000],
    [build({ v6: true, payload: 64000, opts: TS(9, 9), flags: ACK | PSH, partial: true }), 1388],
    [build({ v6: true, payload: 2401, partial: true }), 1200],
  ];
  for (const [orig, gso] of cases) {
    const segsOut = split(orig, gso, 16);
    checkSplit(orig, segsOut, gso);
    const r = gro(segsOut);
    assert.equal(r.length, 1);
    assert.deepEqual(r[0].pkt, orig);
    assert.deepEqual(r[0].hdr, tsoHdr(orig, gso));
  }
});

test('GRO for a WireGuard receive path: TCP checksums not re-verified, IPv4 headers still are, DATA_VALID on singles', () => {
  const opts = { verifyTcp: false, dataValid: true };
  // A segment whose TCP checksum is off still joins (the AEAD vouched for its bytes), and the super-packet's
  // partial checksum is computed from scratch, so it completes to a valid one over the bytes as they are.
  const a = seg({ seq: 1000, payload: 700 });
  const b = seg({ seq: 1700, payload: 700 });
  b[60] ^= 1;
  const r = gro([a, b], 0, opts);
  assert.equal(r.length, 1);
  checkCoalesced(r[0], 700);
  // With verification on (the default) the same pair stays apart.
  assert.equal(gro([a, b]).length, 2);
  // A bad IPv4 header checksum never joins: the stack checks it whatever the virtio header claims.
  const badIp = seg({ seq: 2400, payload: 700 });
  badIp[10] ^= 1;
  const r2 = gro([seg({ seq: 1700, payload: 700 }), badIp], 0, opts);
  assert.equal(r2.length, 2);
  assert.deepEqual(r2[1].pkt, badIp);
  // Single packets pass through unchanged, marked DATA_VALID.
  const udp = build({ payload: 100 });
  udp[9] = 17;
  const one = gro([udp], 0, opts);
  assert.equal(one[0].hdr.flags, VNET_HDR_F_DATA_VALID);
  assert.equal(one[0].hdr.gsoType, 0);
  assert.deepEqual(one[0].pkt, udp);
});
