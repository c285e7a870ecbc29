// tcpdump in a test namespace around an action, returning the UDP datagrams seen (read with pcapudp.ts).
// Used by the issue 5 fuzz and replay root tests to pick up real WireGuard messages a daemon sent or
// accepted. tcpdump is stopped by its pid (SIGTERM, then SIGKILL), never by name.

import { spawn } from 'node:child_process';
import { join } from 'node:path';
import type { Host, Topology } from '../harness/netns.js';
import { sleep, waitUntil } from '../harness/netns.js';
import { readPcapUdp, type UdpRecord } from './pcapudp.js';

let n = 0;

/** Captures `udp and (filter)` on dev in h's namespace while action runs (plus settleMs for stragglers). */
export async function captureUdp(t: Topology, h: Host, dev: string, filter: string, action: () => Promise<void>, settleMs = 300): Promise<UdpRecord[]> {
  const file = join(t.dir, `capture-${process.pid}-${n++}.pcap`);
  // -Z root: tcpdump would otherwise drop to its own user and fail to write into our 0700 directory.
  // --immediate-mode: without it libpcap hands packets over in ring-buffer blocks (up to 1 s late), and the
  // last block is lost when tcpdump is stopped.
  const dump = spawn('ip', ['netns', 'exec', h.ns, 'tcpdump', '-Z', 'root', '--immediate-mode', '-i', dev, '-n', '-U', '-w', file, `udp and (${filter})`],
    { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  dump.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise((r) => dump.once('close', r));
  try {
    if (!(await waitUntil(() => /listening on/.test(err), 5000))) throw new Error(`tcpdump did not start in ${h.ns}: ${err}`);
    await action();
    await sleep(settleMs);
  } finally {
    if (dump.exitCode === null && dump.pid) process.kill(dump.pid, 'SIGTERM');
    await Promise.race([exited, sleep(3000)]);
    if (dump.exitCode === null && dump.pid) {
      process.kill(dump.pid, 'SIGKILL');
      await Promise.race([exited, sleep(2000)]);
    }
  }
  return readPcapUdp(file);
}
