// Key material never reaches a log line (issue 5 item 8), without root: the leak detector that
// test/root/secrets.test.ts relies on finds a key in every encoding it claims to, and the UAPI's error
// messages for bad input carrying a key (in any field, or as a key name) never echo it.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Device } from '../../src/device.js';
import { FakeClock, seededRandom } from '../../src/clock.js';
import { peerName } from '../../src/keys.js';
import { UapiConnection, type UapiHost } from '../../src/uapi/uapi.js';
import { findLeaks } from '../helpers/leaks.js';

const hex = (k: Uint8Array): string => Buffer.from(k).toString('hex');
const b64 = (k: Uint8Array): string => Buffer.from(k).toString('base64');

test('the leak detector finds a key in each encoding, whole or partial, and not in a peer(AbCd…WxYz) name', () => {
  const k = randomBytes(32);
  const samples = [
    `private_key=${hex(k)}`, `key ${hex(k).toUpperCase()} set`, `x${b64(k)}`, JSON.stringify({ k: k.toString('base64url') }),
    `psk: ${Buffer.from([1, ...k]).toString('base64')}`, `psk: ${Buffer.from([1, 2, ...k]).toString('base64')}`,
    `<Buffer ${[...k].map((b) => b.toString(16).padStart(2, '0')).join(' ')}>`, `Uint8Array(32) [ ${[...k].join(', ')} ]`,
    k.toString('latin1'), `…${hex(k).slice(20, 40)}…`, `…${b64(k).slice(10, 24)}…`,
  ];
  for (const s of samples) assert.equal(findLeaks({ k }, s).length, 1, `found in ${JSON.stringify(s.slice(0, 40))}`);
  assert.deepEqual(findLeaks({ k }, `DEBUG: (wg0) 2025/05/22 01:45:02 ${peerName(k)}: sending handshake initiation`), []);
  assert.deepEqual(findLeaks({ k }, `${hex(randomBytes(32))} ${b64(randomBytes(32))}`), [], 'other keys are not this one');
});

test('UAPI: bad input carrying a key, in any field or as a key name, is refused and never echoed', () => {
  const device = new Device({ io: { send: () => {}, deliver: () => {} }, clock: new FakeClock(), random: seededRandom(9) });
  const host: UapiHost = { device, listenPort: 0, fwmark: 0, setListenPort: () => 0, setFwmark: () => 0 };
  const k = randomBytes(32);
  const peer = `public_key=${hex(randomBytes(32))}\n`;
  const fields = ['private_key', 'listen_port', 'fwmark', 'replace_peers'];
  const peerFields = ['preshared_key', 'endpoint', 'persistent_keepalive_interval', 'replace_allowed_ips', 'allowed_ip', 'remove', 'update_only', 'protocol_version'];
  const values = [hex(k), hex(k).toUpperCase(), `${hex(k)}f`, hex(k).slice(0, 63), b64(k), k.toString('base64url'), `x${b64(k)}x`, `198.51.100.1:${hex(k)}`];
  const requests: string[] = [];
  for (const v of values) {
    // 64 hex digits are a valid value for the key fields: those sets succeed, they are not bad input.
    const validKey = /^[0-9a-fA-F]{64}$/.test(v);
    for (const f of fields) if (!(validKey && f === 'private_key')) requests.push(`set=1\n${f}=${v}\n\n`);
    for (const f of peerFields) if (!(validKey && f === 'preshared_key')) requests.push(`set=1\n${peer}${f}=${v}\n\n`);
    requests.push(`set=1\n${v}=1\n\n`, `set=1\n${peer}${v}=true\n\n`, `set=1\n${v}\n\n`, `get=1\n${v}\n\n`, `${v}\n\n`);
    if (!validKey) requests.push(`set=1\npublic_key=${v}\n\n`);
  }
  requests.push(`set=1\nprivate_key=${hex(k)}\nlisten_port=x\n\n`); // a valid key, then a failing line
  const logged: string[] = [];
  for (const r of requests) {
    const conn = new UapiConnection(host, (_level, msg) => logged.push(msg));
    const out = conn.feed(Buffer.from(r, 'latin1')).replies.join('');
    assert.notEqual(out, 'errno=0\n\n', `refused: ${JSON.stringify(r)}`);
  }
  assert.ok(logged.length >= requests.length - 20, `the refusals were logged (${logged.length} lines for ${requests.length} requests)`);
  assert.deepEqual(findLeaks({ k }, logged.join('\n')), []);
  assert.ok(logged.some((l) => /invalid endpoint "198\.51\.100\.1:<64 characters hidden>"/.test(l)), 'the rest of a bad value is still shown');
});
