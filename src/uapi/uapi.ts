// The cross-platform configuration protocol spoken on the UAPI socket (interfaces.md "The UAPI socket"):
// the `get` reply, the line-by-line `set` session, and a byte-stream parser for one connection. Pure: no
// sockets; server.ts wires a UapiConnection to each accepted stream. Behaviour follows wireguard-go's
// device/uapi.go except where noted (a failed set reads up to its blank line before answering).

import { Errno, WgError } from '../errors.js';
import type { Device } from '../device.js';
import { formatIP, formatPrefix, parseIP, parsePrefix } from '../ip.js';
import { keyFromHex, keyToHex } from '../keys.js';
import type { Endpoint, Peer } from '../peer.js';

/** What the UAPI needs beyond Device: the socket-level settings owned by the endpoint. */
export interface UapiHost {
  readonly device: Device;
  /** Actual bound port (0 before bound). */
  readonly listenPort: number;
  /** 0 ok, or a positive errno (e.g. Errno.EADDRINUSE): the endpoint rebinds. */
  setListenPort(port: number): number;
  readonly fwmark: number;
  /** 0 ok, or a positive errno. */
  setFwmark(mark: number): number;
}

export type UapiLog = (level: 'error' | 'verbose', msg: string) => void;

/** A failed line: the negative errno for the reply and a log-safe reason (never a key). */
class UapiError extends Error {
  constructor(readonly errno: number, message: string) {
    super(message);
  }
}

const invalid = (msg: string): UapiError => new UapiError(-Errno.EINVAL, msg);

/**
 * A bad value or key name for the log, quoted, with every run that could be key material (16 or more
 * base64, base64url or hex characters) hidden: a key pasted into the wrong field must not reach the log (issue 5 item 8).
 */
const shown = (v: string): string => JSON.stringify(v.replace(/[A-Za-z0-9+/=_-]{16,}/g, (m) => `<${m.length} characters hidden>`));

/** The flag keys (replace_peers, remove, ...) take exactly "true". */
function requireTrue(key: string, value: string): void {
  if (value !== 'true') throw invalid(`invalid ${key} value ${shown(value)}`);
}

// ---- value parsers (Go's strconv.ParseUint base 10 / netip rules, which wireguard-go uses) ----------------

function parseUint(value: string, max: number, what: string): number {
  // ParseUint takes leading zeros but no sign, spaces or other bases.
  if (!/^[0-9]+$/.test(value)) throw invalid(`invalid ${what}`);
  const n = Number(value);
  if (n > max) throw invalid(`${what} out of range`);
  return n;
}

function parseKey(value: string, what: string): Uint8Array {
  try {
    return keyFromHex(value);
  } catch {
    throw invalid(`invalid ${what}`); // the value itself may be secret: never echoed
  }
}

const isZero = (k: Uint8Array): boolean => k.every((b) => b === 0);

/** `a.b.c.d:port` or `[v6]:port`, numeric only, as netip.ParseAddrPort; zone ids are refused (no scope here). */
export function parseEndpoint(value: string): Endpoint | null {
  const colon = value.lastIndexOf(':');
  if (colon < 0) return null;
  let host = value.slice(0, colon);
  const portText = value.slice(colon + 1);
  if (!/^[0-9]+$/.test(portText) || Number(portText) > 0xffff) return null;
  const bracketed = host.startsWith('[') && host.endsWith(']');
  if (bracketed) host = host.slice(1, -1);
  const addr = parseIP(host);
  // Brackets if and only if IPv6, as Go insists; an unbracketed v6 host would make the last ':' ambiguous.
  if (!addr || bracketed !== (addr.length === 16)) return null;
  return { addr, port: Number(portText) };
}

export function formatEndpoint(ep: Endpoint): string {
  return ep.addr.length === 16 ? `[${formatIP(ep.addr)}]:${ep.port}` : `${formatIP(ep.addr)}:${ep.port}`;
}

/** `IP/cidr` with the slash required and no leading zeros in cidr, as netip.ParsePrefix. */
function parseAllowedIp(value: string): { addr: Uint8Array; cidr: number } {
  const slash = value.indexOf('/');
  const bits = slash < 0 ? '' : value.slice(slash + 1);
  const p = slash < 0 || !/^(?:0|[1-9][0-9]*)$/.test(bits) ? null : parsePrefix(value);
  if (!p) throw invalid(`invalid allowed ip ${shown(value)}`);
  return p;
}

// ---- get ------------------------------------------------------------------------------------------------

const u64 = (n: bigint): string => BigInt.asUintN(64, n).toString();

/** The full `get` reply, ending in `errno=0` and the blank line. Keys are lower-case hex. */
export function uapiGet(host: UapiHost): string {
  const { device } = host;
  const out: string[] = [];
  const sk = device.privateKey;
  if (sk && !isZero(sk)) out.push(`private_key=${keyToHex(sk)}`);
  if (host.listenPort !== 0) out.push(`listen_port=${host.listenPort}`);
  if (host.fwmark !== 0) out.push(`fwmark=${host.fwmark >>> 0}`);
  for (const peer of device.allPeers()) {
    out.push(`public_key=${keyToHex(peer.publicKey)}`);
    // Always sent, all zero meaning none, as wireguard-go does; `wg` treats zero as "no preshared key".
    out.push(`preshared_key=${keyToHex(peer.presharedKey)}`);
    out.push('protocol_version=1');
    if (peer.endpoint) out.push(`endpoint=${formatEndpoint(peer.endpoint)}`);
    const hs = peer.timers.lastHandshakeWall;
    out.push(`last_handshake_time_sec=${hs ? hs.sec : 0n}`);
    out.push(`last_handshake_time_nsec=${hs ? hs.nsec : 0}`);
    out.push(`tx_bytes=${u64(peer.txBytes)}`);
    out.push(`rx_bytes=${u64(peer.rxBytes)}`);
    out.push(`persistent_keepalive_interval=${peer.timers.persistentKeepalive}`);
    for (const { addr, cidr } of device.allowedIps.entriesForPeer(peer)) out.push(`allowed_ip=${formatPrefix(addr, cidr)}`);
  }
  out.push('errno=0', '', '');
  return out.join('\n');
}

// ---- set ------------------------------------------------------------------------------------------------

/**
 * One `set=1` operation, fed a line at a time (without the newline). Each line is applied as it comes; the
 * first bad line fixes the errno and every later line is ignored, but what was applied stays (the protocol
 * is not transactional). finish() ends the operation and returns 0 or a negative errno.
 */
export class UapiSetSession {
  private inInterface = true;
  private peer: Peer | null = null;
  /** The current public_key section names our own key, was removed, or was refused by update_only. */
  private dummy = false;
  private created = false;
  /** persistent_keepalive_interval of this section, applied when the section ends (see endPeer). */
  private keepalive: number | undefined;
  private failed = 0;
  private done = false;

  constructor(
    private readonly host: UapiHost,
    private readonly log: UapiLog = () => {},
  ) {}

  /** 0 while every line so far was accepted, else the negative errno of the first bad one. */
  get errno(): number {
    return this.failed;
  }

  line(line: string): void {
    if (this.failed || this.done) return;
    try {
      this.apply(line);
    } catch (e) {
      this.fail(e instanceof UapiError ? e.errno : e instanceof WgError ? -e.errno : -Errno.EIO, describe(e));
    }
  }

  /** Marks the operation failed from outside (e.g. an over-long line is an I/O error, as in wireguard-go). */
  fail(errno: number, why: string): void {
    if (this.failed || this.done) return;
    this.failed = errno;
    this.log('error', `UAPI: set failed (errno ${errno}): ${why}`);
    // The line that failed ends the operation without the section's post-processing, as wireguard-go does,
    // but a keepalive interval already given is kept (non-transactional), only without the immediate send.
    if (this.peer && !this.dummy && this.keepalive !== undefined) this.peer.timers.setPersistentKeepalive(this.keepalive);
    this.keepalive = undefined;
  }

  finish(): number {
    if (!this.done && !this.failed) {
      try {
        this.endPeer();
      } catch (e) {
        this.fail(e instanceof WgError ? -e.errno : -Errno.EIO, describe(e));
      }
    }
    this.done = true;
    return this.failed;
  }

  private apply(line: string): void {
    const eq = line.indexOf('=');
    if (eq < 0) throw new UapiError(-Errno.EPROTO, `line without '=' (${line.length} bytes)`);
    const key = line.slice(0, eq);
    const value = line.slice(eq + 1);
    if (key === 'public_key') {
      this.inInterface = false;
      this.endPeer();
      this.startPeer(parseKey(value, 'public_key'));
    } else if (this.inInterface) {
      this.interfaceLine(key, value);
    } else {
      this.peerLine(key, value);
    }
  }

  private interfaceLine(key: string, value: string): void {
    const { host } = this;
    switch (key) {
      case 'private_key': {
        const sk = parseKey(value, 'private_key');
        this.log('verbose', 'UAPI: Updating private key');
        host.device.setPrivateKey(isZero(sk) ? null : sk);
        sk.fill(0);
        return;
      }
      case 'listen_port': {
        const port = parseUint(value, 0xffff, 'listen_port');
        this.log('verbose', 'UAPI: Updating listen port');
        const err = host.setListenPort(port);
        // wireguard-go reports every bind failure as EADDRINUSE, whatever the socket call said.
        if (err) throw new UapiError(-Errno.EADDRINUSE, `failed to set listen_port ${port} (errno ${err})`);
        return;
      }
      case 'fwmark': {
        const mark = parseUint(value, 0xffffffff, 'fwmark');
        this.log('verbose', 'UAPI: Updating fwmark');
        const err = host.setFwmark(mark);
        if (err) throw new UapiError(-Errno.EADDRINUSE, `failed to update fwmark ${mark} (errno ${err})`);
        return;
      }
      case 'replace_peers':
        requireTrue(key, value);
        this.log('verbose', 'UAPI: Removing all peers');
        for (const p of [...host.device.allPeers()]) host.device.removePeer(p);
        return;
      default:
        throw invalid(`invalid UAPI device key ${shown(key)}`);
    }
  }

  private startPeer(pub: Uint8Array): void {
    const { device } = this.host;
    const existing = device.peer(pub);
    const peer = existing ?? device.addPeer(pub); // throws EINVAL past MAX_PEERS_PER_DEVICE
    this.peer = peer ?? null;
    this.dummy = !peer; // our own public key: the section is parsed but changes nothing
    this.created = !existing && !!peer;
    this.keepalive = undefined;
    if (this.created) this.log('verbose', `${peer!.name} - UAPI: Created`);
  }

  /** The end of a peer's section: now the immediate keepalive of a 0 -> non-zero interval is sent. */
  private endPeer(): void {
    const { peer, keepalive } = this;
    this.keepalive = undefined;
    if (peer && !this.dummy && keepalive !== undefined) this.host.device.setPersistentKeepalive(peer, keepalive);
  }

  /** Lines for a dummy section are still validated (a bad one still fails the set) but not applied. */
  private peerLine(key: string, value: string): void {
    const { device } = this.host;
    const peer = this.dummy ? null : this.peer!;
    switch (key) {
      case 'update_only':
        requireTrue(key, value);
        if (peer && this.created) this.drop(peer, 'Not created (update_only)');
        return;
      case 'remove':
        requireTrue(key, value);
        if (peer) this.drop(peer, 'Removing');
        this.dummy = true;
        return;
      case 'preshared_key': {
        const psk = parseKey(value, 'preshared_key');
        if (peer) peer.presharedKey = psk;
        psk.fill(0);
        return;
      }
      case 'endpoint': {
        const ep = parseEndpoint(value);
        if (!ep) throw invalid(`invalid endpoint ${shown(value)}`);
        if (peer) peer.endpoint = ep;
        return;
      }
      case 'persistent_keepalive_interval':
        this.keepalive = parseUint(value, 0xffff, 'persistent_keepalive_interval');
        return;
      case 'replace_allowed_ips':
        requireTrue(key, value);
        if (peer) device.allowedIps.removeByPeer(peer);
        return;
      case 'allowed_ip': {
        const remove = value.startsWith('-');
        const { addr, cidr } = parseAllowedIp(remove ? value.slice(1) : value);
        if (!peer) return;
        if (remove) device.allowedIps.remove(addr, cidr, peer);
        else device.allowedIps.insert(addr, cidr, peer); // masks, and takes the prefix from any other peer
        return;
      }
      case 'protocol_version':
        if (value !== '1') throw invalid(`invalid protocol version ${shown(value)}`);
        return;
      default:
        throw invalid(`invalid UAPI peer key ${shown(key)}`);
    }
  }

  /** Removes a peer; the rest of its section is then parsed but ignored. */
  private drop(peer: Peer, why: string): void {
    this.log('verbose', `${peer.name} - UAPI: ${why}`);
    this.host.device.removePeer(peer);
    this.dummy = true;
    this.keepalive = undefined;
  }
}

const describe = (e: unknown): string => (e instanceof Error ? e.message : String(e));

// ---- one connection ---------------------------------------------------------------------------------------

/** What the server must do after a chunk: write each reply in order, then close if asked. */
export interface UapiOutput {
  replies: string[];
  close: boolean;
}

// bufio.Scanner's default token limit in wireguard-go; longer lines are an I/O error there too.
const MAX_LINE = 64 * 1024;
// A set is buffered and applied in one go, so other connections and the packet path never see half of it;
// past this many bytes the buffered lines are applied early, which keeps memory bounded for huge configs.
const MAX_BUFFERED_SET = 4 * 1024 * 1024;

const errnoReply = (errno: number): string => `errno=${errno}\n\n`;

/**
 * The protocol state of one stream connection. Bytes may arrive in any split; several operations may share
 * the connection; an unknown operation line asks for the connection to be closed.
 */
export class UapiConnection {
  private state: 'op' | 'get' | 'set' | 'closed' = 'op';
  private partial: Buffer[] = [];
  private partialLen = 0;
  private overlong = false;
  private session: UapiSetSession | null = null;
  private pending: string[] = [];
  private pendingBytes = 0;

  constructor(
    private readonly host: UapiHost,
    private readonly log: UapiLog = () => {},
  ) {}

  get closed(): boolean {
    return this.state === 'closed';
  }

  feed(chunk: Uint8Array): UapiOutput {
    const out: UapiOutput = { replies: [], close: false };
    const buf = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length);
    let i = 0;
    while (i < buf.length && this.state !== 'closed') {
      if (this.state === 'get') {
        // wireguard-go reads exactly one byte after `get=1\n`: anything but the blank line is EINVAL.
        if (buf[i++] === 0x0a) out.replies.push(uapiGet(this.host));
        else {
          this.log('error', 'UAPI: trailing character in get');
          out.replies.push(errnoReply(-Errno.EINVAL));
        }
        this.state = 'op';
        continue;
      }
      const nl = buf.indexOf(0x0a, i);
      const end = nl < 0 ? buf.length : nl;
      this.keep(buf.subarray(i, end), out);
      i = end;
      if (nl < 0) break;
      i++;
      const line = this.takeLine();
      if (line !== null) this.onLine(line, out);
    }
    if (this.state === 'closed') out.close = true;
    return out;
  }

  /** End of input from the peer: a set in progress is finished (wireguard-go answers it); the rest dropped. */
  end(): UapiOutput {
    const out: UapiOutput = { replies: [], close: true };
    if (this.state === 'set') {
      const line = this.takeLine(); // bufio.Scanner hands over a last line without its newline
      if (line) this.onLine(line, out);
      if (this.state === 'set') out.replies.push(this.finishSet());
    }
    this.state = 'closed';
    this.partial = [];
    this.partialLen = 0;
    return out;
  }

  private keep(piece: Buffer, out: UapiOutput): void {
    if (piece.length === 0 || this.overlong) return;
    if (this.partialLen + piece.length > MAX_LINE) {
      this.overlong = true;
      this.partial = [];
      this.partialLen = 0;
      if (this.state === 'set') {
        this.flush(); // the lines before it were good and stay applied
        this.session!.fail(-Errno.EIO, 'line too long');
      } else {
        this.log('error', 'UAPI: operation line too long');
        this.state = 'closed';
        out.close = true;
      }
      return;
    }
    this.partial.push(Buffer.from(piece)); // copied: the caller may reuse its chunk
    this.partialLen += piece.length;
  }

  /** The completed line, or null when it was too long and has been discarded. */
  private takeLine(): string | null {
    if (this.overlong) {
      this.overlong = false;
      return null;
    }
    const line = Buffer.concat(this.partial, this.partialLen).toString('latin1');
    this.partial = [];
    this.partialLen = 0;
    return line;
  }

  private onLine(line: string, out: UapiOutput): void {
    if (this.state === 'op') {
      if (line === 'set=1') {
        this.session = new UapiSetSession(this.host, this.log);
        this.state = 'set';
      } else if (line === 'get=1') {
        this.state = 'get';
      } else {
        this.log('error', `UAPI: invalid operation (${line.length} bytes)`);
        this.state = 'closed';
      }
      return;
    }
    // Inside a set, a trailing CR is dropped as bufio.ScanLines does, so "\r\n" also ends the operation.
    const l = line.endsWith('\r') ? line.slice(0, -1) : line;
    if (l !== '') return this.push(l);
    out.replies.push(this.finishSet());
    this.state = 'op';
  }

  private push(line: string): void {
    if (this.session!.errno) return; // already failed: the rest is read and ignored
    this.pending.push(line);
    this.pendingBytes += line.length + 1;
    if (this.pendingBytes > MAX_BUFFERED_SET) this.flush();
  }

  private flush(): void {
    const s = this.session!;
    for (const l of this.pending) s.line(l);
    this.pending = [];
    this.pendingBytes = 0;
  }

  private finishSet(): string {
    this.flush();
    const errno = this.session!.finish();
    this.session = null;
    return errnoReply(errno);
  }
}
