// Protocol timers of a real daemon, shortened with the test-only WGTS_TIMER_SCALE (issue 5 item 4; protocol.md
// "Limits and timers"): rekey after REKEY_AFTER_TIME while traffic flows (wgts and wireguard-go responders),
// no transport data after REJECT_AFTER_TIME when no new handshake completes, handshake give-up after
// MAX_TIMER_HANDSHAKES + 2 initiations (REKEY_ATTEMPT_TIME), and erasure of the half-done handshake after
// 3 x REJECT_AFTER_TIME, seen from outside: a held-back response is accepted before and refused after it.
// What goes on the wire is counted with nft rules in a's namespace; nothing but the scale is test-specific.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import {
  KEY_ERASE_AFTER, MAX_TIMER_HANDSHAKES, REJECT_AFTER_TIME, REKEY_AFTER_TIME, REKEY_TIMEOUT, REKEY_TIMEOUT_JITTER_MAX,
} from '../../src/constants.js';
import { readPcapUdp } from '../helpers/pcapudp.js';
import { nftCounters, nftDeleteTable, nftLoad, WG_TYPE, wgType, type Counter } from '../helpers/nft.js';
import { requireRoot, sleep, Topology, waitUntil, type Host, type Impl, type TopologyOptions } from '../harness/netns.js';

/** REKEY_AFTER_TIME 6 s, REJECT_AFTER_TIME 9 s, REKEY_TIMEOUT 250 ms: each rule shows within seconds. */
const SCALE = 0.05;
/** For erasure: 3 x REJECT_AFTER_TIME = 10.8 s, retries every 100 ms so give-up comes after ~2 s. */
const ERASE_SCALE = 0.02;

const CTR = 'wgtsctr';
const BLK = 'wgtsblk';

/** Creates the topology, runs fn, and always closes it (checking nothing is left behind). */
async function withTopology(opts: TopologyOptions, fn: (t: Topology) => Promise<void>): Promise<void> {
  requireRoot();
  const t = await Topology.create(opts);
  try {
    await fn(t);
  } catch (e) {
    const tail = (h: Host): string => t.log(h).split('\n').slice(-25).join('\n');
    throw new Error(`${(e as Error).message}\n--- a's log (tail) ---\n${tail(t.a)}\n--- b's log (tail) ---\n${tail(t.b)}`, { cause: e });
  } finally {
    await t.close();
    assert.deepEqual(t.leftovers(), []);
  }
}

/** Counters in a's namespace for what a sends to b's port, by WireGuard message type, and responses a gets. */
function counterRules(t: Topology): string {
  const port = t.b.port;
  return `table inet ${CTR} {
  chain out {
    type filter hook output priority -10; policy accept;
    udp dport ${port} ${wgType(WG_TYPE.initiation)} counter comment "init-out"
    udp dport ${port} ${wgType(WG_TYPE.data)} counter comment "data-out"
    udp dport ${port} counter comment "udp-out"
    udp sport ${t.a.port} ${wgType(WG_TYPE.data)} counter comment "data-any-out"
  }
  chain in {
    type filter hook input priority -10; policy accept;
    udp dport ${t.a.port} ${wgType(WG_TYPE.response)} counter comment "resp-in"
  }
}
`;
}

/** A drop rule in its own table (runs after the counters, priority 0), so it can be lifted on its own. */
const blockRules = (hook: 'input' | 'output', match: string): string => `table inet ${BLK} {
  chain c {
    type filter hook ${hook} priority 0; policy accept;
    ${match} counter drop comment "blocked"
  }
}
`;

const counters = async (t: Topology): Promise<Record<string, Counter>> => nftCounters(t, t.a, CTR);
const pkts = (c: Record<string, Counter>, name: string): number => c[name]?.packets ?? 0;

/** `wg show IF latest-handshakes` for the one peer, in seconds since the epoch (0: never). */
async function latestHandshake(t: Topology, h: Host): Promise<number> {
  const out = await t.wg(h, ['show', h.ifname, 'latest-handshakes']);
  const row = out.trim().split('\n').map((l) => l.split('\t')).find((r) => r[0] === t.other(h).publicKey);
  assert.ok(row, `wg show latest-handshakes lists the peer:\n${out}`);
  return Number(row[1]);
}

/** Polls h's log every 50 ms and records when each line matching re was first seen (ms since the epoch). */
class LogWatch {
  readonly times: number[] = [];
  private readonly timer: NodeJS.Timeout;

  constructor(t: Topology, h: Host, re: RegExp) {
    this.timer = setInterval(() => {
      const n = t.log(h).split('\n').filter((l) => re.test(l)).length;
      while (this.times.length < n) this.times.push(Date.now());
    }, 50);
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

const ms = (x: number): string => `${(x / 1000).toFixed(2)} s`;

describe('short protocol timers (WGTS_TIMER_SCALE)', () => {
  const env = { WGTS_TIMER_SCALE: String(SCALE) };
  const rekeyMs = REKEY_AFTER_TIME * SCALE;

  for (const impls of [['wgts', 'wgts'], ['wgts', 'wggo']] as [Impl, Impl][]) {
    it(`rekeys every REKEY_AFTER_TIME (${ms(rekeyMs)}) while pings flow, none lost (wgts -> ${impls[1]})`, { timeout: 60_000 }, async (ctx) => {
      await withTopology({ impls, endpoints: 'a-knows-b', env }, async (t) => {
        const done = new LogWatch(t, t.a, /received handshake response/);
        try {
          // 17 s of pings: the first handshake, then rekeys at ~6 s and ~12 s, with margin for a late timer.
          const p = await t.exec(t.a, ['ping', '-c', '85', '-i', '0.2', '-W', '2', t.b.tunnel4], { timeoutMs: 40_000 });
          const out = p.stdout + p.stderr;
          assert.equal(p.code, 0, out);
          assert.match(out, / 0% packet loss/, `a rekey must not lose a packet:\n${out.split('\n').slice(-4).join('\n')}`);
          await sleep(200);
          const times = done.times;
          assert.ok(times.length >= 3, `the initial handshake and two rekeys in 17 s, saw ${times.length} completed handshakes`);
          const gaps = times.slice(1).map((x, i) => x - times[i]);
          ctx.diagnostic(`handshakes completed ${gaps.map(ms).join(', ')} apart (REKEY_AFTER_TIME scaled: ${ms(rekeyMs)})`);
          for (const g of gaps) {
            // Only ever after the key's age passed REKEY_AFTER_TIME (minus a real timer's slack), and
            // not much later since a ping goes out every 200 ms; the upper margin is for a busy machine.
            assert.ok(g >= rekeyMs - 300 && g <= rekeyMs + 2500, `rekey ${ms(g)} after the previous handshake, expected ~${ms(rekeyMs)}`);
          }
          // Both sides report the newest handshake: the responder counts it once the new key is confirmed.
          for (const h of [t.a, t.b]) {
            const latest = await latestHandshake(t, h);
            assert.ok(latest * 1000 >= times[0] + 2 * rekeyMs - 1500, `${h.name} (${h.impl}): latest handshake ${latest} is the second rekey, first handshake at ${Math.round(times[0] / 1000)}`);
          }
        } finally {
          done.stop();
        }
      });
    });
  }

  it(`sends no transport data after REJECT_AFTER_TIME (${ms(REJECT_AFTER_TIME * SCALE)}) when no new handshake completes, only initiations`, { timeout: 60_000 }, async (ctx) => {
    const rejectMs = REJECT_AFTER_TIME * SCALE;
    await withTopology({ endpoints: 'a-knows-b', env }, async (t) => {
      await nftLoad(t, t.a, counterRules(t));
      const tStart = Date.now();
      const first = await t.exec(t.a, ['ping', '-c', '1', '-W', '3', t.b.tunnel4], { timeoutMs: 10_000 });
      assert.equal(first.code, 0, `first ping: ${first.stdout}${first.stderr}`);
      const tReply = Date.now(); // a's keypair was created in [tStart, tReply]
      // From now on nothing from b reaches a: a's rekeys cannot complete, its key just ages.
      await nftLoad(t, t.a, blockRules('input', `udp sport ${t.b.port}`));
      const c0 = await counters(t);
      const pinger = t.exec(t.a, ['ping', '-c', '80', '-i', '0.2', '-W', '1', t.b.tunnel4], { timeoutMs: 40_000 });
      try {
        await sleep(tStart + rejectMs - 1000 - Date.now());
        const c1 = await counters(t);
        await sleep(tReply + rejectMs + 1000 - Date.now());
        const c2 = await counters(t);
        await sleep(4000);
        const c3 = await counters(t);
        const d = (x: Record<string, Counter>, y: Record<string, Counter>, n: string): number => pkts(y, n) - pkts(x, n);
        ctx.diagnostic(`blocked, key still valid: ${d(c0, c1, 'data-out')} data, ${d(c0, c1, 'init-out')} initiations; ` +
          `after REJECT_AFTER_TIME: ${d(c2, c3, 'data-out')} data, ${d(c2, c3, 'init-out')} initiations in 4 s`);
        // While the key is younger than REJECT_AFTER_TIME the pings go out under it (~5 a second), and a
        // tries to rekey meanwhile.
        assert.ok(d(c0, c1, 'data-out') >= 15, `data kept flowing under the old key until shortly before ${ms(rejectMs)}: ${d(c0, c1, 'data-out')} packets`);
        assert.ok(d(c0, c1, 'init-out') >= 1, 'a tried to rekey while its replies were blocked');
        // Past it: not one transport message, but initiations for the staged pings.
        assert.equal(d(c2, c3, 'data-out'), 0, 'no transport data under a key older than REJECT_AFTER_TIME');
        assert.ok(d(c2, c3, 'init-out') >= 2, `initiations continue: ${d(c2, c3, 'init-out')}`);
        assert.equal(d(c2, c3, 'udp-out'), d(c2, c3, 'init-out'), 'only initiations leave a');
      } finally {
        await nftDeleteTable(t, t.a, BLK);
        await pinger;
      }
      // Unblocked, the next handshake completes and the tunnel works again.
      const again = await t.exec(t.a, ['ping', '-c', '3', '-i', '0.2', '-W', '2', t.b.tunnel4], { timeoutMs: 15_000 });
      assert.equal(again.code, 0, again.stdout + again.stderr);
    });
  });

  it(`gives up after MAX_TIMER_HANDSHAKES + 2 initiations (REKEY_ATTEMPT_TIME ${ms(90_000 * SCALE)}) to an unreachable peer`, { timeout: 60_000 }, async (ctx) => {
    const total = MAX_TIMER_HANDSHAKES + 2;
    await withTopology({ endpoints: 'a-knows-b', env }, async (t) => {
      await nftLoad(t, t.a, counterRules(t));
      await nftLoad(t, t.a, blockRules('output', `udp dport ${t.b.port}`));
      // One packet and nothing else: only timer retries may follow the first initiation. Counting starts
      // at once: the ping itself waits a second for its reply.
      const ping = t.exec(t.a, ['ping', '-c', '1', '-W', '1', t.b.tunnel4], { timeoutMs: 10_000 });
      const seen: number[] = [];
      const deadline = Date.now() + 20_000;
      while (Date.now() < deadline && !(seen.length && Date.now() - seen[seen.length - 1] > 3000)) {
        const n = pkts(await counters(t), 'init-out');
        while (seen.length < n) seen.push(Date.now());
        await sleep(50);
      }
      assert.notEqual((await ping).code, 0, 'the peer is unreachable');
      const span = seen[seen.length - 1] - seen[0];
      ctx.diagnostic(`${seen.length} initiations over ${ms(span)}, then silence`);
      assert.equal(seen.length, total, `exactly ${total} initiations, then none for 3 s`);
      const c = await counters(t);
      assert.equal(pkts(c, 'udp-out'), total, 'nothing but initiations went out');
      // 19 retransmissions, each REKEY_TIMEOUT plus up to 333 ms jitter (scaled); timers are never early.
      const lo = (total - 1) * REKEY_TIMEOUT * SCALE;
      const hi = (total - 1) * (REKEY_TIMEOUT + REKEY_TIMEOUT_JITTER_MAX) * SCALE;
      assert.ok(span >= lo - 300 && span <= hi + 2500, `retries spanned ${ms(span)}, expected ${ms(lo)}..${ms(hi)}`);
      assert.match(t.log(t.a), new RegExp(`did not complete after ${total} attempts, giving up`));
      // Giving up is not final: new traffic starts a new handshake.
      await nftDeleteTable(t, t.a, BLK);
      const again = await t.exec(t.a, ['ping', '-c', '3', '-i', '0.2', '-W', '2', t.b.tunnel4], { timeoutMs: 15_000 });
      assert.equal(again.code, 0, again.stdout + again.stderr);
    });
  });

  it(`erases a half-done handshake after 3 x REJECT_AFTER_TIME (${ms(KEY_ERASE_AFTER * ERASE_SCALE)}): a held-back response is accepted before, refused after`, { timeout: 90_000 }, async (ctx) => {
    const eraseMs = KEY_ERASE_AFTER * ERASE_SCALE;
    await withTopology({ endpoints: 'a-knows-b', env: { WGTS_TIMER_SCALE: String(ERASE_SCALE) } }, async (t) => {
      await nftLoad(t, t.a, counterRules(t));
      const gaveUp = new LogWatch(t, t.a, /giving up/);
      const erased = new LogWatch(t, t.a, /removing all keys/);
      try {
        // Round 1: b answers every initiation but a never sees the answers; we keep the last one.
        const r1 = await initiateUntilGiveUp(t, gaveUp, 1);
        await waitUntil(() => erased.times.length >= 1, eraseMs + 10_000);
        assert.equal(erased.times.length, 1, 'a erased its keys');
        const after = erased.times[0] - gaveUp.times[0];
        ctx.diagnostic(`give-up -> erasure ${ms(after)} (scaled 3 x REJECT_AFTER_TIME: ${ms(eraseMs)})`);
        assert.ok(after >= eraseMs - 300 && after <= eraseMs + 3000, `erasure ${ms(after)} after giving up, expected ${ms(eraseMs)}`);
        const before1 = await counters(t);
        await replay(t, r1);
        await sleep(1500);
        const after1 = await counters(t);
        assert.equal(pkts(after1, 'resp-in') - pkts(before1, 'resp-in'), 1, 'the replayed response reached a');
        assert.equal(await latestHandshake(t, t.a), 0, 'a refused the response: its handshake state was erased');
        assert.equal(pkts(after1, 'data-any-out') - pkts(before1, 'data-any-out'), 0, 'no keepalive: no session was made');

        // Round 2, the control: the same replay right after giving up (before erasure) completes the handshake.
        const r2 = await initiateUntilGiveUp(t, gaveUp, 2);
        const before2 = await counters(t);
        await replay(t, r2);
        assert.ok(await waitUntil(async () => (await latestHandshake(t, t.a)) > 0, 3000), 'a accepted the held-back response before erasure');
        assert.ok(erased.times.length === 1, 'no erasure happened in round 2 before the replay');
        // The keepalive goes where the response came from: the replaying socket, which a now takes for b.
        const after2 = await counters(t);
        assert.ok(pkts(after2, 'data-any-out') > pkts(before2, 'data-any-out'), 'a confirmed the new session with a keepalive');
        // b's own initiation puts a right again: the tunnel works.
        const ping = await t.exec(t.b, ['ping', '-c', '3', '-i', '0.2', '-W', '2', t.a.tunnel4], { timeoutMs: 15_000 });
        assert.equal(ping.code, 0, ping.stdout + ping.stderr);
      } finally {
        gaveUp.stop();
        erased.stop();
      }
    });
  });
});

/**
 * With b's responses dropped at a's input (tcpdump on the veth still sees them), sends one ping from a and
 * waits until a gives up (the round-th "giving up"); returns b's response to a's last initiation, the only
 * one a's handshake state can still accept.
 */
async function initiateUntilGiveUp(t: Topology, gaveUp: LogWatch, round: number): Promise<Buffer> {
  const pcap = join(t.dir, `round${round}.pcap`);
  await nftLoad(t, t.a, blockRules('input', `udp sport ${t.b.port} ${wgType(WG_TYPE.response)}`));
  // --immediate-mode: without it the kernel hands packets over in blocks, and a SIGTERM loses the last ones.
  const dump = spawn('ip', ['netns', 'exec', t.a.ns, 'tcpdump', '-i', t.veth.a, '-n', '-U', '--immediate-mode', '-w', pcap, 'udp'], { stdio: ['ignore', 'ignore', 'pipe'] });
  try {
    let err = '';
    dump.stderr.on('data', (d: Buffer) => (err += d.toString()));
    assert.ok(await waitUntil(() => /listening on/.test(err), 5000), `tcpdump did not start: ${err}`);
    await t.exec(t.a, ['ping', '-c', '1', '-W', '1', t.b.tunnel4], { timeoutMs: 10_000 });
    assert.ok(await waitUntil(() => gaveUp.times.length >= round, 15_000), `a gave up (round ${round})`);
    // The last response is in flight for a moment after the last initiation.
    await waitUntil(() => readPcapUdp(pcap).filter((m) => m.payload[0] === WG_TYPE.response).length >= MAX_TIMER_HANDSHAKES + 2, 3000);
  } finally {
    await nftDeleteTable(t, t.a, BLK);
    const exited = new Promise((r) => dump.once('close', r));
    if (dump.exitCode === null && dump.pid) process.kill(dump.pid, 'SIGTERM');
    await Promise.race([exited, sleep(3000)]);
  }
  const msgs = readPcapUdp(pcap);
  const inits = msgs.filter((m) => m.dport === t.b.port && m.payload[0] === WG_TYPE.initiation);
  const summary = msgs.map((m) => `${new Date(m.time).toISOString().slice(17, 23)} ${m.sport}->${m.dport} type ${m.payload[0]}`).join('\n');
  assert.equal(inits.length, MAX_TIMER_HANDSHAKES + 2, `round ${round}: tcpdump saw every initiation:\n${summary}\n${t.log(t.a)}`);
  const sender = inits[inits.length - 1].payload.readUInt32LE(4);
  const resp = msgs.find((m) => m.sport === t.b.port && m.payload[0] === WG_TYPE.response && m.payload.readUInt32LE(8) === sender);
  assert.ok(resp, `round ${round}: b answered a's last initiation`);
  return resp.payload;
}

/** Sends a captured WireGuard message to a from a fresh socket in b's namespace (the source port is irrelevant). */
async function replay(t: Topology, msg: Buffer): Promise<void> {
  const js = "const s=require('dgram').createSocket('udp4');s.send(Buffer.from(process.argv[1],'hex'),+process.argv[2],process.argv[3],(e)=>{s.close();process.exitCode=e?1:0;});";
  const r = await t.exec(t.b, [process.execPath, '-e', js, msg.toString('hex'), String(t.a.port), t.a.underlay4], { timeoutMs: 10_000 });
  assert.equal(r.code, 0, `replay failed: ${r.stderr}`);
}

/** Voluntary context switches of a process's main thread so far: each is a sleep the thread woke from. */
function mainThreadWakes(pid: number): number {
  const m = /voluntary_ctxt_switches:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/task/${pid}/status`, 'utf8'));
  assert.ok(m, `no context switch count for ${pid}`);
  return Number(m[1]);
}

describe('an idle daemon sleeps until its next deadline', () => {
  it('wakes its control thread fewer than 20 times a second with a peer up and no traffic', { timeout: 60_000 }, async (ctx) => {
    await withTopology({ impls: ['wgts', 'wgts'], endpoints: 'a-knows-b' }, async (t) => {
      const p = await t.exec(t.a, ['ping', '-c', '1', '-W', '5', t.b.tunnel4], { timeoutMs: 10_000 });
      assert.equal(p.code, 0, p.stdout + p.stderr); // a session is up, so its timers are armed
      const pid = t.daemonPid(t.a);
      assert.ok(pid !== undefined, "a's daemon pid");
      await sleep(1000);
      const before = mainThreadWakes(pid);
      await sleep(3000);
      const wakes = mainThreadWakes(pid) - before;
      ctx.diagnostic(`control thread woke ${wakes} times in 3 s of idle`);
      // Polling the timers every 20 ms and the crypto load every 250 ms was 150 and more; what is left is the
      // TUN link watch (2 a second).
      assert.ok(wakes < 60, `${wakes} wake-ups in 3 s of idle`);
    });
  });
});
