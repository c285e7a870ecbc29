// Unit tests for src/ip.ts: inet_pton-strict parsing, glibc inet_ntop formatting (RFC 5952 plus the IPv4 tail
// glibc keeps), prefixes and masking, as used by the UAPI (interfaces.md) and the allowed-IPs table.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatIP, formatPrefix, maskPrefix, parseIP, parsePrefix } from '../../src/ip.js';
import { WgError, Errno } from '../../src/errors.js';

const hex = (b: Uint8Array | null): string | null => (b === null ? null : Buffer.from(b).toString('hex'));

test('IPv4 dotted quads parse to 4 bytes and format back', () => {
  assert.deepEqual(parseIP('192.168.4.20'), Uint8Array.of(192, 168, 4, 20));
  assert.deepEqual(parseIP('0.0.0.0'), new Uint8Array(4));
  assert.deepEqual(parseIP('255.255.255.255'), Uint8Array.of(255, 255, 255, 255));
  for (const s of ['10.0.0.1', '64.15.123.211', '1.0.0.0', '0.0.0.0']) assert.equal(formatIP(parseIP(s)!), s);
});

test('IPv6 text parses to 16 bytes, with :: and an IPv4 tail', () => {
  assert.equal(hex(parseIP('::')), '00'.repeat(16));
  assert.equal(hex(parseIP('::1')), '00'.repeat(15) + '01');
  assert.equal(hex(parseIP('1::')), '0001' + '00'.repeat(14));
  assert.equal(hex(parseIP('2001:DB8::1')), '20010db8' + '00'.repeat(11) + '01');
  assert.equal(hex(parseIP('::ffff:1.2.3.4')), '00'.repeat(10) + 'ffff01020304');
  assert.equal(hex(parseIP('1:2:3:4:5:6:1.2.3.4')), '000100020003000400050006' + '01020304');
  assert.equal(hex(parseIP('1:2:3:4:5:6:7::')), '0001000200030004000500060007' + '0000');
  assert.equal(hex(parseIP('::2:3:4:5:6:7:8')), '0000000200030004000500060007' + '0008');
  assert.equal(hex(parseIP('0001:02:003:0004:5:6:7:8')), '00010002000300040005000600070008');
});

test('RFC 5952 formatting matches inet_ntop', () => {
  const cases: Array<[string, string]> = [
    ['2001:db8::1', '2001:db8::1'],
    ['::', '::'],
    ['::1', '::1'],
    ['1::', '1::'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // first of two equal runs
    ['2001:0db8:0000:0000:0000:0000:0002:0001', '2001:db8::2:1'],
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // a single zero group is not compressed
    ['1:0:0:2:0:0:0:3', '1:0:0:2::3'], // the longer run wins
    ['2001:DB8:AAAA::', '2001:db8:aaaa::'],
    ['2607:5300:6000:6b00:0:0:c05f:543', '2607:5300:6000:6b00::c05f:543'],
    ['::ffff:1.2.3.4', '::ffff:1.2.3.4'],
    ['::ffff:0102:0304', '::ffff:1.2.3.4'],
    ['0:0:0:0:0:ffff:0:0', '::ffff:0.0.0.0'],
    ['::1.2.3.4', '::1.2.3.4'], // glibc keeps the IPv4 tail after six zero groups
    ['::1:0', '::0.1.0.0'],
    ['::2', '::2'], // seven zero groups: plain hex
    ['::ffff:0:1.2.3.4', '::ffff:0:102:304'],
    ['1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8'],
  ];
  for (const [input, want] of cases) assert.equal(formatIP(parseIP(input)!), want, input);
});

test('parse(format(x)) round-trips for 2000 pseudo-random addresses', () => {
  let s = 7;
  const rand = (): number => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) >>> 16;
  for (let i = 0; i < 2000; i++) {
    const b = new Uint8Array(i & 1 ? 16 : 4);
    // Mostly zero groups, so every compression case comes up.
    for (let j = 0; j < b.length; j += 2) if (rand() % 3 === 0) [b[j], b[j + 1]] = [rand() & 0xff, rand() & 0xff];
    const text = formatIP(b);
    assert.deepEqual(parseIP(text), b, text);
    assert.equal(formatIP(parseIP(text)!), text);
  }
});

test('garbage, junk around addresses, bad octets and zone ids are rejected', () => {
  const bad = [
    '', ' 1.2.3.4', '1.2.3.4 ', '1.2.3', '1.2.3.4.5', '256.1.1.1', '1.2.3.-1', '01.2.3.4', '1.2.3.04', '1..2.3',
    '1.2.3.4/', 'a.b.c.d', '0x1.2.3.4', ':', ':::', '1:::2', '1::2::3', ':1::', '1::2:', '1:2:3:4:5:6:7:8::',
    '::1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7', '1:2:3:4:5:6:7:8:9', '12345::', 'g::', 'fe80::1%eth0', '1.2.3.4::',
    '::1.2.3.4:5', '::256.1.1.1', '::01.2.3.4', '1:2:3:4:5:6:7:1.2.3.4', '[::1]', '::ffff:1.2.3', 'localhost',
  ];
  for (const s of bad) assert.equal(parseIP(s), null, JSON.stringify(s));
});

test('parsePrefix: cidr optional, range-checked per family', () => {
  assert.deepEqual(parsePrefix('10.0.0.0/8'), { addr: Uint8Array.of(10, 0, 0, 0), cidr: 8 });
  assert.deepEqual(parsePrefix('10.1.2.3'), { addr: Uint8Array.of(10, 1, 2, 3), cidr: 32 });
  assert.equal(parsePrefix('::/0')?.cidr, 0);
  assert.equal(parsePrefix('::1')?.cidr, 128);
  assert.equal(parsePrefix('1.2.3.4/32')?.cidr, 32);
  assert.equal(parsePrefix('::/128')?.cidr, 128);
  for (const s of ['1.2.3.4/33', '::/129', '1.2.3.4/', '1.2.3.4/-1', '1.2.3.4/+8', '1.2.3.4/8/8', '1.2.3.4/ 8', '/8', '1.2.3.4/0x8', '::/1000']) {
    assert.equal(parsePrefix(s), null, s);
  }
});

test('maskPrefix zeroes host bits into a new array; formatPrefix prints what it is given', () => {
  const a = parseIP('2607:5300:6d8a:6bf8:dab1:f1df:c05f:1523')!;
  const before = hex(a);
  assert.equal(formatPrefix(maskPrefix(a, 83), 83), '2607:5300:6d8a:6bf8:dab1:e000::/83');
  assert.equal(formatPrefix(maskPrefix(a, 21), 21), '2607:5000::/21');
  assert.equal(formatPrefix(maskPrefix(a, 0), 0), '::/0');
  assert.equal(formatPrefix(maskPrefix(a, 128), 128), '2607:5300:6d8a:6bf8:dab1:f1df:c05f:1523/128');
  assert.equal(hex(a), before, 'input untouched');
  assert.notEqual(maskPrefix(a, 128), a, 'always a copy');
  assert.equal(formatPrefix(maskPrefix(parseIP('192.95.5.93')!, 27), 27), '192.95.5.64/27');
  assert.equal(formatPrefix(maskPrefix(parseIP('10.1.0.20')!, 29), 29), '10.1.0.16/29');
  assert.equal(formatPrefix(parseIP('10.1.0.20')!, 29), '10.1.0.20/29');
});

test('maskPrefix and formatIP reject bad input with WgError EINVAL', () => {
  const einval = (e: unknown): boolean => e instanceof WgError && e.errno === Errno.EINVAL;
  assert.throws(() => maskPrefix(new Uint8Array(4), 33), einval);
  assert.throws(() => maskPrefix(new Uint8Array(16), 129), einval);
  assert.throws(() => maskPrefix(new Uint8Array(4), -1), einval);
  assert.throws(() => maskPrefix(new Uint8Array(4), 1.5), einval);
  assert.throws(() => maskPrefix(new Uint8Array(5), 8), einval);
  assert.throws(() => formatIP(new Uint8Array(6)), einval);
});
