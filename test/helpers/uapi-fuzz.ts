// UAPI fuzzing (issue 5 item 1; interfaces.md "The UAPI socket"): seeded generators of get/set requests —
// valid ones for throwaway peers, known-bad lines, byte-mutated and binary requests, over-long lines, missing
// terminators, huge allowed-IP lists, several operations per connection, CRLF, odd write splits, half-closed
// and abandoned connections — and a client that runs one case on the socket and checks the answer's shape.
// Nothing generated may change the interface itself or the real peer: interface lines are always invalid,
// peer sections name throwaway keys only, and a guard rejects mutations that drift toward the real config.

import net from 'node:net';
import type { Rng } from './fuzz.js';

export type Expect = 'ok' | 'fail' | 'get';

export interface UapiCase {
  kind: string;
  chunks: Buffer[];
  /** Pause a turn between chunks, so the server sees them as separate reads. */
  slowWrites: boolean;
  /** Half-close after writing: the server must then answer a pending set and close. */
  end: boolean;
  /** Destroy right after writing: a client that vanishes mid-request. */
  abort: boolean;
  /** The replies expected, in order, when the request is well-formed; null for mutated or junk input. */
  expect: Expect[] | null;
}

export interface CaseResult {
  replies: { errno: number; body: string[] }[];
  closedByServer: boolean;
  /** Why the exchange did not complete (then the test fails): timeout, malformed reply. */
  problem?: string;
}

const FORBIDDEN = ['203.0.113.', '2001:db8:1:', 'private_key', 'listen_port', 'fwmark', 'replace_peers'];

export class UapiFuzzer {
  readonly counts: Record<string, number> = {};
  private readonly keys: string[];

  /** realKeys: hex public keys that must never appear in generated input (the real peer, the device's own). */
  constructor(private readonly rng: Rng, private readonly realKeys: string[], private readonly ownPublicKey: string) {
    this.keys = Array.from({ length: 48 }, () => Buffer.from(rng.bytes(32)).toString('hex'));
  }

  next(): UapiCase {
    const r = this.rng;
    const kinds: [string, number, () => UapiCase][] = [
      ['get', 8, () => this.simple('get=1\n\n', ['get'])],
      ['get-trailing-junk', 3, () => ({ ...this.simple(`get=1\n${String.fromCharCode(r.range(0x20, 0x7e))}`, ['fail']), end: true })],
      ['set-valid-peer', 14, () => this.simple(`set=1\n${this.peerSection()}\n`, ['ok'])],
      ['set-bad-peer-line', 10, () => this.simple(`set=1\n${this.peerSection(this.badPeerLine())}\n`, ['fail'])],
      ['set-bad-interface-line', 8, () => this.simple(`set=1\n${this.badInterfaceLine()}\n${r.chance(0.5) ? this.peerSection() : ''}\n`, ['fail'])],
      ['set-own-key-section', 2, () => this.simple(`set=1\npublic_key=${this.ownPublicKey}\nallowed_ip=198.18.${r.int(256)}.${r.int(256)}/32\n\n`, ['ok'])],
      ['set-remove-peer', 4, () => this.simple(`set=1\npublic_key=${r.pick(this.keys)}\nremove=true\n\n`, ['ok'])],
      ['set-no-terminator-half-closed', 5, () => ({ ...this.simple(`set=1\n${this.peerSection()}`, ['ok']), end: true })],
      ['set-crlf', 3, () => this.simple(`set=1\n${this.peerSection().replace(/\n/g, '\r\n')}\r\n`, ['ok'])],
      // wireguard-go reads the operation line up to '\n' and takes only "set=1\n": with a CR it closes.
      ['operation-line-crlf', 1, () => ({ ...this.simple(`set=1\r\n${this.peerSection()}\n`, []), end: true })],
      ['multi-op', 4, () => this.simple(`get=1\n\nset=1\n${this.peerSection()}\nget=1\n\n`, ['get', 'ok', 'get'])],
      ['overlong-line-in-set', 2, () => this.simple(`set=1\npublic_key=${r.pick(this.keys)}\nallowed_ip=${'1'.repeat(r.range(65_537, 90_000))}\n\n`, ['fail'])],
      ['overlong-operation-line', 1, () => ({ ...this.simple(`${'g'.repeat(r.range(65_537, 80_000))}\n`, []), end: true })],
      ['huge-allowed-ip-list', 1, () => this.simple(`set=1\n${this.hugeList()}\n`, ['ok'])],
      ['mutated-set', 20, () => ({ ...this.simple(this.mutatedSet(), null), end: true })],
      ['binary-junk', 8, () => ({ ...this.simple(this.junk(), null), end: true })],
      ['unknown-operation', 3, () => ({ ...this.simple(`${r.pick(['set=2', 'get=0', 'GET=1', 'set', '=1', 'hello'])}\n\n`, []), end: true })],
      ['abandoned-mid-set', 4, () => ({ ...this.simple(`set=1\n${this.peerSection()}`.slice(0, r.range(1, 120)), null), abort: true })],
    ];
    const total = kinds.reduce((s, k) => s + k[1], 0);
    let x = r.int(total);
    const [name, , make] = kinds.find((k) => (x -= k[1]) < 0)!;
    const c = make();
    c.kind = name;
    this.counts[name] = (this.counts[name] ?? 0) + 1;
    return c;
  }

  private simple(text: string, expect: Expect[] | null): UapiCase {
    const bytes = Buffer.from(text, 'latin1');
    return { kind: '', chunks: this.split(bytes), slowWrites: this.rng.chance(0.3), end: false, abort: false, expect };
  }

  /** The request cut at random points (one piece most of the time). */
  private split(b: Buffer): Buffer[] {
    if (b.length < 2 || this.rng.chance(0.6)) return [b];
    const cuts = [...new Set(Array.from({ length: this.rng.range(1, 6) }, () => this.rng.range(1, b.length - 1)))].sort((x, y) => x - y);
    return [0, ...cuts].map((c, i, a) => b.subarray(c, i + 1 < a.length ? a[i + 1] : b.length));
  }

  private allowedIp(): string {
    const r = this.rng;
    if (r.chance(0.7)) return `198.${r.range(18, 19)}.${r.int(256)}.${r.int(256)}/${r.range(16, 32)}`;
    return `2001:db8:f${r.int(16).toString(16)}:${r.int(0x10000).toString(16)}::${r.int(0x10000).toString(16)}/${r.range(48, 128)}`;
  }

  private endpoint(): string {
    const r = this.rng;
    return r.chance(0.7) ? `198.51.100.${r.range(200, 250)}:${r.range(1, 65535)}` : `[2001:db8:ff::${r.range(0xc8, 0xfa).toString(16)}]:${r.range(1, 65535)}`;
  }

  /** A valid section for a throwaway peer, optionally with `extra` (a bad line) somewhere after its key. */
  private peerSection(extra?: string): string {
    const r = this.rng;
    const lines: string[] = [];
    if (r.chance(0.2)) lines.push('update_only=true');
    if (r.chance(0.3)) lines.push('replace_allowed_ips=true');
    for (let i = r.int(6); i > 0; i--) lines.push(`allowed_ip=${this.allowedIp()}`);
    if (r.chance(0.1)) lines.push(`allowed_ip=-${this.allowedIp()}`);
    if (r.chance(0.4)) lines.push(`endpoint=${this.endpoint()}`);
    if (r.chance(0.3)) lines.push(`persistent_keepalive_interval=${r.pick([0, 0, 1, 25, 65535])}`);
    if (r.chance(0.3)) lines.push(`preshared_key=${Buffer.from(r.bytes(32)).toString('hex')}`);
    if (r.chance(0.3)) lines.push('protocol_version=1');
    for (let i = lines.length - 1; i > 0; i--) {
      const j = r.int(i + 1);
      [lines[i], lines[j]] = [lines[j], lines[i]];
    }
    if (extra !== undefined) lines.splice(r.int(lines.length + 1), 0, extra);
    return `public_key=${r.pick(this.keys)}\n${lines.map((l) => `${l}\n`).join('')}`;
  }

  private badPeerLine(): string {
    const r = this.rng;
    return r.pick([
      'endpoint=198.51.100.200', 'endpoint=198.51.100.200:65536', 'endpoint=[2001:db8:ff::c8:1', 'endpoint=2001:db8:ff::c8:80',
      'endpoint=example.invalid:51820', `allowed_ip=198.18.${r.int(256)}.0`, 'allowed_ip=198.18.0.0/33', 'allowed_ip=198.18.0.0/08',
      'allowed_ip=2001:db8:f0::/129', 'allowed_ip=300.1.1.1/32', 'allowed_ip=', 'persistent_keepalive_interval=65536',
      'persistent_keepalive_interval=-1', 'persistent_keepalive_interval= 1', 'protocol_version=2', 'protocol_version=',
      `preshared_key=${'zz'.repeat(32)}`, `preshared_key=${'ab'.repeat(31)}`, 'update_only=false', 'remove=yes',
      'replace_allowed_ips=1', 'no_such_key=1', 'no equals sign', '=', `public_key=${'0'.repeat(63)}`,
    ]);
  }

  private badInterfaceLine(): string {
    const r = this.rng;
    return r.pick([
      `private_key=${'zz'.repeat(32)}`, `private_key=${'ab'.repeat(33)}`, 'private_key=', 'listen_port=65536', 'listen_port=-1',
      'listen_port=0x10', 'listen_port= 5', 'fwmark=4294967296', 'fwmark=-1', 'fwmark=0x1', 'replace_peers=false',
      'replace_peers=', 'allowed_ip=198.18.0.0/16', 'endpoint=198.51.100.200:1', 'no_such_key=1', 'garbage',
      `public_key=${'g'.repeat(64)}`,
    ]);
  }

  private hugeList(): string {
    const r = this.rng;
    const n = r.range(2_000, 10_000);
    const base = r.int(64) * 1024;
    const lines = [`public_key=${r.pick(this.keys)}`, 'replace_allowed_ips=true'];
    for (let i = 0; i < n; i++) lines.push(`allowed_ip=198.18.${((base + i) >> 8) & 0xff}.${(base + i) & 0xff}/32`);
    return `${lines.join('\n')}\n`;
  }

  /** A valid set with a few byte-level edits; regenerated while it drifts toward the real configuration. */
  private mutatedSet(): string {
    const r = this.rng;
    for (;;) {
      const b = Buffer.from(`set=1\n${this.peerSection()}\n`, 'latin1');
      let s = [...b];
      for (let i = r.range(1, 4); i > 0; i--) {
        const at = r.int(s.length);
        switch (r.int(5)) {
          case 0: s[at] ^= 1 << r.int(8); break;
          case 1: s.splice(at, 0, r.pick([0, 0x0a, 0x0d, 0x3d, 0x2f, 0x3a, 0xff, r.int(256)])); break;
          case 2: s.splice(at, r.range(1, 8)); break;
          case 3: s.splice(at, 0, ...s.slice(at, at + r.range(1, 40))); break;
          default: s[at] = r.int(256);
        }
      }
      s = s.slice(0, 200_000);
      const text = Buffer.from(s).toString('latin1');
      if (!this.touchesRealConfig(text)) return text;
    }
  }

  private junk(): string {
    const r = this.rng;
    const body = Buffer.from(r.bytes(r.pick([1, 16, 200, r.range(1, 4096)]))).toString('latin1');
    const text = r.chance(0.5) ? `set=1\n${body}` : body;
    return this.touchesRealConfig(text) ? 'set=1\nx\n\n' : text;
  }

  private touchesRealConfig(text: string): boolean {
    return FORBIDDEN.some((f) => text.includes(f)) || this.realKeys.some((k) => text.includes(k));
  }
}

/** Every `errno=N` reply in order; null when the stream holds something that is not a reply. */
export function parseReplies(text: string): { errno: number; body: string[] }[] | null {
  const out: { errno: number; body: string[] }[] = [];
  let rest = text;
  while (rest.length) {
    const end = rest.indexOf('\n\n');
    if (end < 0) return null; // a reply cut short
    const lines = rest.slice(0, end).split('\n');
    rest = rest.slice(end + 2);
    const last = lines.pop() ?? '';
    const m = /^errno=(-?\d+)$/.exec(last);
    if (!m || lines.some((l) => !/^[a-z_]+=[^\n]*$/.test(l))) return null;
    out.push({ errno: Number(m[1]), body: lines });
  }
  return out;
}

/** Runs one case on a fresh connection; resolves when the exchange is over (never rejects). */
export function runUapiCase(path: string, c: UapiCase, timeoutMs = 5000): Promise<CaseResult> {
  return new Promise((resolve) => {
    const sock = net.connect(path);
    const chunks: Buffer[] = [];
    let settled = false;
    const finish = (closedByServer: boolean, problem?: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString('latin1');
      const replies = parseReplies(text);
      sock.destroy();
      if (!replies) return resolve({ replies: [], closedByServer, problem: problem ?? `malformed reply: ${JSON.stringify(text.slice(0, 200))}` });
      resolve({ replies, closedByServer, ...(problem ? { problem } : {}) });
    };
    const timer = setTimeout(() => finish(false, `no answer or close within ${timeoutMs} ms`), timeoutMs);
    sock.on('data', (d: Buffer) => {
      chunks.push(d);
      // A request we do not half-close is over once every expected reply has arrived.
      if (!c.end && c.expect && c.expect.length) {
        const r = parseReplies(Buffer.concat(chunks).toString('latin1'));
        if (r && r.length >= c.expect.length) finish(false);
      }
    });
    sock.on('end', () => finish(true));
    sock.on('close', () => finish(true));
    sock.on('error', (e) => finish(true, (e as NodeJS.ErrnoException).code === 'EPIPE' || (e as NodeJS.ErrnoException).code === 'ECONNRESET' ? undefined : `socket error ${e.message}`));
    sock.on('connect', async () => {
      for (const piece of c.chunks) {
        if (sock.destroyed) return;
        sock.write(piece);
        if (c.slowWrites) await new Promise((r) => setImmediate(r));
      }
      if (c.abort) return finish(false);
      if (c.end) sock.end();
    });
  });
}
