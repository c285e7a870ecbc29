// The harness's own cleanup (root): a run killed with SIGKILL runs no exit sweep, so its namespaces, the daemons
// in them, their sockets and its topology directory stay behind; the next run removes them (sweepDeadRuns),
// and never a live run's.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { alive, namespaceExists, nsPids, requireRoot, socketPath, sweepDeadRuns, waitUntil } from '../harness/netns.js';

const HARNESS = new URL('../harness/netns.js', import.meta.url).href;

describe('leftovers of a killed run', () => {
  it('a SIGKILLed run leaves its topology; the next sweep removes namespaces, daemons, sockets and its directory, and spares a live run', { timeout: 60_000 }, async () => {
    requireRoot();
    // Two runs: one to be killed, one left alive; each prints its topology and waits.
    const start = () => {
      const p = spawn(process.execPath, ['--input-type=module', '-e', `
        const { Topology } = await import(${JSON.stringify(HARNESS)});
        const t = await Topology.create();
        console.log(JSON.stringify({ ns: [t.a.ns, t.b.ns], ifnames: [t.a.ifname, t.b.ifname], dir: t.dir }));
        setInterval(() => {}, 1000);`], { stdio: ['ignore', 'pipe', 'inherit'] });
      return new Promise<{ p: typeof p; ns: string[]; ifnames: string[]; dir: string }>((resolve, reject) => {
        p.stdout.once('data', (d: Buffer) => resolve({ p, ...JSON.parse(d.toString()) }));
        p.once('exit', (code) => reject(new Error(`harness child exited ${code}`)));
      });
    };
    const killed = await start();
    const live = await start();
    try {
      const daemons = killed.ns.flatMap(nsPids);
      assert.ok(daemons.length >= 2, `the killed run's daemons run (${daemons.join(' ')})`);
      killed.p.kill('SIGKILL');
      assert.ok(await waitUntil(() => !alive(killed.p.pid!), 5000), 'the run is gone');
      assert.ok(killed.ns.every(namespaceExists), 'SIGKILL left its namespaces');
      assert.ok(killed.ifnames.every((n) => existsSync(socketPath(n))), 'and its daemons and their sockets');
      assert.ok(existsSync(killed.dir), 'and its directory');

      sweepDeadRuns();
      assert.ok(killed.ns.every((ns) => !namespaceExists(ns)), 'the sweep deleted the namespaces');
      // SIGKILLed, a daemon leaves its namespace first and finishes exiting (its threads, its TUN) just after.
      assert.ok(await waitUntil(() => daemons.every((pid) => !alive(pid)), 5000), `and killed the daemons in them: ${daemons.filter(alive).join(' ')} still run`);
      assert.ok(killed.ifnames.every((n) => !existsSync(socketPath(n))), 'and removed their sockets');
      assert.ok(!existsSync(killed.dir), `and the run's directory ${killed.dir}`);
      assert.ok(live.ns.every(namespaceExists), "a live run's namespaces stay");
      assert.ok(live.ifnames.every((n) => existsSync(socketPath(n))), 'and its sockets');
      assert.ok(existsSync(live.dir), 'and its directory');
    } finally {
      killed.p.kill('SIGKILL');
      live.p.kill('SIGTERM'); // its exit sweep removes its topology
      await waitUntil(() => live.ns.every((ns) => !namespaceExists(ns)), 10_000);
    }
  });
});
