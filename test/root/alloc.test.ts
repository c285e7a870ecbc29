// Issue 4 item 3, "no per-packet allocation on the hot path": the garbage a wgts daemon's control thread makes
// per ping, measured by V8's sampling heap profiler inside both daemons of a real tunnel (test/helpers/
// heapprobe.ts). Before the batch jobs were reused it was ~3.7 KB per ping on the pinging side (a task object,
// closures and arrays per batch, a payload view per slot visited, BigInt counters, boxed timer deadlines); what
// is left is node's and koffi's own (the wake-up callback, the clock, the load sampler's timer) and the
// datagram's copy into its slot, ~0.8 KB.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { requireRoot, sleep, Topology, waitUntil } from '../harness/netns.js';
import { heapFile, type AllocSite } from '../helpers/heapprobe.js';

const PINGS = 400;
/** Bytes per ping a daemon's control thread may allocate: ~0.8 KB now, ~3 KB or more before. */
const LIMIT = 1500;

describe('garbage per packet on the control thread', { timeout: 180_000 }, () => {
  let t: Topology;
  const dir = mkdtempSync(join(tmpdir(), `wgts-alloc-${process.pid}-`));
  before(async () => {
    requireRoot();
    const probe = fileURLToPath(new URL('../helpers/heapprobe.js', import.meta.url));
    t = await Topology.create({ env: { WGTS_NODE_FLAGS: `--import ${probe}`, WGTS_HEAPPROBE_DIR: dir } });
  });
  after(async () => {
    await t?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it(`a ping allocates less than ${LIMIT} bytes in each daemon, after a TCP run`, async () => {
    let up = false;
    for (let i = 0; i < 10 && !up; i++) up = (await t.exec(t.a, ['ping', '-c', '1', '-W', '1', t.b.tunnel4])).code === 0;
    assert.ok(up, 'the tunnel comes up');
    // A TCP run first: its super-packets fill slots' view caches with sizes pings never use, and leave the
    // reader in scatter mode, as a user's tunnel would be.
    const server = t.exec(t.b, ['iperf3', '-s', '-1'], { timeoutMs: 30_000 });
    await sleep(300);
    const client = await t.exec(t.a, ['iperf3', '-c', t.b.tunnel4, '-t', '1'], { timeoutMs: 20_000 });
    await server;
    assert.equal(client.code, 0, client.stderr);
    await t.exec(t.a, ['ping', '-q', '-c', '100', '-i', '0.01', t.b.tunnel4], { timeoutMs: 20_000 }); // warm-up
    const pids = [t.daemonPid(t.a), t.daemonPid(t.b)];
    assert.ok(pids.every((p) => p !== undefined), 'both daemons are found');
    for (const p of pids) process.kill(p!, 'SIGUSR2');
    await sleep(300);
    const r = await t.exec(t.a, ['ping', '-q', '-c', String(PINGS), '-i', '0.01', t.b.tunnel4], { timeoutMs: 60_000 });
    assert.match(r.stdout, new RegExp(` ${PINGS} received`), r.stdout);
    for (const p of pids) process.kill(p!, 'SIGUSR2');
    for (const [i, p] of pids.entries()) {
      const file = heapFile(dir, p!);
      assert.ok(await waitUntil(() => existsSync(file), 10_000), `daemon ${'ab'[i]} wrote its heap profile`);
      const sites = JSON.parse(readFileSync(file, 'utf8')) as AllocSite[];
      assert.ok(Array.isArray(sites), `daemon ${'ab'[i]}: ${JSON.stringify(sites)}`);
      const perPing = sites.reduce((a, s) => a + s.bytes, 0) / PINGS;
      const top = [...sites]
        .sort((x, y) => y.bytes - x.bytes)
        .slice(0, 8)
        .map((s) => `${Math.round(s.bytes / PINGS)} B  ${s.stack.slice(0, 3).join(' < ')}`)
        .join('\n  ');
      console.log(`daemon ${'ab'[i]}: ${Math.round(perPing)} B per ping\n  ${top}`);
      // Something is measured at all: a daemon that handles a ping allocates something (node's own callbacks).
      assert.ok(perPing > 0, `daemon ${'ab'[i]}: the profile saw no allocation at all`);
      assert.ok(perPing < LIMIT, `daemon ${'ab'[i]} allocates ${Math.round(perPing)} B per ping (limit ${LIMIT}):\n  ${top}`);
    }
  });
});
