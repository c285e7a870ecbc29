// The UAPI protocol (interfaces.md "The UAPI socket") against a real Device and an in-memory host: every
// key, the exact get text, each negative errno, non-transactional sets, and the byte-stream connection.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Device } from '../../src/device.js';
import { FakeClock, seededRandom } from '../../src/clock.js';
import { Errno, WgError } from '../../src/errors.js';
import { keyToHex } from '../../src/keys.js';
import type { Endpoint, Peer } from '../../src/peer.js';
import { UapiConnection, UapiSetSession, uapiGet, type UapiHost } from '../../src/uapi/uapi.js';
import { Network, pair, key } from '../helpers/net.js';

class MemHost implements UapiHost {
  listenPort = 0;
  fwmark = 0;
  busyPort = -1;
  badMark = -1;
  readonly sent: { data: Uint8Array; to: Endpoint }[] = [];
  device: Device;
  constructor(device?: Device) {
    this.device =
      device ??
      new Device({
        io: { send: (data, to) => this.sent.push({ data: Uint8Array.from(data), to }), deliver: () => {} },
        clock: new FakeClock(),
        random: seededRandom(7),
      });
  }
  setListenPort(port: number): number {
    if (port === this.busyPort) return Errno.EADDRINUSE;
    this.listenPort = port === 0 ? 43210 : port; // 0 = "pick one", as the endpoint's rebind does
    return 0;
  }
  setFwmark(mark: number): number {
    if (mark === this.badMark) return Errno.EPERM;
    this.fwmark = mark;
    return 0;
  }
}

/** Feeds `text` to a fresh connection (in one chunk) and returns all replies joined, plus close. */
function talk(host: UapiHost, text: string, conn = new UapiConnection(host)): { out: string; close: boolean } {
  const r = conn.feed(Buffer.from(text, 'latin1'));
  return { out: r.replies.join(''), close: r.close };
}

const set = (host: UapiHost, ...lines: string[]): string => talk(host, `set=1\n${lines.map((l) => l + '\n').join('')}\n`).out;
const get = (host: UapiHost): string => talk(host, 'get=1\n\n').out;
const hex = (k: Uint8Array): string => keyToHex(k);
const pub = (n: number): Uint8Array => key(100 + n); // any 32 bytes serve as a peer's public key

/** The public key for private key `sk` (computed by a throwaway Device). */
function publicOf(sk: Uint8Array): Uint8Array {
  const d = new MemHost().device;
  d.setPrivateKey(sk);
  return Uint8Array.from(d.publicKey!);
}

function peerOf(host: MemHost, n: number): Peer | undefined {
  return host.device.peer(pub(n));
}

const prefixes = (host: MemHost, p: Peer): string[] =>
  get(host)
    .split('\n')
    .reduce<{ cur: string; out: string[] }>(
      (acc, l) => {
        if (l.startsWith('public_key=')) acc.cur = l.slice(11);
        else if (l.startsWith('allowed_ip=') && acc.cur === hex(p.publicKey)) acc.out.push(l.slice(11));
        return acc;
      },
      { cur: '', out: [] },
    ).out;

test('get on an empty device is only errno=0 and the blank line', () => {
  assert.equal(get(new MemHost()), 'errno=0\n\n');
});

test('interface keys: private key read back clamped, then listen_port and fwmark, in that order', () => {
  const h = new MemHost();
  const sk = new Uint8Array(32).fill(0xff);
  assert.equal(set(h, `private_key=${hex(sk).toUpperCase()}`, 'listen_port=51820', 'fwmark=4294967295'), 'errno=0\n\n');
  const clamped = Uint8Array.from(sk);
  clamped[0] &= 248;
  clamped[31] = (clamped[31] & 127) | 64;
  assert.equal(get(h), `private_key=${hex(clamped)}\nlisten_port=51820\nfwmark=4294967295\nerrno=0\n\n`);
  assert.equal(h.device.privateKey![0], 0xf8);

  // fwmark=0 turns it off and it disappears from get; listen_port=0 asks the host for a random port.
  assert.equal(set(h, 'fwmark=0', 'listen_port=0'), 'errno=0\n\n');
  assert.equal(get(h), `private_key=${hex(clamped)}\nlisten_port=43210\nerrno=0\n\n`);
});

test('an all-zero private key removes it', () => {
  const h = new MemHost();
  set(h, `private_key=${hex(key(1))}`);
  assert.ok(h.device.privateKey);
  assert.equal(set(h, `private_key=${'0'.repeat(64)}`), 'errno=0\n\n');
  assert.equal(h.device.privateKey, null);
  assert.equal(get(h), 'errno=0\n\n');
});

test('a peer with every key: exact get text and order', () => {
  const h = new MemHost();
  const psk = key(50);
  const r = set(
    h,
    `public_key=${hex(pub(1))}`,
    `preshared_key=${hex(psk)}`,
    'endpoint=198.51.100.7:51820',
    'persistent_keepalive_interval=0',
    'replace_allowed_ips=true',
    'allowed_ip=2001:db8:1::99/64',
    'allowed_ip=203.0.113.77/24',
    'allowed_ip=198.18.0.1/32',
    'protocol_version=1',
  );
  assert.equal(r, 'errno=0\n\n');
  const p = peerOf(h, 1)!;
  p.txBytes = 2n ** 64n - 1n;
  p.rxBytes = 2n ** 63n;
  assert.equal(
    get(h),
    [
      `public_key=${hex(pub(1))}`,
      `preshared_key=${hex(psk)}`,
      'protocol_version=1',
      'endpoint=198.51.100.7:51820',
      'last_handshake_time_sec=0',
      'last_handshake_time_nsec=0',
      'tx_bytes=18446744073709551615',
      'rx_bytes=9223372036854775808',
      'persistent_keepalive_interval=0',
      // IPv4 first, then IPv6, each masked
      'allowed_ip=203.0.113.0/24',
      'allowed_ip=198.18.0.1/32',
      'allowed_ip=2001:db8:1::/64',
      'errno=0',
      '',
      '',
    ].join('\n'),
  );
});

test('full reply order with interface keys and two peers; a peer without a psk prints all zeros', () => {
  const h = new MemHost();
  set(h, `private_key=${hex(key(1))}`, 'listen_port=1234', 'fwmark=7', `public_key=${hex(pub(1))}`, `public_key=${hex(pub(2))}`, 'persistent_keepalive_interval=9');
  const keys = get(h)
    .split('\n')
    .map((l) => l.split('=')[0]);
  const peerKeys = ['public_key', 'preshared_key', 'protocol_version', 'last_handshake_time_sec', 'last_handshake_time_nsec', 'tx_bytes', 'rx_bytes', 'persistent_keepalive_interval'];
  assert.deepEqual(keys, ['private_key', 'listen_port', 'fwmark', ...peerKeys, ...peerKeys, 'errno', '', '']);
  assert.match(get(h), new RegExp(`preshared_key=${'0'.repeat(64)}\n`));
  assert.match(get(h), /persistent_keepalive_interval=9\n/);
});

test('endpoints: IPv4, IPv6 in brackets (inet_ntop form), v4-mapped; bad forms are EINVAL', () => {
  const h = new MemHost();
  assert.equal(set(h, `public_key=${hex(pub(1))}`, 'endpoint=[2001:0db8:00ff:0:0:0:0:2]:51821'), 'errno=0\n\n');
  assert.match(get(h), /\nendpoint=\[2001:db8:ff::2\]:51821\n/);
  assert.deepEqual(peerOf(h, 1)!.endpoint!.addr.length, 16);
  assert.equal(set(h, `public_key=${hex(pub(1))}`, 'endpoint=[::ffff:198.51.100.3]:1'), 'errno=0\n\n');
  assert.match(get(h), /\nendpoint=\[::ffff:198\.51\.100\.3\]:1\n/);
  assert.equal(set(h, `public_key=${hex(pub(1))}`, 'endpoint=198.51.100.9:65535'), 'errno=0\n\n');
  assert.deepEqual(peerOf(h, 1)!.endpoint, { addr: Uint8Array.of(198, 51, 100, 9), port: 65535 });

  for (const bad of ['2001:db8::1:51820', '[198.51.100.1]:5', 'example.com:51820', '198.51.100.1:65536', '198.51.100.1', '[fe80::1%eth0]:5', '198.51.100.1:', '198.51.100.1:+5']) {
    assert.equal(set(h, `public_key=${hex(pub(1))}`, `endpoint=${bad}`), `errno=${-Errno.EINVAL}\n\n`, bad);
  }
  assert.match(get(h), /\nendpoint=198\.51\.100\.9:65535\n/, 'failed sets left the last good endpoint');
});

test('errno classes: EPROTO, EINVAL (value, unknown key, wrong section), EADDRINUSE, EIO', () => {
  const h = new MemHost();
  h.busyPort = 5555;
  h.badMark = 66;
  const P = `public_key=${hex(pub(1))}`;
  const cases: [string[], number][] = [
    [['no equals sign'], -71],
    [['listen_port=65536'], -22],
    [['listen_port=-1'], -22],
    [['listen_port='], -22],
    [['fwmark=0x10'], -22],
    [['fwmark=4294967296'], -22],
    [['private_key=abcd'], -22],
    [['replace_peers=false'], -22],
    [['bogus=1'], -22],
    [[P, 'private_key=' + hex(key(1))], -22], // interface key after public_key
    [[P, 'listen_port=1'], -22],
    [['public_key=xyz'], -22],
    [[P, 'protocol_version=2'], -22],
    [[P, 'update_only=yes'], -22],
    [[P, 'remove=1'], -22],
    [[P, 'replace_allowed_ips=false'], -22],
    [[P, 'preshared_key=00'], -22],
    [[P, 'persistent_keepalive_interval=65536'], -22],
    [[P, 'allowed_ip=203.0.113.1'], -22], // the slash is required
    [[P, 'allowed_ip=203.0.113.0/33'], -22],
    [[P, 'allowed_ip=203.0.113.0/024'], -22],
    [[P, 'allowed_ip=2001:db8::/129'], -22],
    [[P, 'allowed_ip=-nonsense/8'], -22],
    [[P, 'nope=1'], -22],
    [['listen_port=5555'], -98],
    [['fwmark=66'], -98],
  ];
  for (const [lines, errno] of cases) assert.equal(set(h, ...lines), `errno=${errno}\n\n`, lines.join(' | '));
  // A line longer than 64 KiB is an I/O error, like bufio.Scanner's limit in wireguard-go.
  assert.equal(talk(h, `set=1\nfwmark=1\nendpoint=${'9'.repeat(70_000)}\nfwmark=2\n\n`).out, `errno=${-Errno.EIO}\n\n`);
  assert.equal(h.fwmark, 1, 'the line before the long one was applied, the one after not');
});

test('too many peers is EINVAL (the Device refusing a new peer)', () => {
  class SmallDevice extends Device {
    override addPeer(p: Uint8Array): Peer | undefined {
      if (!this.peer(p) && this.peerCount >= 2) throw new WgError('too-many-peers', 'too many peers', Errno.EINVAL);
      return super.addPeer(p);
    }
  }
  const h = new MemHost(new SmallDevice({ io: { send: () => {}, deliver: () => {} }, clock: new FakeClock(), random: seededRandom(3) }));
  assert.equal(set(h, `public_key=${hex(pub(1))}`, `public_key=${hex(pub(2))}`, `public_key=${hex(pub(3))}`, 'allowed_ip=203.0.113.3/32'), 'errno=-22\n\n');
  assert.equal(h.device.peerCount, 2);
});

test('not transactional: lines before the bad one stay applied, the rest of the operation is ignored', () => {
  const h = new MemHost();
  const conn = new UapiConnection(h);
  const r = talk(h, `set=1\nlisten_port=4000\npublic_key=${hex(pub(1))}\nallowed_ip=203.0.113.1/32\nendpoint=bad\nallowed_ip=203.0.113.2/32\nno-equals\n\nget=1\n\n`, conn);
  const [first, second] = r.out.split(/(?<=errno=-?\d+\n\n)/);
  assert.equal(first, 'errno=-22\n\n', 'the first bad line decides the errno (not the later EPROTO line)');
  assert.equal(h.listenPort, 4000);
  assert.deepEqual(prefixes(h, peerOf(h, 1)!), ['203.0.113.1/32']);
  assert.match(second, /^listen_port=4000\npublic_key=/, 'the connection keeps serving after a failed set');
  assert.equal(r.close, false);
});

test('allowed_ip: masked, moved from another peer, "-" removes exactly that prefix, replace_allowed_ips', () => {
  const h = new MemHost();
  set(h, `public_key=${hex(pub(1))}`, 'allowed_ip=203.0.113.9/24', 'allowed_ip=198.18.0.0/15', 'allowed_ip=2001:db8:1::5/64');
  const p1 = peerOf(h, 1)!;
  assert.deepEqual(prefixes(h, p1), ['203.0.113.0/24', '198.18.0.0/15', '2001:db8:1::/64']);

  // Moves to peer 2.
  set(h, `public_key=${hex(pub(2))}`, 'allowed_ip=198.18.0.0/15');
  const p2 = peerOf(h, 2)!;
  assert.deepEqual(prefixes(h, p1), ['203.0.113.0/24', '2001:db8:1::/64']);
  assert.deepEqual(prefixes(h, p2), ['198.18.0.0/15']);

  // Removal: a different cidr, and a prefix owned by another peer, are no-ops; the exact prefix goes.
  assert.equal(set(h, `public_key=${hex(pub(1))}`, 'allowed_ip=-203.0.113.0/25', 'allowed_ip=-198.18.0.0/15'), 'errno=0\n\n');
  assert.deepEqual(prefixes(h, p1), ['203.0.113.0/24', '2001:db8:1::/64']);
  assert.deepEqual(prefixes(h, p2), ['198.18.0.0/15']);
  assert.equal(set(h, `public_key=${hex(pub(1))}`, 'allowed_ip=-203.0.113.200/24', 'allowed_ip=-2001:db8:1::/64'), 'errno=0\n\n');
  assert.deepEqual(prefixes(h, p1), []);
  assert.equal(h.device.allowedIps.lookup(Uint8Array.of(203, 0, 113, 1)), undefined);

  set(h, `public_key=${hex(pub(2))}`, 'allowed_ip=203.0.113.0/24');
  assert.equal(set(h, `public_key=${hex(pub(2))}`, 'replace_allowed_ips=true', 'allowed_ip=2001:db8:1::/48'), 'errno=0\n\n');
  assert.deepEqual(prefixes(h, p2), ['2001:db8:1::/48']);
});

test('replace_peers removes every peer before the new ones are added', () => {
  const h = new MemHost();
  set(h, `public_key=${hex(pub(1))}`, 'allowed_ip=203.0.113.1/32', `public_key=${hex(pub(2))}`);
  assert.equal(h.device.peerCount, 2);
  assert.equal(set(h, 'replace_peers=true', `public_key=${hex(pub(3))}`), 'errno=0\n\n');
  assert.deepEqual([...h.device.allPeers()].map((p) => hex(p.publicKey)), [hex(pub(3))]);
  assert.equal(h.device.allowedIps.lookup(Uint8Array.of(203, 0, 113, 1)), undefined);
});

test('remove=true removes the peer and the rest of its section is ignored (but still validated)', () => {
  const h = new MemHost();
  set(h, `public_key=${hex(pub(1))}`, 'allowed_ip=203.0.113.1/32', `public_key=${hex(pub(2))}`);
  assert.equal(set(h, `public_key=${hex(pub(1))}`, 'remove=true', 'allowed_ip=203.0.113.5/32', 'endpoint=198.51.100.1:1'), 'errno=0\n\n');
  assert.equal(peerOf(h, 1), undefined);
  assert.equal(h.device.allowedIps.lookup(Uint8Array.of(203, 0, 113, 5)), undefined);
  assert.equal(set(h, `public_key=${hex(pub(2))}`, 'remove=true', 'endpoint=nonsense'), 'errno=-22\n\n');
  assert.equal(h.device.peerCount, 0);
  // Removing a peer that does not exist is fine and leaves nothing behind.
  assert.equal(set(h, `public_key=${hex(pub(9))}`, 'remove=true'), 'errno=0\n\n');
  assert.equal(h.device.peerCount, 0);
});

test('update_only: never creates, but updates an existing peer', () => {
  const h = new MemHost();
  assert.equal(set(h, `public_key=${hex(pub(1))}`, 'update_only=true', 'allowed_ip=203.0.113.1/32', 'endpoint=198.51.100.1:9'), 'errno=0\n\n');
  assert.equal(h.device.peerCount, 0);
  assert.equal(h.device.allowedIps.lookup(Uint8Array.of(203, 0, 113, 1)), undefined);
  set(h, `public_key=${hex(pub(1))}`);
  assert.equal(set(h, `public_key=${hex(pub(1))}`, 'update_only=true', 'allowed_ip=203.0.113.1/32'), 'errno=0\n\n');
  assert.equal(h.device.allowedIps.lookup(Uint8Array.of(203, 0, 113, 1)), peerOf(h, 1));
});

test('a public_key equal to our own is ignored: its lines are consumed, the next peer applies', () => {
  const h = new MemHost();
  const sk = key(1);
  const self = publicOf(sk);
  const r = set(h, `private_key=${hex(sk)}`, `public_key=${hex(self)}`, 'allowed_ip=203.0.113.1/32', 'endpoint=198.51.100.1:5', `public_key=${hex(pub(2))}`, 'allowed_ip=203.0.113.2/32');
  assert.equal(r, 'errno=0\n\n');
  assert.equal(h.device.peer(self), undefined);
  assert.equal(h.device.peerCount, 1);
  assert.equal(h.device.allowedIps.lookup(Uint8Array.of(203, 0, 113, 1)), undefined);
  assert.equal(h.device.allowedIps.lookup(Uint8Array.of(203, 0, 113, 2)), peerOf(h, 2));
});

test('setting a private key whose public key is a peer removes that peer', () => {
  const h = new MemHost();
  const sk = key(5);
  set(h, `public_key=${hex(publicOf(sk))}`, 'allowed_ip=203.0.113.5/32', `public_key=${hex(pub(2))}`);
  assert.equal(h.device.peerCount, 2);
  assert.equal(set(h, `private_key=${hex(sk)}`), 'errno=0\n\n');
  assert.equal(h.device.peerCount, 1);
  assert.equal(h.device.peer(publicOf(sk)), undefined);
  assert.equal(h.device.allowedIps.lookup(Uint8Array.of(203, 0, 113, 5)), undefined);
});

test('preshared_key: set, then all zero means none', () => {
  const h = new MemHost();
  set(h, `public_key=${hex(pub(1))}`, `preshared_key=${hex(key(9))}`);
  assert.deepEqual(peerOf(h, 1)!.presharedKey, key(9));
  set(h, `public_key=${hex(pub(1))}`, `preshared_key=${'0'.repeat(64)}`);
  assert.ok(peerOf(h, 1)!.presharedKey.every((b) => b === 0));
  assert.match(get(h), new RegExp(`\npreshared_key=${'0'.repeat(64)}\n`));
});

test('persistent keepalive 0 -> non-zero sends at once (after the section, so the endpoint is known)', () => {
  const h = new MemHost();
  set(h, `private_key=${hex(key(1))}`);
  assert.equal(set(h, `public_key=${hex(pub(1))}`, 'persistent_keepalive_interval=25', 'endpoint=198.51.100.4:51820'), 'errno=0\n\n');
  assert.equal(peerOf(h, 1)!.timers.persistentKeepalive, 25);
  assert.equal(h.sent.length, 1, 'one datagram (a handshake initiation to start the session) went out');
  assert.deepEqual(h.sent[0].to, { addr: Uint8Array.of(198, 51, 100, 4), port: 51820 });
  assert.equal(h.sent[0].data[0], 1);
  // Non-zero -> non-zero sends nothing; a failed set keeps the interval but sends nothing either.
  set(h, `public_key=${hex(pub(2))}`, 'endpoint=198.51.100.5:1', `public_key=${hex(pub(1))}`, 'persistent_keepalive_interval=30');
  assert.equal(h.sent.length, 1);
  assert.equal(set(h, `public_key=${hex(pub(2))}`, 'persistent_keepalive_interval=5', 'bogus=1'), 'errno=-22\n\n');
  assert.equal(peerOf(h, 2)!.timers.persistentKeepalive, 5);
  assert.equal(h.sent.length, 1);
});

test('last handshake time comes from the peer timers (a real handshake on the fake clock)', () => {
  const net = new Network();
  const { a, pa } = pair(net, key(1), key(2));
  a.device.sendKeepalive(pa);
  net.run();
  const wall = pa.timers.lastHandshakeWall!;
  assert.ok(wall && wall.sec > 0n);
  const h = new MemHost(a.device);
  const text = get(h);
  assert.match(text, new RegExp(`\nlast_handshake_time_sec=${wall.sec}\nlast_handshake_time_nsec=${wall.nsec}\n`));
  assert.match(text, /\ntx_bytes=[1-9]\d*\nrx_bytes=[1-9]\d*\n/);
  assert.match(text, /\nendpoint=198\.51\.100\.2:51822\n/);
});

test('lines split across chunks, byte by byte, give the same replies as one chunk', () => {
  const script = `set=1\nprivate_key=${hex(key(1))}\nlisten_port=777\npublic_key=${hex(pub(1))}\nallowed_ip=2001:db8:1::/64\n\nget=1\n\nset=1\nfwmark=x\n\n`;
  const whole = talk(new MemHost(), script).out;
  const h = new MemHost();
  const conn = new UapiConnection(h);
  const replies: string[] = [];
  for (const b of Buffer.from(script)) {
    const r = conn.feed(Uint8Array.of(b));
    assert.equal(r.close, false);
    replies.push(...r.replies);
  }
  assert.equal(replies.length, 3);
  assert.equal(replies.join(''), whole);
  assert.match(whole, /^errno=0\n\nprivate_key=[0-9a-f]{64}\nlisten_port=777\npublic_key=[0-9a-f]{64}\n[^]*allowed_ip=2001:db8:1::\/64\nerrno=0\n\nerrno=-22\n\n$/);
});

test('a set is applied only when its blank line arrives', () => {
  const h = new MemHost();
  const conn = new UapiConnection(h);
  assert.deepEqual(conn.feed(Buffer.from('set=1\nlisten_port=9\nfwm')).replies, []);
  assert.equal(h.listenPort, 0, 'nothing half-applied while the operation is still arriving');
  assert.deepEqual(conn.feed(Buffer.from('ark=3\n\r\n')).replies, ['errno=0\n\n'], 'CRLF lines are accepted like bufio.ScanLines');
  assert.equal(h.listenPort, 9);
  assert.equal(h.fwmark, 3);
});

test('operations: unknown one closes, get needs its blank line, EOF finishes a pending set', () => {
  const h = new MemHost();
  let conn = new UapiConnection(h);
  let r = conn.feed(Buffer.from('get=1\n\nhello=1\nget=1\n\n'));
  assert.deepEqual(r.replies, ['errno=0\n\n'], 'nothing after the unknown operation is answered');
  assert.equal(r.close, true);
  assert.deepEqual(conn.feed(Buffer.from('get=1\n\n')), { replies: [], close: true });

  for (const op of ['set=2\n', 'get=1\r\n', 'set\n', '\n']) assert.equal(talk(h, op).close, true, JSON.stringify(op));

  conn = new UapiConnection(h);
  r = conn.feed(Buffer.from('get=1\nx'));
  assert.deepEqual(r.replies, ['errno=-22\n\n'], 'wireguard-go reads one byte after get=1 and wants a newline');
  assert.equal(r.close, false);

  conn = new UapiConnection(h);
  assert.deepEqual(conn.feed(Buffer.from('set=1\nlisten_port=12\nfwmark=5')).replies, []);
  assert.deepEqual(conn.end(), { replies: ['errno=0\n\n'], close: true });
  assert.equal(h.listenPort, 12);
  assert.equal(h.fwmark, 5);
  assert.equal(conn.closed, true);
});

test('UapiSetSession and uapiGet can be used directly', () => {
  const h = new MemHost();
  const s = new UapiSetSession(h);
  s.line('listen_port=1');
  s.line(`public_key=${hex(pub(1))}`);
  s.line('listen_port=2');
  s.line('listen_port=3');
  assert.equal(s.errno, -22);
  assert.equal(s.finish(), -22);
  assert.equal(h.listenPort, 1);
  assert.match(uapiGet(h), /^listen_port=1\npublic_key=/);
});

test('no key material in logs', () => {
  const logs: string[] = [];
  const h = new MemHost();
  const conn = new UapiConnection(h, (_l, m) => logs.push(m));
  const sk = key(1);
  const psk = key(2);
  conn.feed(Buffer.from(`set=1\nprivate_key=${hex(sk)}\npublic_key=${hex(pub(1))}\npreshared_key=${hex(psk)}\npreshared_key=${hex(psk)}x\n\n`));
  assert.ok(logs.length > 2);
  const all = logs.join('\n').toLowerCase();
  for (const k of [sk, psk, pub(1)]) {
    assert.ok(!all.includes(hex(k)), 'no hex key in logs');
    assert.ok(!all.includes(Buffer.from(k).toString('base64').toLowerCase()), 'no base64 key in logs');
  }
});
