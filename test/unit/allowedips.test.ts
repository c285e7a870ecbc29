// Unit tests for the allowed-IPs table (src/dataplane/allowedips.ts) and its kernel selftest
// (src/selftest/allowedips.ts; selftests.md "Allowed IPs"), plus a seeded model check of single-prefix
// removal, which the kernel's randomised test does not exercise.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AllowedIPs } from '../../src/dataplane/allowedips.js';
import { runAllowedIpsSelftest } from '../../src/selftest/allowedips.js';
import { formatPrefix, parseIP, parsePrefix } from '../../src/ip.js';
import { WgError, Errno } from '../../src/errors.js';

interface Peer {
  name: string;
}
const ip = (s: string): Uint8Array => parseIP(s)!;
const listOf = <P>(t: AllowedIPs<P>, p: P): string[] => t.entriesForPeer(p).map((e) => formatPrefix(e.addr, e.cidr));
const add = <P>(t: AllowedIPs<P>, text: string, p: P): void => {
  const x = parsePrefix(text)!;
  t.insert(x.addr, x.cidr, p);
};

test('allowed-IPs selftest: every case passes, exact check count for a fixed seed', () => {
  const r = runAllowedIpsSelftest({ randomQueries: 20_000, seed: 1 });
  assert.equal(r.suite, 'allowedips');
  assert.deepEqual(r.failures, []);
  assert.equal(r.failed, 0);
  // static 23 inserts + 28 lookups + 2 list checks; removal 5 + 1 + 1; single removal 8; read-back 4 + 1;
  // deep trie 129 lookups + 4; randomised 2000 peer lists + 1 emptiness + 2 x 20,000 lookups.
  assert.equal(r.checks, 53 + 7 + 8 + 5 + 133 + 2001 + 2 * 20_000);
  assert.equal(r.checks, 42_207);
});

test('the selftest detects a wrong answer (static and randomised)', () => {
  const proto = AllowedIPs.prototype as AllowedIPs<unknown>;
  const { lookup, lookupAt } = proto;
  const target = ip('10.1.0.6');
  try {
    // A table that gets one static answer wrong.
    proto.lookup = function (this: AllowedIPs<unknown>, a: Uint8Array) {
      return a.length === 4 && a.every((v, i) => v === target[i]) ? 'a' : lookup.call(this, a);
    };
    const r1 = runAllowedIpsSelftest({ randomQueries: 0 });
    assert.equal(r1.failed, 1);
    assert.match(r1.failures[0], /lookup 10\.1\.0\.6: want b, got a/);
    proto.lookup = lookup;

    // A table whose IPv6 hot path forgets every fifth answer: only the randomised comparison sees it.
    let n = 0;
    proto.lookupAt = function (this: AllowedIPs<unknown>, buf: Uint8Array, off: number, len: 4 | 16) {
      const p = lookupAt.call(this, buf, off, len);
      return len === 16 && typeof p === 'number' && ++n % 5 === 0 ? undefined : p;
    };
    const r2 = runAllowedIpsSelftest({ randomQueries: 2000, seed: 9 });
    assert.ok(r2.failed >= 1);
    assert.ok(r2.failures.some((f) => /^random .*-> none, naive \d+/.test(f)), r2.failures.join('\n'));
  } finally {
    proto.lookup = lookup;
    proto.lookupAt = lookupAt;
  }
});

test('lookupAt reads an address inside a packet at an offset', () => {
  const t = new AllowedIPs<Peer>();
  const a = { name: 'a' };
  const b = { name: 'b' };
  add(t, '10.0.0.0/8', a);
  add(t, '10.2.0.0/16', b);
  add(t, 'fd00::/8', a);
  add(t, 'fd00:1::/32', b);
  // IPv4 header: source at 12, destination at 16; IPv6 header: source at 8, destination at 24.
  const v4 = new Uint8Array(40).fill(0xff);
  v4.set(ip('10.1.2.3'), 12);
  v4.set(ip('10.2.9.9'), 16);
  assert.equal(t.lookupAt(v4, 12, 4), a);
  assert.equal(t.lookupAt(v4, 16, 4), b);
  assert.equal(t.lookupAt(v4, 0, 4), undefined); // 255.255.255.255
  const v6 = new Uint8Array(60).fill(0xee);
  v6.set(ip('fd00:1::7'), 8);
  v6.set(ip('fd99::1'), 24);
  assert.equal(t.lookupAt(v6, 8, 16), b);
  assert.equal(t.lookupAt(v6, 24, 16), a);
  // Out of range never reads past the buffer: with /0 routes, a read of missing bytes would still "match".
  const all = new AllowedIPs<Peer>();
  add(all, '0.0.0.0/0', a);
  add(all, '::/0', b);
  assert.equal(all.lookupAt(v4, 36, 4), a);
  assert.equal(all.lookupAt(v4, 37, 4), undefined);
  assert.equal(all.lookupAt(v6, 44, 16), b);
  assert.equal(all.lookupAt(v6, 50, 16), undefined);
  assert.equal(all.lookupAt(v4, -1, 4), undefined);
  // lookup and lookupAt agree on the same bytes.
  assert.equal(t.lookup(v6.slice(8, 24)), b);
});

test('re-inserting a prefix moves it to the new peer, lists included', () => {
  const t = new AllowedIPs<Peer>();
  const a = { name: 'a' };
  const b = { name: 'b' };
  add(t, '10.0.0.0/8', a);
  add(t, '10.9.9.9/8', b); // same prefix after masking
  assert.equal(t.lookup(ip('10.200.0.1')), b);
  assert.deepEqual(listOf(t, a), []);
  assert.deepEqual(listOf(t, b), ['10.0.0.0/8']);
  assert.equal(t.remove(ip('10.0.0.0'), 8, a), false, 'the old owner cannot remove it');
  assert.equal(t.lookup(ip('10.0.0.1')), b);
  assert.equal(t.remove(ip('10.1.2.3'), 8, b), true, 'the owner can, by any address inside it');
  assert.equal(t.lookup(ip('10.0.0.1')), undefined);
  assert.ok(t.isEmpty());
  // Re-inserting for the same peer is a no-op and keeps its place in the list.
  add(t, '1.0.0.0/8', a);
  add(t, '2.0.0.0/8', a);
  add(t, '1.2.3.4/8', a);
  assert.deepEqual(listOf(t, a), ['1.0.0.0/8', '2.0.0.0/8']);
});

test('entriesForPeer is masked, IPv4 first, each family in insertion order', () => {
  const t = new AllowedIPs<Peer>();
  const a = { name: 'a' };
  add(t, '2607:5300:6d8a:6bf8:dab1:f1df:c05f:1523/83', a);
  add(t, '192.95.5.93/27', a);
  add(t, '2607:5300:6d8a:6bf8:dab1:f1df:c05f:1523/21', a);
  add(t, '10.1.0.20/29', a);
  add(t, '0.0.0.0/0', a);
  add(t, '::1/128', a);
  assert.deepEqual(listOf(t, a), [
    '192.95.5.64/27', '10.1.0.16/29', '0.0.0.0/0',
    '2607:5300:6d8a:6bf8:dab1:e000::/83', '2607:5000::/21', '::1/128',
  ]);
  const e = t.entriesForPeer(a);
  e[0].addr[0] = 1; // a copy: editing it leaves the table alone
  assert.equal(listOf(t, a)[0], '192.95.5.64/27');
  assert.deepEqual(t.entriesForPeer({ name: 'a' }), [], 'peers are compared by identity');
});

test('removeByPeer removes one peer and leaves the others intact', () => {
  const t = new AllowedIPs<Peer>();
  const a = { name: 'a' };
  const b = { name: 'b' };
  const c = { name: 'c' };
  // Interleaved and nested so removal has to splice branch nodes.
  for (const [p, s] of [[a, '10.0.0.0/8'], [b, '10.1.0.0/16'], [a, '10.1.1.0/24'], [c, '10.1.1.128/25'],
    [b, '10.1.1.1/32'], [a, '::/0'], [c, '2001:db8::/32'], [a, '2001:db8::/48'], [b, '2001:db8::1/128']] as const) {
    add(t, s, p);
  }
  t.removeByPeer(a);
  assert.deepEqual(listOf(t, a), []);
  assert.deepEqual(listOf(t, b), ['10.1.0.0/16', '10.1.1.1/32', '2001:db8::1/128']);
  assert.deepEqual(listOf(t, c), ['10.1.1.128/25', '2001:db8::/32']);
  const expect: Array<[string, Peer | undefined]> = [
    ['10.2.0.1', undefined], ['10.1.2.3', b], ['10.1.1.5', b], ['10.1.1.1', b], ['10.1.1.200', c],
    ['2001:db8::2', c], ['2001:db8::1', b], ['2001:db9::', undefined], ['::', undefined],
  ];
  for (const [s, p] of expect) assert.equal(t.lookup(ip(s)), p, s);
  t.removeByPeer(a); // again: nothing to do
  t.removeByPeer(b);
  t.removeByPeer(c);
  assert.ok(t.isEmpty());
});

test('bad input throws WgError EINVAL; clear() empties and the table stays usable', () => {
  const t = new AllowedIPs<string>();
  const einval = (e: unknown): boolean => e instanceof WgError && e.errno === Errno.EINVAL;
  assert.throws(() => t.insert(new Uint8Array(4), 33, 'a'), einval);
  assert.throws(() => t.insert(new Uint8Array(16), 129, 'a'), einval);
  assert.throws(() => t.insert(new Uint8Array(4), -1, 'a'), einval);
  assert.throws(() => t.insert(new Uint8Array(5), 8, 'a'), einval);
  assert.throws(() => t.remove(new Uint8Array(4), 33, 'a'), einval);
  assert.throws(() => t.remove(new Uint8Array(16), 129, 'a'), einval);
  assert.throws(() => t.lookup(new Uint8Array(3)), einval);
  assert.ok(t.isEmpty());
  add(t, '1.2.3.0/24', 'a');
  add(t, 'fe80::/10', 'a');
  t.clear();
  assert.ok(t.isEmpty());
  assert.deepEqual(t.entriesForPeer('a'), []);
  assert.equal(t.lookup(ip('1.2.3.4')), undefined);
  add(t, '1.2.3.0/24', 'b');
  assert.equal(t.lookup(ip('1.2.3.4')), 'b');
});

test('a 128-deep IPv6 chain inserts, resolves and frees without recursion trouble', () => {
  const t = new AllowedIPs<string>();
  const addrs: Uint8Array[] = [];
  for (let i = 0; i <= 128; i++) {
    const b = new Uint8Array(16);
    for (let bit = 0; bit < i; bit++) b[bit >> 3] |= 0x80 >> (bit & 7); // i leading ones
    addrs.push(b);
    t.insert(b, 128, `p${i % 3}`);
  }
  addrs.forEach((a, i) => assert.equal(t.lookup(a), `p${i % 3}`));
  for (const p of ['p0', 'p1', 'p2']) t.removeByPeer(p);
  assert.ok(t.isEmpty());
});

test('random inserts, exact removals and peer removals agree with a simple model', () => {
  let s = 0xc0ffee;
  const rand = (n: number): number => {
    s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x9e3779b9) | 0;
    return ((s ^ (s >>> 13)) >>> 0) % n;
  };
  for (const len of [4, 16] as const) {
    const bits = len * 8;
    const t = new AllowedIPs<number>();
    const model = new Map<string, { addr: Uint8Array; cidr: number; peer: number }>();
    // Few distinct bytes so prefixes collide, nest and get moved and removed often.
    const randomAddr = (): Uint8Array => Uint8Array.from({ length: len }, () => [0, 0x80, 0xff, 0x0f][rand(4)]);
    const key = (a: Uint8Array, c: number): string => formatPrefix(a, c);
    const modelLookup = (a: Uint8Array): number | undefined => {
      let best: { cidr: number; peer: number } | undefined;
      for (const e of model.values()) {
        if ((!best || e.cidr > best.cidr) && key(maskOf(a, e.cidr), e.cidr) === key(e.addr, e.cidr)) best = e;
      }
      return best?.peer;
    };
    for (let op = 0; op < 3000; op++) {
      const a = randomAddr();
      const cidr = rand(bits + 1);
      const peer = rand(6);
      const m = maskOf(a, cidr);
      const r = rand(10);
      if (r < 6) {
        t.insert(a, cidr, peer);
        model.set(key(m, cidr), { addr: m, cidr, peer });
      } else if (r < 9) {
        const held = model.get(key(m, cidr));
        const want = held !== undefined && held.peer === peer;
        assert.equal(t.remove(a, cidr, peer), want);
        if (want) model.delete(key(m, cidr));
      } else {
        t.removeByPeer(peer);
        for (const [k, e] of model) if (e.peer === peer) model.delete(k);
      }
      const q = randomAddr();
      assert.equal(t.lookup(q), modelLookup(q), `op ${op}: ${formatPrefix(q, bits)}`);
    }
    for (let p = 0; p < 6; p++) {
      const want = [...model.values()].filter((e) => e.peer === p).map((e) => key(e.addr, e.cidr)).sort();
      assert.deepEqual(listOf(t, p).sort(), want);
    }
  }
});

function maskOf(a: Uint8Array, cidr: number): Uint8Array {
  return a.map((v, i) => (cidr >= 8 * (i + 1) ? v : cidr <= 8 * i ? 0 : v & (0xff << (8 - (cidr - 8 * i)))));
}
