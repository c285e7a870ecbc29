// Issue 5 item 6, overload soak (root, namespaces of our own): more traffic than the crypto workers can
// handle, for WGTS_SOAK_SECONDS (default 600 s, what CI runs; shorten it while developing). Two wgts daemons
// carry four iperf3 UDP `-b 0` streams a -> b and a paced UDP stream b -> a (udpblast: a second iperf3 in
// the other direction loses its UDP set-up packets to the first one's overload), while a third peer of a,
// whose endpoint never answers, gets a steady stream of packets that can only wait in its staged queue
// (MAX_STAGED_PACKETS = 128). The
// queues are fixed-size (SharedArrayBuffer slot rings of MAX_QUEUED_PACKETS, the staged ring), so overload
// must show up as loss in iperf3, not as memory: VmRSS of both daemons is sampled every 10 s and must stay
// flat, both daemons must survive, and the tunnel must work afterwards.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { alive, genKeyPair, requireRoot, sleep, Topology, type Host } from '../harness/netns.js';
import { memory } from '../helpers/procstat.js';

const SOAK_SECONDS = Number(process.env.WGTS_SOAK_SECONDS ?? 600) || 600;
const SAMPLE_MS = 10_000;
/** iperf3 runs are chunked so a run that fails costs one chunk, and loss is seen as the soak goes. */
const CHUNK_SECONDS = 60;
const BLAST = fileURLToPath(new URL('../helpers/udpblast.js', import.meta.url));
const BLACKHOLE_NET = '198.18.0.0/15';
const BLACKHOLE_DST = '198.18.0.1';
const BLACKHOLE_ENDPOINT = '198.51.100.99:51999'; // on the veth's subnet, nobody there: no handshake ever completes
const BLAST_RATE = 5_000;
/**
 * b -> a: 1300-byte datagrams to a's tunnel address (a discards them), ~52 Mbit/s for b to encrypt and a to
 * decrypt. Not more: iperf3's one-datagram UDP set-up reply travels b -> a too, and an overloaded reverse
 * path loses it (the chunk then fails with EAGAIN).
 */
const REVERSE_RATE = 5_000;
/** A chunk whose iperf3 failed early (set-up lost) is tried again, this many times in all. */
const CHUNK_ATTEMPTS = 3;

interface Sample {
  t: number;
  a: number;
  b: number;
}

interface Chunk {
  seconds: number;
  ok: boolean;
  sentMbps: number;
  receivedMbps: number;
  lostPercent: number;
  error?: string;
}

interface IperfSum {
  bits_per_second?: number;
  lost_percent?: number;
}

interface IperfUdpJson {
  error?: string;
  end?: { sum_sent?: IperfSum; sum_received?: IperfSum };
}

/** One iperf3 UDP -b 0 run, four streams, from `from` to `to` (server in `to`, port `port`). */
async function udpChunk(t: Topology, from: Host, to: Host, port: number, seconds: number): Promise<Chunk> {
  const server = t.exec(to, ['iperf3', '-s', '-1', '-p', String(port), '-B', to.tunnel4], { timeoutMs: (seconds + 60) * 1000 });
  for (let i = 0; i < 60; i++) {
    const ss = await t.exec(to, ['ss', '-Hltn', `sport = :${port}`]);
    if (ss.stdout.includes(String(port))) break;
    await sleep(50);
  }
  const c = await t.exec(from, ['iperf3', '-c', to.tunnel4, '-p', String(port), '-u', '-b', '0', '-l', '1300', '-P', '4',
    '-t', String(seconds), '-J'], { timeoutMs: (seconds + 45) * 1000 });
  await server;
  let j: IperfUdpJson = {};
  try {
    j = JSON.parse(c.stdout) as IperfUdpJson;
  } catch {
    // reported below as a failed chunk
  }
  const sent = j.end?.sum_sent;
  const recv = j.end?.sum_received;
  const ok = c.code === 0 && !j.error && sent !== undefined && recv !== undefined;
  return {
    seconds, ok, sentMbps: (sent?.bits_per_second ?? 0) / 1e6, receivedMbps: (recv?.bits_per_second ?? 0) / 1e6,
    lostPercent: recv?.lost_percent ?? NaN, ...(ok ? {} : { error: `exit ${c.code}: ${j.error ?? c.stderr.slice(0, 300)}` }),
  };
}

const maxIn = (samples: Sample[], from: number, to: number, k: 'a' | 'b'): number =>
  Math.max(...samples.filter((s) => s.t >= from && s.t <= to).map((s) => s[k]));

describe(`overload soak: ${SOAK_SECONDS} s of more traffic than wgts can encrypt`, () => {
  let topo: Topology | undefined;
  const samples: Sample[] = [];
  const chunks: Chunk[] = [];
  let blasted = 0;
  let reversed = 0;
  const T = (): Topology => {
    assert.ok(topo, 'topology was created');
    return topo;
  };

  before(async () => {
    requireRoot();
    topo = await Topology.create({ impls: ['wgts', 'wgts'] });
  });
  after(async () => {
    if (!topo) return;
    await topo.close();
    assert.deepEqual(topo.leftovers(), []);
  });

  it('the tunnel works, and a third peer of a has an endpoint that never answers', { timeout: 30_000 }, async () => {
    const t = T();
    const r = await t.exec(t.a, ['ping', '-c', '3', '-i', '0.2', '-W', '2', t.b.tunnel4], { timeoutMs: 15_000 });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const hole = genKeyPair();
    await t.wg(t.a, ['set', t.a.ifname, 'peer', hole.publicKey, 'allowed-ips', BLACKHOLE_NET, 'endpoint', BLACKHOLE_ENDPOINT]);
    const route = await t.exec(t.a, ['ip', 'route', 'add', BLACKHOLE_NET, 'dev', t.a.ifname]);
    assert.equal(route.code, 0, route.stderr);
  });

  it(`${SOAK_SECONDS} s of iperf3 UDP -b 0 a -> b, ${REVERSE_RATE}/s b -> a, ${BLAST_RATE}/s to the silent peer; RSS every 10 s`, { timeout: (SOAK_SECONDS + 240) * 1000 }, async () => {
    const t = T();
    const pids = { a: t.daemonPid(t.a), b: t.daemonPid(t.b) };
    assert.ok(pids.a && pids.b, 'both daemons run');
    const t0 = performance.now();
    const elapsed = (): number => (performance.now() - t0) / 1000;
    const sample = (): void => {
      const s = { t: Math.round(elapsed()), a: memory(pids.a!).rssMiB, b: memory(pids.b!).rssMiB };
      samples.push(s);
      console.log(`# t=${String(s.t).padStart(4)} s  RSS a ${s.a.toFixed(1)} MiB  b ${s.b.toFixed(1)} MiB`);
    };
    sample();
    const sampler = setInterval(() => {
      try {
        sample();
      } catch {
        // a daemon died: the assertions after the soak say so
      }
    }, SAMPLE_MS);
    try {
      const blaster = (h: Host, dst: string, rate: number, size: number) =>
        t.exec(h, ['node', BLAST, dst, '9', String(rate), String(SOAK_SECONDS), String(size)], { timeoutMs: (SOAK_SECONDS + 60) * 1000 })
          .then((r) => (r.code === 0 ? (JSON.parse(r.stdout) as { sent: number }).sent : 0));
      const blasts = Promise.all([blaster(t.a, BLACKHOLE_DST, BLAST_RATE, 200), blaster(t.b, t.a.tunnel4, REVERSE_RATE, 1300)]);
      for (let left = SOAK_SECONDS - elapsed(), attempt = 1; left >= 5; left = SOAK_SECONDS - elapsed()) {
        const started = elapsed();
        const c = await udpChunk(t, t.a, t.b, 5201, Math.min(CHUNK_SECONDS, Math.floor(left)));
        if (!c.ok && elapsed() - started < c.seconds / 2 && attempt < CHUNK_ATTEMPTS) {
          console.log(`# iperf3 a -> b failed to start (attempt ${attempt}): ${c.error}`);
          attempt++;
          continue;
        }
        attempt = 1;
        chunks.push(c);
        console.log(`# iperf3 a -> b ${c.seconds} s: ${c.ok ? `${c.sentMbps.toFixed(0)} Mbit/s offered, ${c.receivedMbps.toFixed(0)} Mbit/s received, ${c.lostPercent.toFixed(1)}% lost` : `FAILED ${c.error}`}`);
        if (!alive(pids.a) || !alive(pids.b)) break;
      }
      [blasted, reversed] = await blasts;
      console.log(`# udpblast: ${blasted} packets to the silent peer, ${reversed} b -> a`);
    } finally {
      clearInterval(sampler);
    }
    if (alive(pids.a) && alive(pids.b)) sample();
    assert.ok(alive(pids.a), `daemon a survived:\n${t.log(t.a).slice(-2000)}`);
    assert.ok(alive(pids.b), `daemon b survived:\n${t.log(t.b).slice(-2000)}`);
  });

  it('overload was real: iperf3 ran throughout, lost packets, and the silent peer got its traffic', () => {
    assert.ok(chunks.length >= 1, 'iperf3 ran');
    // A chunk may fail when its TCP control connection loses the race with the overload; most must not.
    const ok = chunks.filter((c) => c.ok);
    assert.ok(ok.length >= Math.ceil(chunks.length * 0.75), `iperf3 chunks that completed: ${ok.length}/${chunks.length}`);
    assert.ok(ok.every((c) => c.receivedMbps > 0), 'traffic got through in every chunk');
    // Dropped, not buffered: a sender without a rate limit loses packets once the daemons are saturated.
    assert.ok(ok.every((c) => c.lostPercent > 0), `iperf3 saw loss in every chunk (${ok.map((c) => c.lostPercent.toFixed(1)).join(', ')}%)`);
    // The background senders are paced; half their nominal count shows they ran for the soak (CPU is shared).
    assert.ok(blasted >= BLAST_RATE * SOAK_SECONDS * 0.5, `${blasted} packets sent towards the silent peer`);
    assert.ok(reversed >= REVERSE_RATE * SOAK_SECONDS * 0.25, `${reversed} packets sent b -> a`);
  });

  it('RSS stays flat: max over the last half <= max over the warm-up window + max(20 MiB, 10%)', () => {
    // For 600 s: the warm-up window is minutes 1-3, the compared window minutes 5-10. The first minute is
    // left out: V8 heaps and the worker pool grow to their working size under load. The allowance covers
    // one more V8 old-space step (collections are lazy, so RSS moves in tens of MiB); a leak of even a few
    // bytes per packet at the tens of thousands of packets a second seen here exceeds it well before the end.
    const D = SOAK_SECONDS;
    for (const k of ['a', 'b'] as const) {
      const warm = maxIn(samples, D * 0.1, D * 0.3, k);
      const late = maxIn(samples, D * 0.5, D, k);
      const allowance = Math.max(20, warm * 0.1);
      console.log(`# RSS ${k}: warm-up max ${warm.toFixed(1)} MiB, last-half max ${late.toFixed(1)} MiB (allowed ${(warm + allowance).toFixed(1)})`);
      assert.ok(Number.isFinite(warm) && Number.isFinite(late), `enough samples for ${k}: ${samples.length}`);
      assert.ok(late <= warm + allowance, `daemon ${k}: RSS ${warm.toFixed(1)} -> ${late.toFixed(1)} MiB`);
    }
  });

  it('the tunnel works after the overload', { timeout: 40_000 }, async () => {
    const t = T();
    await sleep(1000);
    const r = await t.exec(t.a, ['ping', '-c', '1', '-i', '0.5', '-W', '1', '-w', '15', t.b.tunnel4], { timeoutMs: 20_000 });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const r6 = await t.exec(t.b, ['ping', '-c', '3', '-i', '0.2', '-W', '2', t.a.tunnel6], { timeoutMs: 15_000 });
    assert.equal(r6.code, 0, r6.stdout + r6.stderr);
  });
});
