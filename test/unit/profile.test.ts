// The bench's idle-ping profile (bench/profile.ts): self time per function from a V8 .cpuprofile, cut to a
// time window, idle samples left out, each function sorted into a kind.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { byKind, formatProfile, selfTimes, type CpuProfile } from '../../bench/profile.js';

const dist = 'file:///work/x/dist';
const frame = (functionName: string, url = '', lineNumber = 0) => ({ functionName, url, lineNumber });

/** Nodes 1-6 and a sample list: [node id, µs since the previous sample]. */
function profile(samples: [number, number][]): CpuProfile {
  return {
    nodes: [
      { id: 1, callFrame: frame('(idle)') },
      { id: 2, callFrame: frame('sendmsg', `${dist}/src/tun/sys.js`, 84) },
      { id: 3, callFrame: frame('collect', `${dist}/src/dataplane/send.js`, 101) },
      { id: 4, callFrame: frame('exports.crypto_aead_chacha20poly1305_ietf_encrypt', 'file:///work/x/node_modules/sodium-native/index.js', 2622) },
      { id: 5, callFrame: frame('(garbage collector)') },
      { id: 6, callFrame: frame('listOnTimeout', 'node:internal/timers', 523) },
    ],
    startTime: 1000,
    samples: samples.map(([id]) => id),
    timeDeltas: samples.map(([, dt]) => dt),
  };
}

test('selfTimes: a sample stands for the time to the next one, inside the window only, idle left out', () => {
  // Sample times: 1100 idle, 1200 sendmsg, 1300 sendmsg, 1450 collect, 1500 seal, 1600 gc, 1700 timers,
  // 1800 idle, 5000 sendmsg (after the window).
  const p = profile([[1, 100], [2, 100], [2, 100], [3, 150], [4, 50], [5, 100], [6, 100], [1, 100], [2, 3200]]);
  const rows = selfTimes(p, 1150, 2000, 2);
  const by = Object.fromEntries(rows.map((r) => [r.name, r]));
  assert.deepEqual(Object.keys(by).sort(), [
    '(garbage collector)',
    'collect src/dataplane/send.js:102',
    'exports.crypto_aead_chacha20poly1305_ietf_encrypt sodium-native/index.js:2623',
    'listOnTimeout node:internal/timers:524',
    'sendmsg src/tun/sys.js:85',
  ]);
  // sendmsg: its samples at 1200 and 1300 last until 1300 and 1450 (250 µs), over 2 pings.
  assert.equal(by['sendmsg src/tun/sys.js:85'].samples, 2);
  assert.equal(by['sendmsg src/tun/sys.js:85'].usPerPing, 125);
  assert.equal(by['sendmsg src/tun/sys.js:85'].kind, 'system call');
  assert.equal(by['collect src/dataplane/send.js:102'].usPerPing, 25);
  assert.equal(by['collect src/dataplane/send.js:102'].kind, 'wgts');
  assert.equal(by['exports.crypto_aead_chacha20poly1305_ietf_encrypt sodium-native/index.js:2623'].kind, 'crypto');
  assert.equal(by['(garbage collector)'].kind, 'gc');
  assert.equal(by['listOnTimeout node:internal/timers:524'].kind, 'node');
  assert.equal(rows[0].name, 'sendmsg src/tun/sys.js:85', 'sorted by time, largest first');
  assert.deepEqual(byKind(rows), { 'system call': 125, crypto: 50, wgts: 25, node: 50, gc: 50, native: 0 });
});

test('selfTimes: an empty window gives no rows', () => {
  const p = profile([[2, 100], [3, 100]]);
  assert.deepEqual(selfTimes(p, 5000, 6000, 10), []);
});

test('formatProfile: a summary line per daemon and its top functions', () => {
  const p = profile([[2, 100], [3, 100], [5, 100], [2, 100]]);
  const rows = selfTimes(p, 0, 1e9, 1);
  const text = formatProfile([{ side: 'a', busyUsPerPing: 300, rows }], 1, 2);
  const lines = text.split('\n');
  assert.match(lines[0], /1 pings/);
  assert.match(lines[1], /a \(pinging side\): busy 300: system call 100, crypto 0, wgts 100, node 0, gc 100, native 0/);
  assert.equal(lines.length, 4, 'two functions listed');
});
