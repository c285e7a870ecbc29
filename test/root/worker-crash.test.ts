// A crypto worker that dies under traffic (issue 5 item 7; root): with WGTS_CRYPTO_POLICY=pool every
// batch above INLINE_MAX goes to the Piscina workers, and the test-only WGTS_TEST_CRASH_WORKER=N makes the
// worker holding the Nth pooled batch exit abruptly, on both daemons (a seal batch on one side, open
// batches on the other). The lost batch must not wedge the peer's serial queue, Piscina must replace the
// worker, the daemon must log it once and keep running, and traffic must flow on at full speed. Then the
// same with a crash every 20th batch. Slot accounting after a crash: test/unit/worker-crash.test.ts.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { alive, requireRoot, sleep, socketPath, Topology, waitUntil, type Host } from '../harness/netns.js';

const CRASH_AT = 40;
const STEP = { timeout: 40_000 };
const LOST = /Crypto worker (\d+) exited unexpectedly; replaced/g;

/** One iperf3 TCP run of `seconds` from a to b (reverse: b sends); returns received Mbit/s. */
async function iperf(t: Topology, seconds: number, reverse = false): Promise<number> {
  const server = t.exec(t.b, ['iperf3', '-s', '-1', '-B', t.b.tunnel4], { timeoutMs: 25_000 });
  for (let i = 0; i < 40; i++) {
    const ss = await t.exec(t.b, ['ss', '-Hltn', 'sport = :5201']);
    if (ss.stdout.includes('5201')) break;
    await sleep(50);
  }
  const c = await t.exec(t.a, ['iperf3', '-c', t.b.tunnel4, '-t', String(seconds), '-J', ...(reverse ? ['-R'] : [])], { timeoutMs: 25_000 });
  await server;
  assert.equal(c.code, 0, `iperf3 client failed: ${c.stderr}\n${c.stdout.slice(0, 1500)}\n${tail(t, t.a)}\n${tail(t, t.b)}`);
  const j = JSON.parse(c.stdout) as { end: { sum_received: { bits_per_second: number } } };
  return j.end.sum_received.bits_per_second / 1e6;
}

const tail = (t: Topology, h: Host, n = 8): string => `--- ${h.name}.log ---\n${t.log(h).split('\n').slice(-n).join('\n')}`;

describe('a crashed crypto worker is replaced and the data plane keeps going', () => {
  let t: Topology;
  const pids: Record<'a' | 'b', number> = { a: 0, b: 0 };

  before(async () => {
    requireRoot();
    t = await Topology.create({
      env: { WGTS_CRYPTO_POLICY: 'pool', WGTS_CRYPTO_THREADS: '2', WGTS_TEST_CRASH_WORKER: String(CRASH_AT) },
    });
    for (const h of [t.a, t.b]) pids[h.name] = t.daemonPid(h)!;
    assert.ok(pids.a && pids.b, 'both daemons run');
  });
  after(async () => {
    await t?.close();
    assert.deepEqual(t?.leftovers() ?? [], []);
  });

  it('before the crash: pings (single-packet batches stay inline) and no worker lost yet', STEP, async () => {
    const p = await t.exec(t.a, ['ping', '-c', '3', '-i', '0.2', '-W', '2', t.b.tunnel4], { timeoutMs: 15_000 });
    assert.equal(p.code, 0, p.stdout + p.stderr);
    for (const h of [t.a, t.b]) {
      assert.match(t.log(h), /crypto workers \(policy pool\)/, `${h.name} runs with the pool forced`);
      assert.doesNotMatch(t.log(h), LOST, `${h.name}: nothing crashed yet`);
    }
  });

  it('a TCP stream through the crash completes; each daemon logs the lost worker once and stays up', STEP, async (ctx) => {
    const mbit = await iperf(t, 3);
    ctx.diagnostic(`iperf3 a->b through the crash: ${mbit.toFixed(0)} Mbit/s`);
    for (const h of [t.a, t.b]) {
      // The log line is written in a microtask after the exit; give a slow machine a moment.
      await waitUntil(() => [...t.log(h).matchAll(LOST)].length > 0, 2000);
      const lines = [...t.log(h).matchAll(LOST)];
      assert.equal(lines.length, 1, `${h.name} logs exactly one lost worker:\n${tail(t, h, 20)}`);
      assert.ok(alive(pids[h.name]) && t.daemonPid(h) === pids[h.name], `${h.name}'s daemon is the same live process`);
      assert.ok(existsSync(socketPath(h.ifname)), `${h.name} keeps its UAPI socket`);
      assert.match(await t.wg(h, ['show', h.ifname, 'latest-handshakes']), /\t[1-9]\d*\n$/, `${h.name} answers wg show`);
    }
    // The stream went through the loss: TCP resent the dropped batch, nothing stalled.
    assert.ok(mbit > 5, `throughput through the crash ${mbit.toFixed(1)} Mbit/s`);
  });

  // Floors well under what this shared 2-core machine does (100-500 Mbit/s): a wedged queue gives 0.
  it('after the crash: ping 10/10 and iperf3 both ways above a 20 Mbit/s floor', { timeout: 60_000 }, async (ctx) => {
    const p = await t.exec(t.a, ['ping', '-c', '10', '-i', '0.1', '-W', '2', t.b.tunnel4], { timeoutMs: 15_000 });
    assert.equal(p.code, 0, p.stdout + p.stderr);
    assert.match(p.stdout, / 10 received/);
    const up = await iperf(t, 2);
    const down = await iperf(t, 2, true);
    ctx.diagnostic(`after the crash: a->b ${up.toFixed(0)} Mbit/s, b->a ${down.toFixed(0)} Mbit/s`);
    assert.ok(up > 20, `a -> b ${up.toFixed(1)} Mbit/s`);
    assert.ok(down > 20, `b -> a ${down.toFixed(1)} Mbit/s`);
  });

  it('the replaced pool did the work, and the daemon still stops cleanly on SIGTERM', STEP, async (ctx) => {
    for (const h of [t.a, t.b]) {
      const pid = pids[h.name];
      process.kill(pid, 'SIGTERM');
      assert.ok(await waitUntil(() => !alive(pid) && !existsSync(socketPath(h.ifname)), 3000), `${h.name} exits within 3 s and removes its socket\n${tail(t, h)}`);
      const m = /crypto batches: (\d+) inline, (\d+) in workers/.exec(t.log(h));
      assert.ok(m, `${h.name} logged its batch counts on shutdown\n${tail(t, h)}`);
      const pooled = Number(m[2]);
      ctx.diagnostic(`${h.name}: ${m[1]} batches inline, ${pooled} in workers`);
      // Three more seconds of TCP after the crash put far more than CRASH_AT batches through the workers.
      assert.ok(pooled > CRASH_AT * 5, `${h.name}: ${pooled} pooled batches`);
      assert.doesNotMatch(t.log(h), /Crypto worker error|not replaced/, `${h.name}: no other worker failure`);
    }
  });
});

// The same under repeated crashes (WGTS_TEST_CRASH_WORKER=20*: every 20th pooled batch kills its worker):
// Piscina must keep replacing workers all along and the tunnel must keep working. (That every lost batch
// gives back all its slots is counted exactly in test/unit/worker-crash.test.ts; here a leak of a dozen
// small batches would not yet starve the 1024-slot arenas.)
describe('crypto workers crashing again and again', () => {
  let t: Topology;

  before(async () => {
    requireRoot();
    t = await Topology.create({ env: { WGTS_CRYPTO_POLICY: 'pool', WGTS_CRYPTO_THREADS: '2', WGTS_TEST_CRASH_WORKER: '20*' } });
  });
  after(async () => {
    await t?.close();
    assert.deepEqual(t?.leftovers() ?? [], []);
  });

  it('a 4 s TCP stream completes through repeated crashes, each replaced; the tunnel works afterwards', { timeout: 60_000 }, async (ctx) => {
    const pids = [t.daemonPid(t.a), t.daemonPid(t.b)];
    const mbit = await iperf(t, 4);
    const lost = [t.a, t.b].map((h) => [...t.log(h).matchAll(LOST)].length);
    ctx.diagnostic(`iperf3 a->b with every 20th batch crashing: ${mbit.toFixed(0)} Mbit/s; workers replaced: a ${lost[0]}, b ${lost[1]}`);
    assert.ok(lost[0] + lost[1] >= 4, `workers died and were replaced again and again (a ${lost[0]}, b ${lost[1]})`);
    for (const h of [t.a, t.b]) assert.doesNotMatch(t.log(h), /not replaced|Crypto worker error/, `${h.name}: every worker was replaced\n${tail(t, h)}`);
    assert.deepEqual([t.daemonPid(t.a), t.daemonPid(t.b)], pids, 'both daemons are the same live processes');
    const p = await t.exec(t.a, ['ping', '-c', '5', '-i', '0.2', '-W', '2', t.b.tunnel4], { timeoutMs: 15_000 });
    assert.equal(p.code, 0, p.stdout + p.stderr);
    const again = await iperf(t, 2, true);
    ctx.diagnostic(`and b->a afterwards: ${again.toFixed(0)} Mbit/s`);
    assert.ok(again > 2, `traffic still flows after the crashes: ${again.toFixed(1)} Mbit/s`);
  });
});
