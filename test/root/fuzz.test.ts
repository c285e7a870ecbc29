// Fuzzing the running daemon (issue 5 item 1): every UDP receive path (handshake initiation, response, cookie
// reply, transport data) and the UAPI parser under random, truncated and mutated input, including mutations
// of valid messages built with real keys and of the real peer's captured traffic. Two wgts daemons in
// namespaces of our own; the target is b. Checks: b stays alive with bounded RSS, logs no internal error,
// keeps forwarding the real tunnel during and after, keeps serving the fuzzing peer's own session, its real
// peer's endpoint never moves, `wg` keeps working, and after the UAPI fuzz its configuration is exactly what it
// was. The seed is printed; WGTS_FUZZ_SEED=<seed> replays a run's inputs.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { keyFromBase64, peerName } from '../../src/keys.js';
import { fileURLToPath } from 'node:url';
import { alive, genKeyPair, requireRoot, sleep, socketPath, Topology, type Host } from '../harness/netns.js';
import { captureUdp } from '../helpers/capture.js';
import { fuzzSeed, Rng } from '../helpers/fuzz.js';
import type { FuzzPeerConfig, FuzzSummary } from '../helpers/fuzz-peer.js';
import { JsonChild } from '../helpers/jsonchild.js';
import { memory } from '../helpers/procstat.js';
import { runUapiCase, UapiFuzzer, type CaseResult, type UapiCase } from '../helpers/uapi-fuzz.js';

const FUZZ_PEER = fileURLToPath(new URL('../helpers/fuzz-peer.js', import.meta.url));
const THIRD = '198.51.100.3'; // the fuzzing peer's underlay address, on a's side of the veth
const FUZZ_PORT = 51830;
const FUZZ_INNER = '198.18.0.3'; // its tunnel address ("outside" range), routed to it in b
const RESPONSE_PHASE_MS = 6_000;
/** WGTS_FUZZ_SECONDS=<n> fuzzes longer than the CI default of 30 s (the test's timeout follows). */
const MAIN_PHASE_MS = Math.max(10, Number(process.env.WGTS_FUZZ_SECONDS) || 30) * 1000;
const UAPI_MS = 20_000;
const UAPI_MAX_CASES = 3_000;
/** RSS may grow this much past its level after warm-up (MiB): generous, GC timing on 2 busy cores varies. */
const RSS_MARGIN_MIB = 64;

const hexKey = (b64: string): string => Buffer.from(b64, 'base64').toString('hex');

async function peerRow(t: Topology, h: Host, field: string): Promise<string[]> {
  const out = await t.wg(h, ['show', h.ifname, field]);
  const row = out.trim().split('\n').map((l) => l.split('\t')).find((r) => r[0] === t.other(h).publicKey);
  assert.ok(row, `wg show ${h.ifname} ${field} lists the peer:\n${out}`);
  return row;
}

async function mustPing(t: Topology, from: Host, to: string, count = 5): Promise<void> {
  const r = await t.exec(from, ['ping', '-c', String(count), '-i', '0.2', '-W', '2', to], { timeoutMs: 20_000 });
  assert.equal(r.code, 0, `ping ${to} from ${from.name} failed:\n${r.stdout}${r.stderr}`);
  assert.match(r.stdout, / 0% packet loss/, r.stdout);
}

/** Lines of the daemon log that mean an exception reached a catch-all on the packet path or the UAPI. */
function internalErrors(log: string): string[] {
  return log.split('\n').filter((l) => /internal error|receive path:|crypto worker failed|TypeError|RangeError/.test(l)).slice(0, 20);
}

describe('fuzzing a running wgts daemon', () => {
  let topo: Topology | undefined;
  const T = (): Topology => {
    assert.ok(topo, 'topology was created');
    return topo;
  };
  const seed = fuzzSeed();
  const fuzzKeys = genKeyPair();

  before(async () => {
    requireRoot();
    topo = await Topology.create();
    const t = topo;
    const add = await t.exec(t.a, ['ip', 'addr', 'add', `${THIRD}/24`, 'dev', t.veth.a]);
    assert.equal(add.code, 0, add.stderr);
    await t.wg(t.b, ['set', t.b.ifname, 'peer', fuzzKeys.publicKey, 'allowed-ips', `${FUZZ_INNER}/32`, 'endpoint', `${THIRD}:${FUZZ_PORT}`]);
    const r = await t.exec(t.b, ['ip', 'route', 'add', `${FUZZ_INNER}/32`, 'dev', t.b.ifname]);
    assert.equal(r.code, 0, r.stderr);
  });
  after(async () => {
    if (!topo) return;
    await topo.close();
    assert.deepEqual(topo.leftovers(), []);
  });

  it('UDP receive paths: random, truncated and mutated datagrams; the daemon survives, stays bounded and forwards', { timeout: 150_000 + MAIN_PHASE_MS }, async (ctx) => {
    const t = T();
    ctx.diagnostic(`seed ${seed} (WGTS_FUZZ_SEED=${seed} replays this run's inputs)`);
    await mustPing(t, t.a, t.b.tunnel4);
    // The real peer's traffic as a corpus: its mutations carry b's live receiver index for a.
    const corpus = await captureUdp(t, t.a, t.veth.a, `port ${t.a.port} or port ${t.b.port}`, async () => {
      await mustPing(t, t.a, t.b.tunnel4);
      await mustPing(t, t.b, t.a.tunnel4);
    });
    // 20 messages went by; pings that bunch up behind a stall leave as one UDP GSO frame, which the capture
    // holds as one datagram, so only half are required here (the corpus is the input, not what is tested).
    assert.ok(corpus.length >= 10, `captured the real peers' traffic (${corpus.length} datagrams)`);
    const pid = t.daemonPid(t.b);
    assert.ok(pid, 'b\'s daemon runs');
    const rss0 = memory(pid).rssMiB;

    const cfg: FuzzPeerConfig = {
      seed,
      privateKey: fuzzKeys.privateKey,
      target: { publicKey: t.b.publicKey, addr: t.b.underlay4, port: t.b.port, tunnelAddr: t.b.tunnel4 },
      bind: { addr: THIRD, port: FUZZ_PORT },
      tunnelAddr: FUZZ_INNER,
      corpus: corpus.map((c) => c.payload.toString('hex')),
      waitInitiationMs: 12_000,
      responsePhaseMs: RESPONSE_PHASE_MS,
      durationMs: MAIN_PHASE_MS,
      highPps: 30_000,
      lowPps: 1_500,
    };
    const child = new JsonChild(t.a.ns, FUZZ_PEER, cfg, 90_000 + MAIN_PHASE_MS);
    const samples: { t: number; rss: number }[] = [];
    let dead = false;
    const start = Date.now();
    const sampler = setInterval(() => {
      if (!alive(pid)) dead = true;
      else samples.push({ t: Date.now() - start, rss: memory(pid).rssMiB });
    }, 500);
    try {
      await child.wait('ready', 15_000);
      // A persistent keepalive makes b initiate to the fuzzing peer at once: the response phase's target.
      await t.wg(t.b, ['set', t.b.ifname, 'peer', fuzzKeys.publicKey, 'persistent-keepalive', '1']);
      await child.wait('phase', 15_000);
      // The real tunnel, all through the fuzzing: one echo every 200 ms.
      const during = t.exec(t.a, ['ping', '-c', String((RESPONSE_PHASE_MS + MAIN_PHASE_MS) / 200), '-i', '0.2', '-W', '1', t.b.tunnel4], { timeoutMs: 60_000 + MAIN_PHASE_MS });
      const done = await child.wait('done', RESPONSE_PHASE_MS + MAIN_PHASE_MS + 40_000);
      const ping = await during;
      const sum = done.summary as FuzzSummary;
      const rx = /(\d+) packets transmitted, (\d+) received/.exec(ping.stdout);
      const [sentEchoes, gotEchoes] = rx ? [Number(rx[1]), Number(rx[2])] : [0, 0];
      clearInterval(sampler);

      ctx.diagnostic(`${sum.total} datagrams in ${(RESPONSE_PHASE_MS + MAIN_PHASE_MS) / 1000} s (${sum.responsePhase.inputs} in the response phase, `
        + `${sum.responsePhase.targetInitiations} initiations of b's to answer); kinds ${JSON.stringify(sum.byKind)}`);
      ctx.diagnostic(`mutations ${JSON.stringify(sum.byMutation)}; macs recomputed on ${sum.macsFixed} (${sum.withMac2} with mac2 from `
        + `${sum.cookiesOpened}/${sum.cookiesReceived} cookie replies); ${sum.validInitiations} fresh valid initiations; send errors ${sum.sendErrors}`);
      ctx.diagnostic(`fuzzing peer's echoes answered ${sum.echoReplies}/${sum.echoSent} during, ${sum.finalEchoReplies}/${sum.finalEchoSent} after; `
        + `real tunnel ${gotEchoes}/${sentEchoes} during`);
      const rssMax = Math.max(...samples.map((s) => s.rss));
      // Warm-up: the response phase and the first few seconds of the main one (JIT, heap sizing, first cookies).
      const warmup = RESPONSE_PHASE_MS + 4_000;
      const warm = samples.filter((s) => s.t < warmup);
      const late = samples.filter((s) => s.t >= warmup);
      const warmMax = Math.max(...warm.map((s) => s.rss));
      const lateMax = Math.max(...late.map((s) => s.rss));
      ctx.diagnostic(`b's RSS: ${rss0.toFixed(0)} MiB before, ${warmMax.toFixed(0)} MiB max in the first ${warmup / 1000} s, `
        + `${lateMax.toFixed(0)} MiB max after, ${rssMax.toFixed(0)} MiB overall (${samples.length} samples)`);
      ctx.diagnostic(`RSS samples (MiB, every 0.5 s): ${samples.map((x) => Math.round(x.rss)).join(' ')}`);

      const name = peerName(keyFromBase64(fuzzKeys.publicKey));
      const events = (what: string): number => t.log(t.b).split('\n').filter((l) => l.includes(name) && l.includes(what)).length;
      ctx.diagnostic(`b's log for the fuzzing peer: ${events('sending handshake initiation')} initiations sent, `
        + `${events('received handshake response')} responses and ${events('received handshake initiation')} initiations accepted`);

      assert.ok(!dead && alive(pid), 'b\'s daemon is alive throughout');
      assert.deepEqual(internalErrors(t.log(t.b)), [], 'no exception reached a catch-all in b');
      assert.ok(sum.total >= 50_000, `at least 50k inputs ran (${sum.total})`);
      assert.ok(sum.responsePhase.inputs > 1000, 'the response phase ran');
      assert.ok(late.length >= 10 && lateMax - warmMax < RSS_MARGIN_MIB,
        `RSS after warm-up stays within ${RSS_MARGIN_MIB} MiB of its level during warm-up: ${JSON.stringify(samples.map((s) => Math.round(s.rss)))}`);
      assert.ok(gotEchoes >= sentEchoes / 2, `the real tunnel kept forwarding during the fuzzing: ${gotEchoes}/${sentEchoes}\n${ping.stdout}`);
      assert.ok(sum.echoReplies > 0, 'b kept answering the fuzzing peer\'s own tunnel traffic during the fuzzing');
      assert.ok(sum.finalEchoReplies >= sum.finalEchoSent - 2, `and after it: ${sum.finalEchoReplies}/${sum.finalEchoSent}`);
    } finally {
      clearInterval(sampler);
      child.kill();
      await child.done;
      // The fuzzing peer goes, so the UAPI test below starts from the topology's own configuration.
      await t.wg(t.b, ['set', t.b.ifname, 'peer', fuzzKeys.publicKey, 'remove']);
      await t.exec(t.b, ['ip', 'route', 'del', `${FUZZ_INNER}/32`, 'dev', t.b.ifname]);
    }
    // After: the real tunnel works both ways, wg answers, and no fuzzed datagram moved a's endpoint on b.
    await mustPing(t, t.a, t.b.tunnel4);
    await mustPing(t, t.b, t.a.tunnel4);
    const [, ep] = await peerRow(t, t.b, 'endpoints');
    assert.equal(ep, `${t.a.underlay4}:${t.a.port}`, 'a\'s endpoint on b never moved to the fuzzer');
  });

  it('UAPI parser: random, mutated and malformed requests; every connection answered or closed, config unchanged', { timeout: 120_000 }, async (ctx) => {
    const t = T();
    const h = t.b;
    const pid = t.daemonPid(h);
    assert.ok(pid, 'b\'s daemon runs');
    const conf0 = await t.wg(h, ['showconf', h.ifname]);
    const peers0 = (await t.wg(h, ['show', h.ifname, 'peers'])).trim().split('\n').filter(Boolean);
    const fuzzer = new UapiFuzzer(new Rng(seed ^ 0x5a5a5a5a), [hexKey(t.a.publicKey), hexKey(h.privateKey)], hexKey(h.publicKey));
    const problems: string[] = [];
    const errnos: Record<string, number> = {};
    let cases = 0;
    let closes = 0;
    const check = (c: UapiCase, r: CaseResult): void => {
      for (const rep of r.replies) errnos[rep.errno] = (errnos[rep.errno] ?? 0) + 1;
      if (r.closedByServer && r.replies.length === 0) closes++;
      const fail = (why: string): void => void (problems.length < 10 && problems.push(`${c.kind}: ${why} (request ${JSON.stringify(Buffer.concat(c.chunks).toString('latin1').slice(0, 160))}, replies ${JSON.stringify(r.replies.map((x) => x.errno))})`));
      if (r.problem) return fail(r.problem);
      if (c.end && !r.closedByServer) return fail('not closed after our half-close');
      if (!c.expect) return;
      if (r.replies.length !== c.expect.length) return fail(`expected ${c.expect.length} replies`);
      c.expect.forEach((e, i) => {
        const rep = r.replies[i];
        if (e === 'ok' && rep.errno !== 0) fail(`reply ${i}: errno ${rep.errno}, expected 0`);
        if (e === 'fail' && rep.errno >= 0) fail(`reply ${i}: errno ${rep.errno}, expected a negative errno`);
        if (e === 'get' && (rep.errno !== 0 || !rep.body.includes(`public_key=${hexKey(t.a.publicKey)}`))) fail(`reply ${i}: not a full get`);
      });
    };
    const end = Date.now() + UAPI_MS;
    const worker = async (): Promise<void> => {
      while (Date.now() < end && cases < UAPI_MAX_CASES) {
        const c = fuzzer.next();
        cases++;
        check(c, await runUapiCase(socketPath(h.ifname), c, 15_000));
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
    ctx.diagnostic(`${cases} UAPI connections in ${((Date.now() - end + UAPI_MS) / 1000).toFixed(1)} s: ${JSON.stringify(fuzzer.counts)}; replies by errno ${JSON.stringify(errnos)}; ${closes} closed without a reply`);
    assert.deepEqual(problems, [], 'every connection got well-formed errno replies as expected, or was closed');
    assert.ok(cases >= 300, `at least 300 UAPI cases ran (${cases})`);
    assert.ok(alive(pid), 'b\'s daemon is alive');
    assert.deepEqual(internalErrors(t.log(h)), [], 'no exception reached a catch-all in b');
    await mustPing(t, t.a, t.b.tunnel4);

    // Only throwaway peers were added; once they are removed the configuration is exactly as before.
    const peers = (await t.wg(h, ['show', h.ifname, 'peers'])).trim().split('\n').filter(Boolean);
    assert.ok(peers.includes(t.a.publicKey), 'the real peer is still there');
    const extra = peers.filter((p) => !peers0.includes(p));
    ctx.diagnostic(`${extra.length} throwaway peers left by the fuzz, removed now`);
    for (let i = 0; i < extra.length; i += 100) {
      await t.wg(h, ['set', h.ifname, ...extra.slice(i, i + 100).flatMap((p) => ['peer', p, 'remove'])]);
    }
    assert.equal(await t.wg(h, ['showconf', h.ifname]), conf0, 'configuration unchanged');
    await sleep(100);
    await mustPing(t, t.b, t.a.tunnel4);
  });
});
