// Who reads the TUN (src/tun/tunfeed.ts), root: by default the control thread; a flood of small packets moves
// the reads to the TUN reader thread, and when the flood ends they come back. The tunnel carries the flood
// while the reader thread reads, and pings work before and after the round trip, so neither side of the
// hand-over loses the TUN. The log lines are the daemon's own report of each move.

import { readdirSync } from 'node:fs';
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { requireRoot, Topology, waitUntil } from '../harness/netns.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const threads = (pid: number | undefined): number => readdirSync(`/proc/${pid ?? 'none'}/task`).length;

describe('TUN reads move between the control thread and the reader thread with the load', () => {
  it('64-byte UDP flood: reads move to the reader thread, the tunnel carries it, then reads come back', { timeout: 60_000 }, async (ctx) => {
    requireRoot();
    const t = await Topology.create();
    try {
      assert.match(t.log(t.a), /TUN and UDP read by the control thread/);
      const ping = await t.exec(t.a, ['ping', '-c', '3', '-i', '0.2', '-W', '2', t.b.tunnel4]);
      assert.equal(ping.code, 0, ping.stdout);
      assert.doesNotMatch(t.log(t.a), /moved to the reader thread/, 'a few pings stay on the control thread');
      // The reader thread (and the crypto workers) start only under load: a daemon that has seen pings has
      // node's own threads alone, the same count as its idle peer.
      const pid = t.daemonPid(t.a);
      const idle = threads(pid);
      assert.equal(idle, threads(t.daemonPid(t.b)), 'no thread started for a few pings');

      const server = t.exec(t.b, ['iperf3', '-s', '-1', '-B', t.b.tunnel4], { timeoutMs: 30_000 });
      for (let i = 0; i < 40; i++) {
        const ss = await t.exec(t.b, ['ss', '-Hltn', 'sport = :5201']);
        if (ss.stdout.includes('5201')) break;
        await sleep(50);
      }
      const c = await t.exec(t.a, ['iperf3', '-c', t.b.tunnel4, '-u', '-b', '0', '-l', '64', '-t', '3', '-J'], { timeoutMs: 30_000 });
      await server;
      assert.equal(c.code, 0, `iperf3 client failed: ${c.stderr}\n${c.stdout.slice(0, 2000)}`);
      const sum = (JSON.parse(c.stdout) as { end: { sum: { packets: number; lost_packets: number } } }).end.sum;
      const received = sum.packets - sum.lost_packets;
      ctx.diagnostic(`flood: ${sum.packets} datagrams sent, ${received} received (${Math.round(received / 3)}/s)`);
      const moved = /TUN reads moved to the reader thread at (\d+) reads\/s/.exec(t.log(t.a));
      assert.ok(moved, `the flood moved a's TUN reads to the reader thread:\n${t.log(t.a).slice(-1500)}`);
      ctx.diagnostic(moved[0]);
      assert.ok(threads(pid) > idle, `the flood started the reader thread (${idle} threads before, ${threads(pid)} after)`);
      assert.ok(received > 20_000, `the tunnel carried the flood (${received} datagrams)`);

      assert.ok(await waitUntil(() => /TUN reads are back on the control thread/.test(t.log(t.a)), 3_000), 'reads came back once the flood ended');
      const after = await t.exec(t.a, ['ping', '-c', '3', '-i', '0.2', '-W', '2', t.b.tunnel4]);
      assert.equal(after.code, 0, `pings after the hand-back: ${after.stdout}`);
    } finally {
      await t.close();
    }
  });
});
