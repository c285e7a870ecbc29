// The routing-loop check's kernel queries (route.ts) against this machine's own routing table, and the
// LoopGuard's caching: per Endpoint object, per address for a new object at a known address, until forget()
// or the recheck interval. No root needed: RTM_GETROUTE and if_nametoindex(3) are open to every user.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LoopGuard, interfaceIndex, routeInterface } from '../../src/tun/route.js';
import { Errno } from '../../src/errors.js';
import type { Endpoint } from '../../src/peer.js';

test('routeInterface: loopback addresses leave by lo, whose index if_nametoindex gives; no such interface is ENODEV', () => {
  const lo = interfaceIndex('lo');
  assert.ok(lo > 0, `lo has index ${lo}`);
  assert.equal(routeInterface(Uint8Array.of(127, 0, 0, 1), 0), lo);
  assert.equal(routeInterface(Uint8Array.of(127, 9, 8, 7), 0x1234), lo, 'with a mark in the query');
  const v6 = routeInterface(new Uint8Array([...new Array(15).fill(0), 1]), 0);
  // ::1 routes by lo unless IPv6 is disabled here, when rtnetlink answers with an error instead.
  assert.ok(v6 === lo || v6 < 0, `::1 answered ${v6}`);
  assert.equal(interfaceIndex('wgts-none-x0'), -Errno.ENODEV);
  // The query and answer buffers are reused: many in a row give the same answer.
  for (let i = 0; i < 200; i++) assert.equal(routeInterface(Uint8Array.of(127, 0, 0, 1 + (i % 200)), i), lo);
});

test('LoopGuard asks once per address, keeps the answer across Endpoint objects, and asks again after forget() or the recheck', () => {
  const asked: string[] = [];
  let tunIndexAsks = 0;
  const ENETUNREACH = 101;
  const routes: Record<string, number> = { '198.51.100.1': 7, '198.51.100.2': 3 };
  const guard = new LoopGuard(
    () => 'tun0',
    () => 0,
    (addr) => {
      asked.push(addr.join('.'));
      return routes[addr.join('.')] ?? -ENETUNREACH;
    },
    () => (tunIndexAsks++, 7),
  );
  const ep = (a: number[], port = 51820): Endpoint => ({ addr: Uint8Array.from(a), port });
  const a1 = ep([198, 51, 100, 1]);
  assert.equal(guard.loops(a1, 0), true, 'the route to 198.51.100.1 leaves by our TUN (7)');
  assert.equal(guard.loops(a1, 1), true);
  // A handshake's reply replaces the endpoint object (source attached): same address, no new query.
  const a1again = { ...ep([198, 51, 100, 1], 4000), src: Uint8Array.of(198, 51, 100, 9), srcIf: 2 };
  assert.equal(guard.outInterface(a1again, 2), 7);
  assert.deepEqual(asked, ['198.51.100.1']);
  assert.equal(guard.loops(ep([198, 51, 100, 2]), 3), false, 'another address is asked about');
  assert.equal(guard.outInterface(ep([198, 51, 100, 3]), 3), -ENETUNREACH, 'an error is kept as the answer');
  assert.deepEqual(asked, ['198.51.100.1', '198.51.100.2', '198.51.100.3']);
  assert.equal(tunIndexAsks, 1, 'the TUN index is asked once for all of them');

  routes['198.51.100.1'] = 2; // the route moved off the TUN
  assert.equal(guard.loops(a1, 900), true, 'the old answer stands within the recheck interval');
  assert.equal(guard.loops(a1, 1_000), false, 'after it (1 s without notifications) the kernel is asked again');
  assert.equal(tunIndexAsks, 2);
  routes['198.51.100.1'] = 7;
  guard.forget();
  assert.equal(guard.loops(ep([198, 51, 100, 1]), 1_001), true, 'forget() drops the per-address answers too');
  assert.equal(asked.filter((a) => a === '198.51.100.1').length, 3);
});

test('LoopGuard keeps at most a bounded number of addresses, starting over when full', () => {
  let asks = 0;
  const guard = new LoopGuard(() => 'tun0', () => 0, () => (asks++, 2), () => 7);
  const first: Endpoint = { addr: Uint8Array.of(198, 18, 0, 0), port: 1 };
  guard.loops(first, 0);
  for (let i = 1; i <= 4096; i++) guard.loops({ addr: Uint8Array.of(198, 18, i >> 8, i & 255), port: 1 }, 0);
  assert.equal(asks, 4097);
  guard.loops({ addr: Uint8Array.of(198, 18, 0, 0), port: 2 }, 0); // a new object: the address table was cleared
  assert.equal(asks, 4098);
  guard.loops(first, 0); // the object itself is still known
  assert.equal(asks, 4098);
});
