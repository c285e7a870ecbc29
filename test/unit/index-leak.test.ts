// Receiver-index bookkeeping under crossing initiations (issue 5 item 1, "no unbounded memory growth"): when
// both peers initiate at once, consuming the other's initiation wipes our own in-flight handshake, and its
// index must leave the table with it. Found by the daemon fuzzing work: before the fix every crossing left one
// entry (holding the Peer) in the table for good, even after the peer was removed.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Network, pair, key } from '../helpers/net.js';
import type { Device } from '../../src/device.js';

// The table is private to Device; its size is the only observable of this leak short of a heap dump.
const indexSize = (d: Device): number => (d as unknown as { index: { size: number } }).index.size;

test('crossing initiations do not leak receiver indices', () => {
  const net = new Network();
  const { a, b, pa, pb } = pair(net, key(1), key(2));
  const rounds = 50;
  for (let i = 0; i < rounds; i++) {
    a.device.initiate(pa, true);
    b.device.initiate(pb, true);
    net.run(1000);
    net.clock.advance(6000); // past REKEY_TIMEOUT, so the next round may initiate again
  }
  // Each side holds at most its three keypairs plus one handshake in flight.
  for (const n of [a, b]) assert.ok(indexSize(n.device) <= 4, `index table holds ${indexSize(n.device)} entries after ${rounds} crossings`);
  // A plain handshake still completes after all that churn (a's keepalive confirms b's keypair).
  a.device.initiate(pa, false);
  net.run(1000);
  assert.ok(pa.keypairs.current && pb.keypairs.current, 'both sides have a current keypair');
  a.device.removePeer(pa);
  b.device.removePeer(pb);
  assert.equal(indexSize(a.device), 0, 'a: nothing left once the peer is removed');
  assert.equal(indexSize(b.device), 0, 'b: nothing left once the peer is removed');
});
