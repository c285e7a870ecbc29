// Unit tests for src/dataplane/ippacket.ts: the inner-packet length and address positions the data path reads,
// against hand-built IPv4 and IPv6 headers (RFC 791 total length, RFC 8200 payload length), at an offset.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { addressLength, destinationOffset, ipPacketLength, sourceOffset } from '../../src/dataplane/ippacket.js';

const OFF = 16; // as the data path sees them: behind a WireGuard data header

function v4(total: number, room = total): Uint8Array {
  const b = new Uint8Array(OFF + room);
  b[OFF] = 0x45;
  b[OFF + 2] = total >> 8;
  b[OFF + 3] = total & 0xff;
  b.set([192, 0, 2, 1], OFF + 12);
  b.set([198, 51, 100, 7], OFF + 16);
  return b;
}

function v6(payload: number, room = 40 + payload): Uint8Array {
  const b = new Uint8Array(OFF + room);
  b[OFF] = 0x60;
  b[OFF + 4] = payload >> 8;
  b[OFF + 5] = payload & 0xff;
  b[OFF + 8] = 0x20; // source 2001:db8::1
  b[OFF + 9] = 0x01;
  b[OFF + 23] = 1;
  b[OFF + 24] = 0xfe; // destination fe80::2
  b[OFF + 25] = 0x80;
  b[OFF + 39] = 2;
  return b;
}

test('IPv4: the total length field, bounded by what is there; header and addresses where RFC 791 puts them', () => {
  assert.equal(ipPacketLength(v4(84), OFF, 84), 84);
  assert.equal(ipPacketLength(v4(84, 100), OFF, 100), 84, 'transport padding after the packet is not counted');
  assert.equal(ipPacketLength(v4(20), OFF, 20), 20);
  assert.equal(ipPacketLength(v4(84), OFF, 83), -1, 'longer than what arrived');
  assert.equal(ipPacketLength(v4(19, 40), OFF, 40), -1, 'shorter than its own header');
  assert.equal(ipPacketLength(v4(84), OFF, 19), -1, 'not even a header');
  const b = v4(84);
  assert.equal(addressLength(b, OFF), 4);
  assert.deepEqual([...b.subarray(sourceOffset(b, OFF), sourceOffset(b, OFF) + 4)], [192, 0, 2, 1]);
  assert.deepEqual([...b.subarray(destinationOffset(b, OFF), destinationOffset(b, OFF) + 4)], [198, 51, 100, 7]);
});

test('IPv6: 40 plus the payload length field; addresses where RFC 8200 puts them', () => {
  assert.equal(ipPacketLength(v6(16), OFF, 56), 56);
  assert.equal(ipPacketLength(v6(0), OFF, 40), 40);
  assert.equal(ipPacketLength(v6(16, 70), OFF, 70), 56, 'padding is not counted');
  assert.equal(ipPacketLength(v6(16), OFF, 55), -1, 'longer than what arrived');
  assert.equal(ipPacketLength(v6(0), OFF, 39), -1, 'not even a header');
  assert.equal(ipPacketLength(v6(0xffff, 60), OFF, 60), -1, 'a payload length past the end');
  const b = v6(16);
  assert.equal(addressLength(b, OFF), 16);
  const src = sourceOffset(b, OFF);
  const dst = destinationOffset(b, OFF);
  assert.equal(Buffer.from(b.subarray(src, src + 16)).toString('hex'), '20010000000000000000000000000001');
  assert.equal(Buffer.from(b.subarray(dst, dst + 16)).toString('hex'), 'fe800000000000000000000000000002');
});

test('any other version nibble is not an IP packet, whatever its length fields say', () => {
  for (let v = 0; v < 16; v++) {
    if (v === 4 || v === 6) continue;
    const b = v4(84);
    b[OFF] = (v << 4) | 5;
    assert.equal(ipPacketLength(b, OFF, 84), -1, `version ${v}`);
    assert.equal(addressLength(b, OFF), 0, `version ${v}`);
  }
  assert.equal(ipPacketLength(new Uint8Array(0), 0, 0), -1, 'nothing at all');
});
