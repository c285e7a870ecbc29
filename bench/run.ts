// `npm run bench`: runs the benchmarks, prints a table and writes JSON under bench/results/.
// Today: the protocol core (handshakes/s, AEAD wrapper vs raw sodium-native). The tunnel benchmark against
// wireguard-go arrives with the endpoint.

import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, hostname } from 'node:os';
import { runCoreBench } from './core.js';

const quick = process.argv.includes('--quick');
const started = new Date();
const core = runCoreBench(quick);
const machine = `${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}`;

const rows: [string, string][] = [
  ['handshakes per second (one core, create+consume both messages)', core.handshakesPerSecond.toFixed(0)],
  [`AEAD seal ${core.packetSize} B via wgts wrapper (Gbit/s)`, core.sealWrapperGbps.toFixed(2)],
  [`AEAD seal ${core.packetSize} B raw sodium-native (Gbit/s)`, core.sealRawGbps.toFixed(2)],
  ['wrapper / raw', core.sealRatio.toFixed(3)],
];
const w = Math.max(...rows.map((r) => r[0].length));
console.log(`wgts core benchmark, ${started.toISOString()}, ${machine}`);
for (const [k, v] of rows) console.log(`${k.padEnd(w)}  ${v}`);

const dir = new URL('../../bench/results/', import.meta.url);
mkdirSync(dir, { recursive: true });
const file = new URL(`core-${started.toISOString().replace(/[:.]/g, '-')}.json`, dir);
writeFileSync(file, JSON.stringify({ date: started.toISOString(), machine, host: hostname(), core }, null, 2) + '\n');
console.log(`wrote ${file.pathname}`);
