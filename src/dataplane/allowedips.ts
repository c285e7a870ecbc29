// The allowed-IPs table: longest-prefix match from an inner address to a peer, one trie per family
// (selftests.md "Allowed IPs"; protocol.md "Receive-path rules": source check; cryptokey routing on send).
// Each trie is path-compressed and stored as parallel typed arrays, so a lookup only reads numbers (no
// allocation, no pointer chasing through objects) and removal repairs the shape with O(1) local splices,
// never recursing, so even a 128-deep trie frees safely.

import { WgError, Errno } from '../errors.js';

const NONE = -1;

interface PeerList {
  head: number;
  tail: number;
}

function checkCidr(cidr: number, bits: number): void {
  if (!Number.isInteger(cidr) || cidr < 0 || cidr > bits) {
    throw new WgError('bad-cidr', `cidr ${cidr} out of range for a ${bits}-bit address`, Errno.EINVAL);
  }
}

/** Mask of the first `r` bits of a 32-bit word, as an int32 (r in 0..32). */
function wordMask(r: number): number {
  return r === 0 ? 0 : -1 << (32 - r);
}

/**
 * One family's trie. A node holds a masked key of `cidr` bits; its children are split on bit `cidr`. Nodes
 * without a peer exist only to branch, so they always have two children: that bounds the node count by twice
 * the prefix count and lets removal fix the shape locally. Free node slots are chained through
 * their first child slot.
 */
class Trie<P> {
  readonly words: number; // 32-bit words per key: 1 (IPv4) or 4 (IPv6)
  readonly bits: number;
  root = NONE;
  private cap = 0;
  private used = 0; // slots ever handed out; below this, freed slots are on the free list
  private freeHead = NONE;
  private key: Int32Array = new Int32Array(0);
  private cidr: Uint8Array = new Uint8Array(0);
  // Children of n at [2n] (next bit 0) and [2n+1] (next bit 1): indexing by the bit avoids a branch the CPU
  // cannot predict on every lookup step.
  private child: Int32Array = new Int32Array(0);
  private parent: Int32Array = new Int32Array(0);
  private pnext: Int32Array = new Int32Array(0); // per-peer doubly linked list, in insertion order
  private pprev: Int32Array = new Int32Array(0);
  private peer: (P | undefined)[] = [];
  private lists = new Map<P, PeerList>();
  private scratch: Int32Array;

  constructor(words: number) {
    this.words = words;
    this.bits = words * 32;
    this.scratch = new Int32Array(words);
    this.reset();
  }

  reset(): void {
    this.root = NONE;
    this.freeHead = NONE;
    this.used = 0;
    this.cap = 0;
    this.key = this.child = this.parent = this.pnext = this.pprev = new Int32Array(0);
    this.cidr = new Uint8Array(0);
    this.peer = [];
    this.lists.clear();
    this.grow(16);
  }

  private grow(min: number): void {
    const cap = Math.max(min, this.cap * 2);
    const g = (old: Int32Array, n: number): Int32Array => {
      const a = new Int32Array(n);
      a.set(old);
      return a;
    };
    this.key = g(this.key, cap * this.words);
    const cidr = new Uint8Array(cap);
    cidr.set(this.cidr);
    this.cidr = cidr;
    this.child = g(this.child, cap * 2);
    this.parent = g(this.parent, cap);
    this.pnext = g(this.pnext, cap);
    this.pprev = g(this.pprev, cap);
    // Filled, not sized, so the array stays packed and reads stay on V8's fast path.
    for (let i = this.cap; i < cap; i++) this.peer.push(undefined);
    this.cap = cap;
  }

  private alloc(k: Int32Array, cidr: number): number {
    let n = this.freeHead;
    if (n !== NONE) this.freeHead = this.child[2 * n];
    else {
      if (this.used === this.cap) this.grow(this.used + 1);
      n = this.used++;
    }
    this.key.set(k, n * this.words);
    this.cidr[n] = cidr;
    this.child[2 * n] = this.child[2 * n + 1] = this.parent[n] = NONE;
    this.peer[n] = undefined;
    return n;
  }

  private free(n: number): void {
    this.peer[n] = undefined;
    this.child[2 * n] = this.freeHead;
    this.freeHead = n;
  }

  /** Loads bytes into the scratch key, masked to `cidr` bits. */
  private load(addr: Uint8Array, cidr: number): Int32Array {
    const k = this.scratch;
    for (let i = 0; i < this.words; i++) {
      const o = i * 4;
      const w = (addr[o] << 24) | (addr[o + 1] << 16) | (addr[o + 2] << 8) | addr[o + 3];
      const r = cidr - i * 32;
      k[i] = r >= 32 ? w : r <= 0 ? 0 : w & wordMask(r);
    }
    return k;
  }

  private bitOf(k: Int32Array, base: number, pos: number): number {
    return (k[base + (pos >>> 5)] >>> (31 - (pos & 31))) & 1;
  }

  /** Length of the common prefix of `k` and node n's key, at most `limit`. */
  private common(k: Int32Array, n: number, limit: number): number {
    const b = n * this.words;
    for (let i = 0; i < this.words; i++) {
      const x = k[i] ^ this.key[b + i];
      if (x !== 0) return Math.min(limit, i * 32 + Math.clz32(x));
    }
    return limit;
  }

  private replaceChild(p: number, old: number, nw: number): void {
    if (p === NONE) this.root = nw;
    else this.child[2 * p + (this.child[2 * p] === old ? 0 : 1)] = nw;
    if (nw !== NONE) this.parent[nw] = p;
  }

  private attach(p: number, child: number): void {
    this.child[2 * p + this.bitOf(this.key, child * this.words, this.cidr[p])] = child;
    this.parent[child] = p;
  }

  private link(n: number, peer: P): void {
    this.peer[n] = peer;
    let l = this.lists.get(peer);
    if (l === undefined) this.lists.set(peer, (l = { head: n, tail: NONE }));
    else this.pnext[l.tail] = n;
    this.pprev[n] = l.tail;
    this.pnext[n] = NONE;
    l.tail = n;
  }

  private unlink(n: number): void {
    const peer = this.peer[n] as P;
    const l = this.lists.get(peer)!;
    const prev = this.pprev[n];
    const next = this.pnext[n];
    if (prev === NONE) l.head = next;
    else this.pnext[prev] = next;
    if (next === NONE) l.tail = prev;
    else this.pprev[next] = prev;
    if (l.head === NONE) this.lists.delete(peer);
    this.peer[n] = undefined;
  }

  insert(addr: Uint8Array, cidr: number, peer: P): void {
    const k = this.load(addr, cidr);
    let parent = NONE;
    let n = this.root;
    while (n !== NONE) {
      const nc = this.cidr[n];
      const l = this.common(k, n, Math.min(nc, cidr));
      if (l === nc && nc === cidr) {
        if (this.peer[n] === peer) return;
        if (this.peer[n] !== undefined) this.unlink(n);
        this.link(n, peer);
        return;
      }
      if (l === nc) {
        // n's prefix covers ours: go down the side our next bit picks.
        const next = this.child[2 * n + this.bitOf(k, 0, nc)];
        if (next === NONE) {
          const leaf = this.alloc(k, cidr);
          this.attach(n, leaf);
          this.link(leaf, peer);
          return;
        }
        parent = n;
        n = next;
        continue;
      }
      const fresh = this.alloc(k, cidr);
      this.replaceChild(parent, n, fresh);
      if (l === cidr) {
        // Our prefix covers n's: the new node takes n's place and n hangs below it.
        this.attach(fresh, n);
      } else {
        // The two diverge at bit l: a peerless branch node of l bits takes n's place.
        const branch = this.alloc(k, l);
        const b = branch * this.words;
        for (let i = 0; i < this.words; i++) this.key[b + i] &= wordMask(Math.max(0, Math.min(32, l - i * 32)));
        this.replaceChild(parent, fresh, branch);
        this.attach(branch, n);
        this.attach(branch, fresh);
      }
      this.link(fresh, peer);
      return;
    }
    this.root = this.alloc(k, cidr);
    this.link(this.root, peer);
  }

  /** The node holding exactly (masked addr, cidr), or NONE. */
  private find(addr: Uint8Array, cidr: number): number {
    const k = this.load(addr, cidr);
    let n = this.root;
    while (n !== NONE) {
      const nc = this.cidr[n];
      if (nc > cidr || this.common(k, n, nc) < nc) return NONE;
      if (nc === cidr) return n;
      n = this.child[2 * n + this.bitOf(k, 0, nc)];
    }
    return NONE;
  }

  remove(addr: Uint8Array, cidr: number, peer: P): boolean {
    const n = this.find(addr, cidr);
    if (n === NONE || this.peer[n] !== peer) return false;
    this.removeNode(n);
    return true;
  }

  /** Drops n's peer and restores the "peerless nodes have two children" shape with O(1) local splices. */
  private removeNode(n: number): void {
    this.unlink(n);
    const a = this.child[2 * n];
    const b = this.child[2 * n + 1];
    if (a !== NONE && b !== NONE) return; // still needed as a branch
    const child = a !== NONE ? a : b;
    const p = this.parent[n];
    this.replaceChild(p, n, child);
    this.free(n);
    if (child === NONE && p !== NONE && this.peer[p] === undefined) {
      // p was a pure branch and has lost one side: the survivor takes its place.
      const other = this.child[2 * p] !== NONE ? this.child[2 * p] : this.child[2 * p + 1];
      this.replaceChild(this.parent[p], p, other);
      this.free(p);
    }
  }

  removeByPeer(peer: P): void {
    const l = this.lists.get(peer);
    if (l === undefined) return;
    for (let n = l.head; n !== NONE; ) {
      const next = this.pnext[n];
      this.removeNode(n);
      n = next;
    }
  }

  entries(peer: P, out: { addr: Uint8Array; cidr: number }[]): void {
    const l = this.lists.get(peer);
    if (l === undefined) return;
    for (let n = l.head; n !== NONE; n = this.pnext[n]) {
      const addr = new Uint8Array(this.words * 4);
      for (let i = 0; i < this.words; i++) {
        const w = this.key[n * this.words + i];
        addr[i * 4] = w >>> 24;
        addr[i * 4 + 1] = w >>> 16;
        addr[i * 4 + 2] = w >>> 8;
        addr[i * 4 + 3] = w;
      }
      out.push({ addr, cidr: this.cidr[n] });
    }
  }

  lookup4(buf: Uint8Array, o: number): P | undefined {
    const a = (buf[o] << 24) | (buf[o + 1] << 16) | (buf[o + 2] << 8) | buf[o + 3];
    const key = this.key;
    const cidrs = this.cidr;
    const peers = this.peer;
    const child = this.child;
    let best: P | undefined;
    let n = this.root;
    while (n !== NONE) {
      const c = cidrs[n];
      if ((a & wordMask(c)) !== key[n]) break;
      const p = peers[n];
      if (p !== undefined) best = p;
      if (c === 32) break;
      n = child[(n << 1) | ((a >>> (31 - c)) & 1)];
    }
    return best;
  }

  lookup6(buf: Uint8Array, o: number): P | undefined {
    const a0 = (buf[o] << 24) | (buf[o + 1] << 16) | (buf[o + 2] << 8) | buf[o + 3];
    const a1 = (buf[o + 4] << 24) | (buf[o + 5] << 16) | (buf[o + 6] << 8) | buf[o + 7];
    const a2 = (buf[o + 8] << 24) | (buf[o + 9] << 16) | (buf[o + 10] << 8) | buf[o + 11];
    const a3 = (buf[o + 12] << 24) | (buf[o + 13] << 16) | (buf[o + 14] << 8) | buf[o + 15];
    const key = this.key;
    const cidrs = this.cidr;
    const peers = this.peer;
    const child = this.child;
    let best: P | undefined;
    let n = this.root;
    while (n !== NONE) {
      const c = cidrs[n];
      const b = n << 2;
      // Whole words first, then the partial word; words past the prefix are zero in the key and ignored.
      const w = c >>> 5;
      if (w > 0 && a0 !== key[b]) break;
      if (w > 1 && a1 !== key[b + 1]) break;
      if (w > 2 && a2 !== key[b + 2]) break;
      if (w > 3 && a3 !== key[b + 3]) break;
      const aw = w === 0 ? a0 : w === 1 ? a1 : w === 2 ? a2 : a3;
      if (w < 4 && (aw & wordMask(c & 31)) !== key[b + w]) break;
      const p = peers[n];
      if (p !== undefined) best = p;
      if (c === 128) break;
      n = child[(n << 1) | ((aw >>> (31 - (c & 31))) & 1)];
    }
    return best;
  }
}

/**
 * Longest-prefix-match table from IPv4/IPv6 addresses to peers. Inserts are masked; re-inserting a prefix
 * moves it to the new peer. Peers are compared by identity and must not be `undefined`.
 */
export class AllowedIPs<P> {
  private readonly v4 = new Trie<P>(1);
  private readonly v6 = new Trie<P>(4);

  private trie(addr: Uint8Array): Trie<P> {
    if (addr.length === 4) return this.v4;
    if (addr.length === 16) return this.v6;
    throw new WgError('bad-address', `address must be 4 or 16 bytes, got ${addr.length}`, Errno.EINVAL);
  }

  /** Adds (masked addr, cidr) for `peer`, taking it over from any other peer; throws WgError on bad input. */
  insert(addr: Uint8Array, cidr: number, peer: P): void {
    const t = this.trie(addr);
    checkCidr(cidr, t.bits);
    if (peer === undefined) throw new WgError('bad-peer', 'peer must not be undefined', Errno.EINVAL);
    t.insert(addr, cidr, peer);
  }

  /** Removes exactly (masked addr, cidr) if `peer` holds it; anything else is a no-op returning false. */
  remove(addr: Uint8Array, cidr: number, peer: P): boolean {
    const t = this.trie(addr);
    checkCidr(cidr, t.bits);
    return t.remove(addr, cidr, peer);
  }

  removeByPeer(peer: P): void {
    this.v4.removeByPeer(peer);
    this.v6.removeByPeer(peer);
  }

  /** The peer's prefixes, masked: IPv4 then IPv6, each in the order they were given to the peer. */
  entriesForPeer(peer: P): { addr: Uint8Array; cidr: number }[] {
    const out: { addr: Uint8Array; cidr: number }[] = [];
    this.v4.entries(peer, out);
    this.v6.entries(peer, out);
    return out;
  }

  lookup(addr: Uint8Array): P | undefined {
    if (addr.length === 4) return this.v4.lookup4(addr, 0);
    if (addr.length === 16) return this.v6.lookup6(addr, 0);
    throw new WgError('bad-address', `address must be 4 or 16 bytes, got ${addr.length}`, Errno.EINVAL);
  }

  /** Hot path, no allocation: looks up the address at buf[offset .. offset+len), len 4 or 16. */
  lookupAt(buf: Uint8Array, offset: number, len: 4 | 16): P | undefined {
    if (offset < 0 || offset + len > buf.length) return undefined;
    return len === 4 ? this.v4.lookup4(buf, offset) : this.v6.lookup6(buf, offset);
  }

  /** True when neither trie holds a node (used by the selftest to prove removal left nothing behind). */
  isEmpty(): boolean {
    return this.v4.root === NONE && this.v6.root === NONE;
  }

  clear(): void {
    this.v4.reset();
    this.v6.reset();
  }
}
