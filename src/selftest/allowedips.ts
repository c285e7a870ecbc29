// The kernel's allowed-IPs selftest, run against AllowedIPs: every case of selftests.md "Allowed IPs" (static
// table, removal by peer, nested and single-prefix removal, masked read-back, deep trie) and the randomised
// comparison with a naive list. The addresses are table data only: nothing here touches the network.

import { AllowedIPs } from '../dataplane/allowedips.js';
import { WgError, Errno } from '../errors.js';
import { formatPrefix, maskPrefix, parseIP, parsePrefix } from '../ip.js';
import type { SelftestResult } from './result.js';

const MAX_FAILURES_REPORTED = 10;
const NUM_PEERS = 2000;
const NUM_RAND_ROUTES = 400;
const NUM_MUTATED_ROUTES = 100;
/** Per family, over the whole randomised part: a kernel round is 1.2 M; this keeps CI near 10 s on 2 cores. */
const DEFAULT_RANDOM_QUERIES = 100_000;
const DEFAULT_SEED = 0x5eed_a11d;

// Inserts and lookups in the order of selftests.md, as [peer, text].
const INSERTS: ReadonlyArray<readonly [string, string]> = [
  ['a', '192.168.4.0/24'], ['b', '192.168.4.4/32'], ['c', '192.168.0.0/16'], ['d', '192.95.5.64/27'],
  ['c', '192.95.5.65/27'], ['d', '2607:5300:6000:6b00::c05f:543/128'], ['c', '2607:5300:6000:6b00::/64'],
  ['e', '0.0.0.0/0'], ['e', '::/0'], ['f', '::/0'], ['g', '2404:6800::/32'],
  ['h', '2404:6800:4004:800:dead:beef:dead:beef/64'], ['a', '2404:6800:4004:800:dead:beef:dead:beef/128'],
  ['c', '2444:6800:40e4:800:deae:beef:def:beef/128'], ['b', '2444:6800:f0e4:800:eeae:beef::/98'],
  ['g', '64.15.112.0/20'], ['h', '64.15.123.211/25'], ['a', '10.0.0.0/25'], ['b', '10.0.0.128/25'],
  ['a', '10.1.0.0/30'], ['b', '10.1.0.4/30'], ['c', '10.1.0.8/29'], ['d', '10.1.0.16/29'],
];
const LOOKUPS: ReadonlyArray<readonly [string, string]> = [
  ['a', '192.168.4.20'], ['a', '192.168.4.0'], ['b', '192.168.4.4'], ['c', '192.168.200.182'],
  ['c', '192.95.5.68'], ['e', '192.95.5.96'], ['g', '64.15.116.26'], ['g', '64.15.127.3'], ['g', '64.15.123.1'],
  ['h', '64.15.123.128'], ['h', '64.15.123.129'], ['a', '10.0.0.52'], ['b', '10.0.0.220'], ['a', '10.1.0.2'],
  ['b', '10.1.0.6'], ['c', '10.1.0.10'], ['d', '10.1.0.20'], ['d', '2607:5300:6000:6b00::c05f:543'],
  ['c', '2607:5300:6000:6b00::c02e:1ee'], ['f', '2607:5300:6000:6b01::'], ['g', '2404:6800:4004:806::1006'],
  ['g', '2404:6800:4004:806:0:1234:0:5678'], ['f', '2404:67ff:4004:806:0:1234:0:5678'],
  ['f', '2404:6801:4004:806:0:1234:0:5678'], ['h', '2404:6800:4004:800:0:1234:0:5678'], ['h', '2404:6800:4004:800::'],
  ['h', '2404:6800:4004:800:1010:1010:1010:1010'], ['a', '2404:6800:4004:800:dead:beef:dead:beef'],
];
// Masked read-back: [given, expected].
const READBACK: ReadonlyArray<readonly [string, string]> = [
  ['192.95.5.93/27', '192.95.5.64/27'],
  ['10.1.0.20/29', '10.1.0.16/29'],
  ['2607:5300:6d8a:6bf8:dab1:f1df:c05f:1523/83', '2607:5300:6d8a:6bf8:dab1:e000::/83'],
  ['2607:5300:6d8a:6bf8:dab1:f1df:c05f:1523/21', '2607:5000::/21'],
];

class Checks {
  checks = 0;
  failed = 0;
  failures: string[] = [];
  check(ok: boolean, what: () => string): boolean {
    this.checks++;
    if (!ok) {
      this.failed++;
      if (this.failures.length < MAX_FAILURES_REPORTED) this.failures.push(what());
    }
    return ok;
  }
}

function ip(s: string): Uint8Array {
  const b = parseIP(s);
  if (b === null) throw new Error(`selftest table has a bad address: ${s}`);
  return b;
}

function prefix(s: string): { addr: Uint8Array; cidr: number } {
  const p = parsePrefix(s);
  if (p === null) throw new Error(`selftest table has a bad prefix: ${s}`);
  return p;
}

const show = (p: unknown): string => (p === undefined ? 'none' : String(p));

function throwsEinval(f: () => unknown): boolean {
  try {
    f();
    return false;
  } catch (e) {
    return e instanceof WgError && e.errno === Errno.EINVAL;
  }
}

/** Puts `addr` into a packet-sized buffer at a header-like offset so lookupAt is tested off byte 0. */
function lookupInPacket<P>(t: AllowedIPs<P>, addr: Uint8Array): P | undefined {
  const buf = new Uint8Array(64).fill(0xa5);
  const off = addr.length === 4 ? 16 : 24; // IPv4 / IPv6 destination address offsets
  buf.set(addr, off);
  return t.lookupAt(buf, off, addr.length as 4 | 16);
}

function staticTable(c: Checks): void {
  const t = new AllowedIPs<string>();
  for (const [peer, text] of INSERTS) {
    const p = prefix(text);
    let err = '';
    try {
      t.insert(p.addr, p.cidr, peer);
    } catch (e) {
      err = String(e);
    }
    c.check(err === '', () => `insert ${peer} ${text} threw ${err}`);
  }
  for (const [want, text] of LOOKUPS) {
    const a = ip(text);
    const got = t.lookup(a);
    const at = lookupInPacket(t, a);
    c.check(got === want && at === want, () => `lookup ${text}: want ${want}, got ${show(got)} / lookupAt ${show(at)}`);
  }
  // The two moves must also move the prefixes between the peers' lists.
  const list = (peer: string): string => t.entriesForPeer(peer).map((e) => formatPrefix(e.addr, e.cidr)).join(' ');
  const d = list('d');
  c.check(d === '10.1.0.16/29 2607:5300:6000:6b00::c05f:543/128', () => `peer d lists "${d}" after its /27 moved`);
  const e = list('e');
  c.check(e === '0.0.0.0/0', () => `peer e lists "${e}" after ::/0 moved to f`);
}

function removalByPeer(c: Checks): void {
  const t = new AllowedIPs<string>();
  const addrs = ['1.0.0.0', '64.0.0.0', '128.0.0.0', '192.0.0.0', '255.0.0.0'].map(ip);
  for (const a of addrs) t.insert(a, 32, 'a');
  t.removeByPeer('a');
  for (const a of addrs) c.check(t.lookup(a) !== 'a', () => `${a.join('.')} still resolves to a after removeByPeer`);
  c.check(t.isEmpty(), () => 'table not empty after removing the only peer');

  const n = new AllowedIPs<string>();
  n.insert(ip('192.168.0.0'), 16, 'a');
  n.insert(ip('192.168.0.0'), 24, 'a');
  n.removeByPeer('a');
  c.check(n.lookup(ip('192.168.0.1')) === undefined && n.isEmpty(), () => 'nested /16 + /24 survived removeByPeer');
}

function singleRemoval(c: Checks): void {
  const t = new AllowedIPs<string | null>();
  const net = ip('192.0.0.0');
  t.insert(net, 24, 'a');
  const still = (): boolean => t.lookup(ip('192.0.0.1')) === 'a';
  c.check(!t.remove(net, 32, 'a') && still(), () => 'removing 192.0.0.0/32 touched a\'s 192.0.0.0/24');
  c.check(!t.remove(net, 24, 'b') && still(), () => 'another peer removed a\'s 192.0.0.0/24');
  c.check(!t.remove(net, 24, null) && still(), () => 'no peer removed a\'s 192.0.0.0/24');
  c.check(throwsEinval(() => t.remove(net, 33, 'a')), () => 'remove with cidr 33 (v4) is not an EINVAL error');
  c.check(throwsEinval(() => t.remove(ip('::'), 129, 'a')), () => 'remove with cidr 129 (v6) is not an EINVAL error');
  c.check(throwsEinval(() => t.insert(net, 33, 'a')), () => 'insert with cidr 33 (v4) is not an EINVAL error');
  c.check(throwsEinval(() => t.insert(ip('::'), 129, 'a')), () => 'insert with cidr 129 (v6) is not an EINVAL error');
  // The address is masked before the exact-match test, so any host inside the prefix names it.
  c.check(t.remove(ip('192.0.0.77'), 24, 'a') && t.lookup(ip('192.0.0.1')) === undefined && t.isEmpty(),
    () => 'exact removal of 192.0.0.77/24 (masked) by its peer failed');
}

function readBack(c: Checks): void {
  const t = new AllowedIPs<string>();
  for (const [given] of READBACK) {
    const p = prefix(given);
    t.insert(p.addr, p.cidr, 'a');
  }
  const got = t.entriesForPeer('a').map((e) => formatPrefix(e.addr, e.cidr));
  READBACK.forEach(([given, want], i) => {
    const p = prefix(given);
    const viaMask = formatPrefix(maskPrefix(p.addr, p.cidr), p.cidr);
    c.check(got[i] === want && viaMask === want, () => `${given} reads back as ${got[i]} (maskPrefix: ${viaMask}), want ${want}`);
  });
  c.check(got.length === READBACK.length, () => `read-back lists ${got.length} prefixes, want ${READBACK.length}`);
}

/** 128 bits with the all-ones value shifted left by i (upper half stays all ones for i < 64). */
function shiftedOnes(i: number): Uint8Array {
  const b = new Uint8Array(16);
  for (let bit = 0; bit < 128 - i; bit++) b[bit >>> 3] |= 0x80 >>> (bit & 7);
  return b;
}

/** The same bits in reverse order: a chain that hangs off the zero side of the trie. */
function mirror(a: Uint8Array): Uint8Array {
  const b = new Uint8Array(16);
  for (let bit = 0; bit < 128; bit++) {
    if (a[bit >>> 3] & (0x80 >>> (bit & 7))) b[(127 - bit) >>> 3] |= 0x80 >>> ((127 - bit) & 7);
  }
  return b;
}

function deepTrie(c: Checks): void {
  const t = new AllowedIPs<string>();
  const addrs: Uint8Array[] = [];
  for (let i = 0; i < 64; i++) addrs.push(shiftedOnes(i), mirror(shiftedOnes(i)));
  addrs.push(new Uint8Array(16));
  for (const a of addrs) t.insert(a, 128, 'a');
  for (const a of addrs) c.check(t.lookup(a) === 'a', () => `deep trie: ${prefixText(a)} not found`);
  c.check(t.lookup(ip('::1')) === undefined, () => 'deep trie: ::1 resolves though only ::/128 is near it');
  // i = 0 is its own mirror, so 128 distinct prefixes.
  c.check(t.entriesForPeer('a').length === 128, () => `deep trie lists ${t.entriesForPeer('a').length}, want 128`);
  let err = '';
  try {
    t.removeByPeer('a');
  } catch (e) {
    err = String(e); // a RangeError here would be the stack overflow this case is about
  }
  c.check(err === '' && t.isEmpty(), () => `deep trie: freeing failed (${err || 'not empty'})`);
  for (const a of addrs) t.insert(a, 128, 'a');
  t.clear();
  c.check(t.isEmpty() && t.lookup(addrs[0]) === undefined, () => 'deep trie: clear() left nodes behind');
}

function prefixText(a: Uint8Array): string {
  return formatPrefix(a, a.length * 8);
}

/** splitmix32: small, seedable, and good enough to spread prefixes and queries. */
function prng(seed: number): () => number {
  let s = seed | 0;
  return () => {
    s = (s + 0x9e3779b9) | 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
}

/**
 * The reference: one bucket per cidr, scanned from the longest cidr down, first match wins (a list sorted by
 * cidr descending; within a cidr at most one masked key can match, so bucket order does not matter).
 */
class NaiveList {
  private readonly words: number;
  private keys: number[][] = [];
  private peers: number[][] = [];
  private index = new Map<string, number>(); // "cidr/key" -> position in its bucket, used while inserting

  constructor(words: number) {
    this.words = words;
    for (let c = 0; c <= words * 32; c++) {
      this.keys.push([]);
      this.peers.push([]);
    }
  }

  insert(addr: Uint8Array, cidr: number, peer: number): void {
    const k: number[] = [];
    for (let i = 0; i < this.words; i++) {
      const w = (addr[4 * i] << 24) | (addr[4 * i + 1] << 16) | (addr[4 * i + 2] << 8) | addr[4 * i + 3];
      k.push(w & mask(cidr - 32 * i));
    }
    const id = `${cidr}/${k.join(',')}`;
    const at = this.index.get(id);
    if (at !== undefined) this.peers[cidr][at] = peer; // re-insert moves, as in the table
    else {
      this.index.set(id, this.peers[cidr].length);
      this.keys[cidr].push(...k);
      this.peers[cidr].push(peer);
    }
  }

  /** Drops the peer's prefixes and returns them as "cidr/key" strings. */
  removePeer(peer: number): string[] {
    this.index.clear(); // positions shift from here on; no inserts follow
    const gone: string[] = [];
    const W = this.words;
    for (let c = 0; c < this.keys.length; c++) {
      const ks = this.keys[c];
      const ps = this.peers[c];
      let j = 0;
      for (let i = 0; i < ps.length; i++) {
        if (ps[i] === peer) {
          gone.push(`${c}/${ks.slice(i * W, i * W + W).join(',')}`);
          continue;
        }
        ps[j] = ps[i];
        for (let w = 0; w < W; w++) ks[j * W + w] = ks[i * W + w];
        j++;
      }
      ps.length = j;
      ks.length = j * W;
    }
    return gone;
  }

  lookup(addr: Uint8Array, off: number): number | undefined {
    const W = this.words;
    const a: number[] = [];
    for (let i = 0; i < W; i++) {
      const o = off + 4 * i;
      a.push((addr[o] << 24) | (addr[o + 1] << 16) | (addr[o + 2] << 8) | addr[o + 3]);
    }
    for (let c = W * 32; c >= 0; c--) {
      const ks = this.keys[c];
      const ps = this.peers[c];
      const m0 = a[0] & mask(c);
      if (W === 1) {
        for (let i = 0; i < ps.length; i++) if (ks[i] === m0) return ps[i];
        continue;
      }
      const m1 = a[1] & mask(c - 32);
      const m2 = a[2] & mask(c - 64);
      const m3 = a[3] & mask(c - 96);
      for (let i = 0, b = 0; i < ps.length; i++, b += 4) {
        if (ks[b] === m0 && ks[b + 1] === m1 && ks[b + 2] === m2 && ks[b + 3] === m3) return ps[i];
      }
    }
    return undefined;
  }
}

/** int32 mask of the first r bits of a word, r clamped to 0..32. */
function mask(r: number): number {
  return r <= 0 ? 0 : r >= 32 ? -1 : -1 << (32 - r);
}

function randomised(c: Checks, queries: number, seed: number): void {
  const rand = prng(seed);
  const t = new AllowedIPs<number>();
  const naive = [new NaiveList(1), new NaiveList(4)];
  const seen: Uint8Array[] = [new Uint8Array(4 * NUM_RAND_ROUTES * (NUM_MUTATED_ROUTES + 1)),
    new Uint8Array(16 * NUM_RAND_ROUTES * (NUM_MUTATED_ROUTES + 1))];
  for (let f = 0; f < 2; f++) {
    const len = f === 0 ? 4 : 16;
    const bits = len * 8;
    const base = new Uint8Array(len);
    const cur = new Uint8Array(len);
    let n = 0;
    const add = (a: Uint8Array): void => {
      const cidr = 1 + (rand() % bits);
      const peer = rand() % NUM_PEERS;
      t.insert(a, cidr, peer);
      naive[f].insert(a, cidr, peer);
      seen[f].set(a, n++ * len);
    };
    for (let r = 0; r < NUM_RAND_ROUTES; r++) {
      for (let i = 0; i < len; i++) base[i] = rand();
      add(base);
      // A mutation keeps a random number of the base's leading bits, so prefixes cluster and nest.
      for (let m = 0; m < NUM_MUTATED_ROUTES; m++) {
        randomTail(cur, base, rand() % (bits + 1), rand);
        add(cur);
      }
    }
  }

  const buf = new Uint8Array(64);
  let broken = false;
  const query = (count: number, when: string): void => {
    for (let q = 0; q < count && !broken; q++) {
      for (let f = 0; f < 2 && !broken; f++) {
        const len = f === 0 ? 4 : 16;
        const off = f === 0 ? 12 : 8; // the source address offsets of IPv4 and IPv6 headers
        const dst = buf.subarray(off, off + len);
        if (q & 1) {
          // Near a prefix that was inserted at some point, so long prefixes get hit too.
          const k = rand() % (seen[f].length / len);
          randomTail(dst, seen[f].subarray(k * len, k * len + len), rand() % (len * 8 + 1), rand);
        } else for (let i = 0; i < len; i++) dst[i] = rand();
        const got = t.lookupAt(buf, off, len as 4 | 16);
        const want = naive[f].lookup(buf, off);
        if (!c.check(got === want, () => `random ${when}: ${prefixText(dst.slice())} -> ${show(got)}, naive ${show(want)}`)) {
          broken = true; // one wrong answer is enough: the rest would only repeat it
        }
      }
    }
  };

  const first = queries - (queries >>> 1);
  query(first, 'after inserts');
  const rest = queries - first;
  for (let p = 0; p < NUM_PEERS; p++) {
    const listed = t.entriesForPeer(p).map((e) => keyText(e.addr, e.cidr)).sort().join(' ');
    const expect = [...naive[0].removePeer(p), ...naive[1].removePeer(p)].sort().join(' ');
    c.check(listed === expect, () => `peer ${p} lists [${listed}], naive [${expect}]`);
    t.removeByPeer(p);
    query(Math.floor(((p + 1) * rest) / NUM_PEERS) - Math.floor((p * rest) / NUM_PEERS), `after removing peer ${p}`);
  }
  c.check(t.isEmpty(), () => 'table not empty after removing every peer');
}

/** Copies `from`'s first `keep` bits into `to` and fills the rest with random bits. */
function randomTail(to: Uint8Array, from: Uint8Array, keep: number, rand: () => number): void {
  for (let i = 0; i < to.length; i++) {
    const k = keep - 8 * i;
    const r = rand() & 0xff;
    to[i] = k >= 8 ? from[i] : k <= 0 ? r : (from[i] & (0xff << (8 - k))) | (r & (0xff >>> k));
  }
}

/** Same text as NaiveList uses: cidr and the key's int32 words. */
function keyText(addr: Uint8Array, cidr: number): string {
  const k: number[] = [];
  for (let i = 0; i < addr.length; i += 4) k.push((addr[i] << 24) | (addr[i + 1] << 16) | (addr[i + 2] << 8) | addr[i + 3]);
  return `${cidr}/${k.join(',')}`;
}

/**
 * Runs every allowed-IPs case. `randomQueries` is the number of random lookups per family in the randomised
 * part (half after the inserts, half spread over the 2000 peer removals); `seed` fixes its PRNG.
 */
export function runAllowedIpsSelftest(opts?: { randomQueries?: number; seed?: number }): SelftestResult {
  const c = new Checks();
  const queries = Math.max(0, Math.floor(opts?.randomQueries ?? DEFAULT_RANDOM_QUERIES));
  const parts: Array<[string, () => void]> = [
    ['static table', () => staticTable(c)],
    ['removal by peer', () => removalByPeer(c)],
    ['single-prefix removal', () => singleRemoval(c)],
    ['masked read-back', () => readBack(c)],
    ['deep trie', () => deepTrie(c)],
    ['randomised', () => randomised(c, queries, opts?.seed ?? DEFAULT_SEED)],
  ];
  for (const [name, run] of parts) {
    try {
      run();
    } catch (e) {
      // An unexpected throw fails that part but not the suite, so the other parts still report.
      c.check(false, () => `${name}: threw ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    }
  }
  return { suite: 'allowedips', checks: c.checks, failed: c.failed, failures: c.failures };
}
