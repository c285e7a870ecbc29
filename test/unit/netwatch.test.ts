// Parsing rtnetlink notifications (src/tun/netwatch.ts) from hand-built datagrams: which change each message
// type reports, several messages in one datagram, and a truncated or malformed header ending the walk.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ADDRESS, LINK, ROUTE, changeOf, changesIn } from '../../src/tun/netwatch.js';

/** nlmsghdr (length, type, flags, seq, pid) followed by `body` bytes, padded to 4. */
function msg(type: number, body = 0, length = 16 + body): Uint8Array {
  const m = new Uint8Array((16 + body + 3) & ~3);
  const dv = new DataView(m.buffer);
  dv.setUint32(0, length, true);
  dv.setUint16(4, type, true);
  return m;
}

const join = (...parts: Uint8Array[]): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
};

test('message types map to the change they report', () => {
  for (const t of [16, 17]) assert.equal(changeOf(t), LINK);
  for (const t of [20, 21]) assert.equal(changeOf(t), ADDRESS);
  for (const t of [24, 25, 32, 33, 104, 105]) assert.equal(changeOf(t), ROUTE, `type ${t}`);
  for (const t of [0, 2, 3, 18, 22, 28, 30, 68, 106]) assert.equal(changeOf(t), 0, `type ${t}`); // done, error, neighbours...
});

test('a datagram of several messages reports their union; lengths that are not 4-aligned are padded', () => {
  const d = join(msg(16, 17), msg(3), msg(24, 45));
  assert.equal(changesIn(d, d.length), LINK | ROUTE);
  assert.equal(changesIn(d, 0), 0, 'an empty read');
  const addr = msg(20, 8);
  assert.equal(changesIn(join(msg(28, 13), addr), 32 + addr.length), ADDRESS, 'after a neighbour message of 29 bytes');
});

test('a header claiming more than was read, or less than itself, ends the walk', () => {
  const d = join(msg(16), msg(24, 0, 4000));
  assert.equal(changesIn(d, d.length), LINK, 'the overlong second message is not counted');
  const bad = join(msg(20, 0, 8), msg(24));
  assert.equal(changesIn(bad, bad.length), 0, 'a length below the header stops at once');
  assert.equal(changesIn(msg(16), 12), 0, 'a read shorter than a header');
});
