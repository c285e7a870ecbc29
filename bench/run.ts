// `npm run bench`: the protocol-core benchmark, then the tunnel benchmark against wireguard-go (root, namespaces);
// prints both tables and writes one JSON file per run under bench/results/, named by date.
// With the tunnel benchmark it also draws bench/results/bench-<date>.svg (bench/chart.ts) from that JSON, and
// traces ping round trips hop by hop for both implementations (bench/hops.ts; needs perf), and profiles the wgts
// daemons over idle pings with node --cpu-prof (bench/profile.ts).
// Flags: --quick (core: short; tunnel: 1 round, 2 s per iperf3 run), --no-tunnel (core only, no root needed).

import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, hostname, release } from 'node:os';
import { fileURLToPath } from 'node:url';
import { runCoreBench } from './core.js';
import { describeDamon, readDamon } from './damon.js';
import { chartPathFor, renderChart } from './chart.js';
import { formatTunnelTable, runTunnelBench, type TunnelBenchResult } from './tunnel.js';
import { formatHops, traceHops, type HopsResult } from './hops.js';
import { formatProfile, profileIdlePings, type IdleProfile } from './profile.js';
import { missingPrerequisites } from '../test/harness/netns.js';

const quick = process.argv.includes('--quick');
const noTunnel = process.argv.includes('--no-tunnel');
const started = new Date();
const core = runCoreBench(quick);
const machine = `${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}`;
/** The CPU model as /proc/cpuinfo names it (os.cpus() may shorten it), for the chart's title. */
function cpuModel(): string {
  try {
    return /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1].trim() ?? 'unknown CPU';
  } catch {
    return cpus()[0]?.model ?? 'unknown CPU';
  }
}
const damon = readDamon();
const system = { cores: cpus().length, cpuModel: cpuModel(), kernel: release(), node: process.version, damon };

const rows: [string, string][] = [
  ['handshakes per second (one core, create+consume both messages)', core.handshakesPerSecond.toFixed(0)],
  [`AEAD seal ${core.packetSize} B via wgts wrapper (Gbit/s)`, core.sealWrapperGbps.toFixed(2)],
  [`AEAD seal ${core.packetSize} B raw sodium-native (Gbit/s)`, core.sealRawGbps.toFixed(2)],
  ['wrapper / raw', core.sealRatio.toFixed(3)],
];
const w = Math.max(...rows.map((r) => r[0].length));
console.log(`wgts core benchmark, ${started.toISOString()}, ${system.cores} x ${system.cpuModel}, kernel ${system.kernel}, Node ${system.node}`);
console.log(describeDamon(damon));
for (const [k, v] of rows) console.log(`${k.padEnd(w)}  ${v}`);

let tunnel: TunnelBenchResult | undefined;
let hops: HopsResult[] | undefined;
let profile: IdleProfile | { error: string } | undefined;
let tunnelSkipped: string | undefined;
if (noTunnel) {
  tunnelSkipped = '--no-tunnel';
} else {
  const missing = missingPrerequisites();
  if (missing.length) {
    tunnelSkipped = missing.join('; ');
    console.error(`\ntunnel benchmark cannot run here (pass --no-tunnel to run the core benchmark only):\n  ${missing.join('\n  ')}`);
    process.exitCode = 1;
  } else {
    const rounds = quick ? 1 : 3;
    const seconds = quick ? 2 : 5;
    console.log(`\ntunnel benchmark: ${rounds} round(s), iperf3 -t ${seconds}, configurations alternating (progress on stderr)`);
    tunnel = await runTunnelBench({ rounds, seconds, log: (l) => console.error(l) });
    console.log(formatTunnelTable(tunnel));
    const problems = tunnel.samples.flatMap((s) => s.problems.map((p) => `round ${s.round + 1} ${s.config}: ${p}`));
    if (problems.length) console.log(`problems:\n  ${problems.join('\n  ')}`);
    console.error('tracing ping round trips hop by hop (bench/hops.ts)');
    hops = [await traceHops('wgts'), await traceHops('wggo')];
    console.log(`\n${formatHops(hops)}`);
    const pings = quick ? 200 : 1000;
    console.error(`profiling the wgts daemons over ${pings} idle pings (bench/profile.ts)`);
    try {
      profile = await profileIdlePings(pings);
      console.log(`\n${formatProfile(profile.daemons, pings)}\n  ping RTT under the sampler: ${profile.rttMs ?? '-'} ms`);
    } catch (e) {
      profile = { error: e instanceof Error ? e.message : String(e) };
      console.log(`\nidle-ping profile failed: ${profile.error}`);
    }
  }
}

const dir = new URL('../../bench/results/', import.meta.url);
mkdirSync(dir, { recursive: true });
const file = new URL(`bench-${started.toISOString().replace(/[:.]/g, '-')}.json`, dir);
const out = { date: started.toISOString(), machine, system, host: hostname(), quick, core, tunnel: tunnel ?? null, hops: hops ?? null, profile: profile ?? null, tunnelSkipped: tunnelSkipped ?? null };
writeFileSync(file, JSON.stringify(out, null, 2) + '\n');
console.log(`wrote ${file.pathname}`);
if (tunnel) {
  const svg = chartPathFor(fileURLToPath(file));
  writeFileSync(svg, renderChart(out));
  console.log(`wrote ${svg}`);
}
