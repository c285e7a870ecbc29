// nftables inside a test namespace (testnet.md: the kernel has no netem, so loss and blocking are nft rules):
// load a ruleset, read the counters of rules by their comment, and match WireGuard message types. Used by
// the issue 5 root tests (rotation, timers): counters are how they see what a daemon put on the wire.

import type { Host, Topology } from '../harness/netns.js';

/** WireGuard message types (first byte of the UDP payload). */
export const WG_TYPE = { initiation: 1, response: 2, cookie: 3, data: 4 } as const;

/**
 * An nft match on the WireGuard message type: `@th,64,8` is the byte at offset 8 of the transport header,
 * i.e. the first byte of the UDP payload.
 */
export const wgType = (t: number): string => `@th,64,8 ${t}`;

/** Loads `ruleset` (nft -f syntax) in h's namespace; throws with nft's error. */
export async function nftLoad(t: Topology, h: Host, ruleset: string): Promise<void> {
  const r = await t.exec(h, ['nft', '-f', '-'], { input: ruleset, timeoutMs: 10_000 });
  if (r.code !== 0) throw new Error(`nft -f in ${h.ns} failed (exit ${r.code}): ${r.stderr.trim()}\n${ruleset}`);
}

/** Deletes an inet table of ours (no error if it is already gone). */
export async function nftDeleteTable(t: Topology, h: Host, table: string): Promise<void> {
  await t.exec(h, ['nft', 'delete', 'table', 'inet', table], { timeoutMs: 10_000 });
}

export interface Counter {
  packets: number;
  bytes: number;
}

interface NftRule {
  rule?: { comment?: string; expr?: { counter?: Counter }[] };
}

/** Packet and byte counters of every rule of inet `table` that has a comment, keyed by that comment. */
export async function nftCounters(t: Topology, h: Host, table: string): Promise<Record<string, Counter>> {
  const r = await t.exec(h, ['nft', '-j', 'list', 'table', 'inet', table], { timeoutMs: 10_000 });
  if (r.code !== 0) throw new Error(`nft list table inet ${table} in ${h.ns} failed: ${r.stderr.trim()}`);
  const out: Record<string, Counter> = {};
  for (const item of (JSON.parse(r.stdout) as { nftables: NftRule[] }).nftables) {
    const rule = item.rule;
    if (!rule?.comment) continue;
    const c = rule.expr?.find((e) => e.counter)?.counter;
    if (c) out[rule.comment] = { packets: c.packets, bytes: c.bytes };
  }
  return out;
}
