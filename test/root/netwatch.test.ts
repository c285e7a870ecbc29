// rtnetlink change notifications (src/tun/netwatch.ts) and what the daemon builds on them: a watcher in a
// namespace of its own hears link, address, route and rule changes made there; the routing-loop guard answers
// with the new route right after a change instead of a cached one; an idle daemon no longer wakes to poll its
// link or its UAPI socket, yet still follows a link going down and up, and passes traffic at once after it.
// A watcher whose socket overflowed reports every kind of change once and keeps listening.
// Namespaces and links carry the run's tag (testnet.md); everything is removed by name and pid afterwards.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Namespaces, requireRoot, run, sleep, Topology, waitUntil } from '../harness/netns.js';
import { ADDRESS, ALL, LINK, ROUTE } from '../../src/tun/netwatch.js';

const STEP = { timeout: 60_000 };
const dist = (p: string): string => JSON.stringify(fileURLToPath(new URL(p, import.meta.url)));

/**
 * A node process in `ns` with a NetWatch and a LoopGuard that follows it. It prints {"change":bits} for each
 * notification and answers "ask ADDR" with {"out":ifindex} (the route's interface, through the guard's cache).
 */
const CHILD = `
import { createInterface } from 'node:readline';
import { NetWatch } from ${dist('../../src/tun/netwatch.js')};
import { LoopGuard } from ${dist('../../src/tun/route.js')};
const watch = NetWatch.open();
if (!watch) { console.log(JSON.stringify({ error: 'no rtnetlink' })); process.exit(1); }
const guard = new LoopGuard(() => 'none', () => 0);
guard.follow(watch);
watch.onChange((bits) => console.log(JSON.stringify({ change: bits })));
const endpoints = new Map();
createInterface({ input: process.stdin }).on('line', (line) => {
  const [cmd, addr] = line.split(' ');
  if (cmd !== 'ask') return;
  let ep = endpoints.get(addr);
  if (!ep) endpoints.set(addr, (ep = { addr: Uint8Array.from(addr.split('.').map(Number)), port: 51820 }));
  console.log(JSON.stringify({ out: guard.outInterface(ep) }));
});
createInterface({ input: process.stdin }).on('line', (line) => {
  const [cmd, ms] = line.split(' ');
  if (cmd !== 'block') return;
  console.log(JSON.stringify({ blocking: true }));
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, Number(ms)); // the event loop stands still
  console.log(JSON.stringify({ unblocked: true }));
});
console.log(JSON.stringify({ ready: true }));
`;

class Child {
  readonly lines: Record<string, number | boolean | string>[] = [];
  private readonly p: ChildProcessWithoutNullStreams;

  constructor(readonly ns: string) {
    this.p = spawn('ip', ['netns', 'exec', ns, process.execPath, '--input-type=module', '-e', CHILD]);
    let buf = '';
    this.p.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        this.lines.push(JSON.parse(buf.slice(0, i)));
        buf = buf.slice(i + 1);
      }
    });
  }

  /** The union of the change bits reported from line `from` on. */
  changesSince(from: number): number {
    return this.lines.slice(from).reduce((bits, l) => bits | (typeof l.change === 'number' ? l.change : 0), 0);
  }

  write(line: string): void {
    this.p.stdin.write(`${line}\n`);
  }

  async ask(addr: string): Promise<number> {
    const n = this.lines.length;
    this.write(`ask ${addr}`);
    assert.ok(await waitUntil(() => this.lines.slice(n).some((l) => 'out' in l), 3000), 'the child answers');
    return this.lines.slice(n).find((l) => 'out' in l)!.out as number;
  }

  stop(): void {
    this.p.kill('SIGKILL'); // by its own handle
  }
}

const ifindex = async (ns: string, dev: string): Promise<number> =>
  JSON.parse((await run(['ip', '-n', ns, '-j', 'link', 'show', 'dev', dev])).stdout)[0].ifindex;

async function ipIn(ns: string, args: string[]): Promise<void> {
  const r = await run(['ip', '-n', ns, ...args]);
  assert.equal(r.code, 0, `ip ${args.join(' ')}: ${r.stderr}`);
}

describe('rtnetlink change notifications', () => {
  let spaces: Namespaces;
  let ns = '';
  let child: Child | undefined;

  before(async () => {
    requireRoot();
    spaces = new Namespaces();
    ns = await spaces.add('wgtsN');
  });

  after(() => {
    child?.stop();
    spaces?.close();
  });

  it('a watcher hears link, address, route and rule changes in its namespace; the loop guard follows them', STEP, async () => {
    child = new Child(ns);
    assert.ok(await waitUntil(() => child!.lines.some((l) => l.ready), 10_000), `the child starts: ${JSON.stringify(child.lines)}`);
    const steps: [string[], number, string][] = [
      [['link', 'add', 'nw0', 'type', 'veth', 'peer', 'name', 'nw0p'], LINK, 'a new link'],
      [['link', 'set', 'nw0p', 'up'], LINK, 'a link up'],
      [['addr', 'add', '198.51.100.1/24', 'dev', 'nw0'], ADDRESS, 'an address'],
      [['link', 'set', 'nw0', 'up'], LINK | ROUTE, 'link up (with its prefix route)'],
      [['route', 'add', '198.18.0.0/16', 'dev', 'nw0'], ROUTE, 'a route'],
      [['rule', 'add', 'fwmark', '7', 'table', '77'], ROUTE, 'an IPv4 rule'],
      [['-6', 'rule', 'add', 'fwmark', '7', 'table', '77'], ROUTE, 'an IPv6 rule'],
      [['-6', 'addr', 'add', '2001:db8:ff::1/64', 'dev', 'nw0', 'nodad'], ADDRESS, 'an IPv6 address'],
    ];
    for (const [args, bits, what] of steps) {
      const n = child.lines.length;
      await ipIn(ns, args);
      assert.ok(await waitUntil(() => (child!.changesSince(n) & bits) === bits, 3000), `${what}: bits ${bits} reported, got ${child.changesSince(n)}`);
    }

    // The guard caches its answer (for 10 s with notifications); a more specific route through another link
    // must be seen right after it is added, and the route's removal right after that.
    const nw0 = await ifindex(ns, 'nw0');
    assert.equal(await child.ask('198.18.0.9'), nw0);
    await ipIn(ns, ['link', 'add', 'nw1', 'type', 'veth', 'peer', 'name', 'nw1p']);
    await ipIn(ns, ['link', 'set', 'nw1p', 'up']);
    await ipIn(ns, ['link', 'set', 'nw1', 'up']);
    const nw1 = await ifindex(ns, 'nw1');
    assert.equal(await child.ask('198.18.0.9'), nw0, 'a new link alone moves no route');
    let n = child.lines.length;
    await ipIn(ns, ['route', 'add', '198.18.0.9/32', 'dev', 'nw1']);
    assert.ok(await waitUntil(() => (child!.changesSince(n) & ROUTE) !== 0, 3000));
    assert.equal(await child.ask('198.18.0.9'), nw1, 'the new route, not the cached answer');
    n = child.lines.length;
    await ipIn(ns, ['link', 'set', 'nw1', 'down']); // takes its routes with it
    assert.ok(await waitUntil(() => (child!.changesSince(n) & LINK) !== 0, 3000));
    assert.equal(await child.ask('198.18.0.9'), nw0, 'back through nw0 once nw1 is down');
  });

  it('after an overflow (ENOBUFS) every kind of change is reported, and the watch goes on', STEP, async () => {
    assert.ok(child, 'the child of the first test runs');
    // Two rtnetlink sockets' worth of buffer: 6000 route additions while the child's event loop stands still.
    const batch = join(tmpdir(), `wgts-netwatch-${process.pid}.batch`);
    const lines: string[] = [];
    for (let i = 0; i < 6000; i++) lines.push(`route add 198.18.${1 + (i >> 8)}.${i & 255}/32 dev nw0`);
    writeFileSync(batch, lines.join('\n') + '\n');
    try {
      let n = child.lines.length;
      child.write('block 4000');
      assert.ok(await waitUntil(() => child!.lines.slice(n).some((l) => l.blocking), 3000));
      await ipIn(child.ns, ['-batch', batch]);
      assert.ok(await waitUntil(() => child!.lines.slice(n).some((l) => l.unblocked), 10_000));
      assert.ok(await waitUntil(() => child!.changesSince(n) === ALL, 3000), `only routes changed, yet everything is reported after the overflow: ${child.changesSince(n)}`);
      n = child.lines.length;
      await ipIn(child.ns, ['route', 'add', '198.19.0.1/32', 'dev', 'nw0']);
      assert.ok(await waitUntil(() => (child!.changesSince(n) & ROUTE) !== 0, 3000), 'a later change is still heard');
    } finally {
      rmSync(batch, { force: true });
    }
  });

  it('an idle daemon does not wake to poll, follows link down and up at once, and passes traffic right after', STEP, async () => {
    const t = await Topology.create({ impls: ['wgts', 'wgts'] });
    try {
      await t.exec(t.a, ['ping', '-c', '1', '-W', '2', t.b.tunnel4]);
      const pid = t.daemonPid(t.a)!;
      assert.ok(pid);
      const switches = (): number =>
        Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/task/${pid}/status`, 'utf8'))![1]);
      // Polling the link every 500 ms and the socket file every second woke the main thread at least 6 times
      // in 2 s; the quietest of three windows allows for a timer or a kernel router solicitation.
      const windows: number[] = [];
      for (let i = 0; i < 3; i++) {
        const c0 = switches();
        await sleep(2000);
        windows.push(switches() - c0);
      }
      assert.ok(Math.min(...windows) <= 3, `main-thread wake-ups per 2 s idle: ${windows.join(', ')}`);

      // Down and up again well within REKEY_TIMEOUT of a handshake: the first packet after up starts a new one.
      const count = (re: RegExp): number => (t.log(t.a).match(re) ?? []).length;
      const [downs, ups] = [count(/now Down/g), count(/now Up/g)];
      await ipIn(t.a.ns, ['link', 'set', t.a.ifname, 'down']);
      assert.ok(await waitUntil(() => count(/now Down/g) > downs, 2000), 'the daemon saw the link go down');
      await ipIn(t.a.ns, ['link', 'set', t.a.ifname, 'up']);
      assert.ok(await waitUntil(() => count(/now Up/g) > ups, 2000), 'and come up again');
      const p = await t.exec(t.a, ['ping', '-c', '3', '-i', '0.2', '-W', '2', t.b.tunnel4], { timeoutMs: 15_000 });
      assert.equal(p.code, 0, `ping right after up:\n${p.stdout}\n${t.log(t.a).split('\n').slice(-6).join('\n')}`);

      await ipIn(t.a.ns, ['link', 'set', t.a.ifname, 'mtu', '1380']);
      assert.ok(await waitUntil(() => /MTU updated: 1380/.test(t.log(t.a)), 2000), 'an MTU change is followed');
    } finally {
      await t.close();
    }
  });
});
