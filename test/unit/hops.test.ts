// The bench's hop-by-hop cut of a ping's round trip (bench/hops.ts), on traces in perf script's own format:
// wgts's calls, wireguard-go's (a sleeping helper thread, an eventfd write, a goroutine hand-off), a lost ping.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cutRoundTrips, formatHops, medianHops, parsePerfScript, type Actor } from '../../bench/hops.js';

/** A perf script line: comm tid time: raw_syscalls:sys_enter|exit. Times are µs after 1000 s. */
function ev(comm: string, tid: number, us: number, kind: 'enter' | 'exit', nr: number, fd?: number): string {
  const time = (1000 + us / 1e6).toFixed(6);
  return kind === 'enter'
    ? `${comm.padStart(16)} ${tid}  ${time}: raw_syscalls:sys_enter: NR ${nr} (${(fd ?? 0).toString(16)}, 7f00, 40, 0, 0, 0)`
    : `${comm.padStart(16)} ${tid}  ${time}:  raw_syscalls:sys_exit: NR ${nr} = 0`;
}

const actors = new Map<number, Actor>([[100, 'a'], [101, 'a'], [200, 'b'], [201, 'b']]);
const tun = { a: new Set([9]), b: new Set([11]) };

test('cutRoundTrips: wgts-shaped round trips, one thread per daemon', () => {
  const lines: string[] = [
    ev('node', 100, -5000, 'enter', 281), // a asleep in epoll_pwait
    ev('node', 200, -4000, 'enter', 281), // b asleep
    ev('perf', 7, 1, 'enter', 1, 3), // another process: ignored
  ];
  for (const base of [0, 20_000]) {
    lines.push(
      ev('ping', 300, base + 0, 'enter', 44),
      ev('ping', 300, base + 36, 'exit', 44),
      ev('node', 100, base + 53, 'exit', 281), // a wakes: toA 53
      ev('node', 100, base + 130, 'enter', 19, 9),
      ev('node', 100, base + 141, 'exit', 19),
      ev('node', 100, base + 230, 'enter', 46, 12), // a sends: aSend 177
      ev('node', 200, base + 275, 'exit', 281), // b wakes: toB 45
      ev('node', 200, base + 323, 'enter', 299, 13),
      ev('node', 200, base + 329, 'exit', 299),
      ev('node', 200, base + 403, 'enter', 20, 11), // b's TUN write: bReceive 128
      ev('node', 200, base + 426, 'exit', 20),
      ev('node', 200, base + 474, 'enter', 46, 13), // b sends: bReply 71
      ev('node', 100, base + 265, 'exit', 46),
      ev('node', 100, base + 542, 'enter', 281),
      ev('node', 100, base + 545, 'exit', 281),
      ev('node', 100, base + 594, 'enter', 20, 9), // a's TUN write: aReceive 120
      ev('node', 100, base + 607, 'exit', 20),
      ev('node', 100, base + 619, 'enter', 281),
      ev('node', 200, base + 700, 'enter', 281),
      ev('ping', 300, base + 632, 'exit', 47), // toPing 38, total 632
    );
  }
  const trips = cutRoundTrips(parsePerfScript(lines.join('\n'), actors), tun);
  assert.equal(trips.length, 2);
  for (const t of trips) assert.deepEqual(t, { toA: 53, aSend: 177, toB: 45, bReceive: 128, bReply: 71, aReceive: 120, toPing: 38, total: 632 });
  assert.equal(medianHops(trips)?.total, 632);
});

test('cutRoundTrips: wireguard-go-shaped, with helper threads and a write that is not the TUN; a lost ping is left out', () => {
  const lines: string[] = [
    ev('wireguard-go', 100, -5000, 'enter', 281), // a's netpoller
    ev('wireguard-go', 101, -3000, 'enter', 35), // a's sysmon in nanosleep: its return is no wake-up
    ev('wireguard-go', 200, -4000, 'enter', 47), // b's receiver blocked in recvmsg
    // a lost ping: a sends, b never wakes
    ev('ping', 300, 0, 'enter', 44),
    ev('wireguard-go', 101, 10, 'exit', 35),
    ev('wireguard-go', 100, 50, 'exit', 281),
    ev('wireguard-go', 100, 60, 'enter', 0, 9),
    ev('wireguard-go', 100, 70, 'exit', 0),
    ev('wireguard-go', 101, 90, 'enter', 46, 12),
    ev('wireguard-go', 100, 200, 'enter', 281),
    // a ping that makes it
    ev('ping', 300, 20_000, 'enter', 44),
    ev('wireguard-go', 101, 20_005, 'enter', 35),
    ev('wireguard-go', 101, 20_015, 'exit', 35),
    ev('wireguard-go', 100, 20_050, 'exit', 281), // toA 50
    ev('wireguard-go', 100, 20_060, 'enter', 0, 9),
    ev('wireguard-go', 100, 20_070, 'exit', 0),
    ev('wireguard-go', 101, 20_100, 'enter', 1, 4), // an eventfd poke: not a send, not the TUN
    ev('wireguard-go', 101, 20_127, 'enter', 46, 12), // a sends from another thread: aSend 77
    ev('wireguard-go', 200, 20_178, 'exit', 47), // b wakes: toB 51
    ev('wireguard-go', 201, 20_300, 'enter', 1, 4), // b's eventfd write, not its TUN
    ev('wireguard-go', 201, 20_325, 'enter', 1, 11), // b's TUN write: bReceive 147
    ev('wireguard-go', 200, 20_403, 'enter', 46, 13), // bReply 78
    ev('wireguard-go', 100, 20_514, 'enter', 1, 9), // aReceive 111
    ev('ping', 300, 20_554, 'exit', 47), // toPing 40, total 554
  ];
  const trips = cutRoundTrips(parsePerfScript(lines.join('\n'), actors), tun);
  assert.deepEqual(trips, [{ toA: 50, aSend: 77, toB: 51, bReceive: 147, bReply: 78, aReceive: 111, toPing: 40, total: 554 }]);
});

test('parsePerfScript keeps only the daemons and ping; formatHops puts the two side by side', () => {
  const text = [ev('node', 100, 5, 'enter', 20, 9), ev('sshd', 999, 6, 'enter', 1, 3), 'not a perf line', ev('ping', 42, 7, 'exit', 47)].join('\n');
  const evs = parsePerfScript(text, actors);
  assert.deepEqual(evs.map((e) => [e.actor, e.tid, e.enter, e.nr, e.arg0]), [['a', 100, true, 20, 9], ['ping', 42, false, 47, -1]]);
  assert.ok(Math.abs(evs[0].us - 1000_000_005) < 0.5);
  const hops = { toA: 50, aSend: 150, toB: 50, bReceive: 100, bReply: 50, aReceive: 100, toPing: 40, total: 540 };
  const table = formatHops([
    { impl: 'wgts', trips: 59, hops },
    { impl: 'wggo', trips: 58, hops: { ...hops, aSend: 75 } },
  ]);
  assert.match(table, /medians of 59 and 58 traced pings/);
  assert.match(table, /a: awake to its UDP send \(the send hop\)\s+150\s+75\s+2\.00/);
  assert.match(formatHops([{ impl: 'wgts', trips: 0, hops: null, error: 'perf is not installed' }]), /wgts: not traced: perf is not installed/);
});
