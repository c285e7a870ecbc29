// IP address and prefix text <-> bytes, shared by the UAPI (interfaces.md "allowed_ip", "endpoint"), the
// allowed-IPs table and endpoints. Parsing follows inet_pton (strict, no zone ids); formatting follows glibc's
// inet_ntop, because `wg` prints allowed IPs and endpoints with it and our `get` output must read the same.

import { WgError, Errno } from './errors.js';

const HEX4 = /^[0-9a-fA-F]{1,4}$/;
// inet_pton takes no leading zeros in IPv4 octets: "010" would be octal to some parsers, so it is refused.
const OCTET = /^(?:0|[1-9][0-9]{0,2})$/;

/** Writes the dotted quad `s` into out[at..at+4); false if it is not exactly four octets 0..255. */
function parseV4Into(s: string, out: Uint8Array, at: number): boolean {
  const parts = s.split('.');
  if (parts.length !== 4) return false;
  for (let i = 0; i < 4; i++) {
    const p = parts[i];
    if (!OCTET.test(p)) return false;
    const v = Number(p);
    if (v > 255) return false;
    out[at + i] = v;
  }
  return true;
}

/** Parses the groups of one side of "::"; an IPv4 tail is only allowed where `v4Ok` (the last piece). */
function parseGroups(s: string, v4Ok: boolean): number[] | null {
  if (s === '') return [];
  const parts = s.split(':');
  const words: number[] = [];
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i];
    if (v4Ok && i === parts.length - 1 && p.includes('.')) {
      const b = new Uint8Array(4);
      if (!parseV4Into(p, b, 0)) return null;
      words.push((b[0] << 8) | b[1], (b[2] << 8) | b[3]);
    } else {
      if (!HEX4.test(p)) return null; // also catches empty groups from a stray ':'
      words.push(parseInt(p, 16));
    }
  }
  return words;
}

function parseV6(s: string): Uint8Array | null {
  const dc = s.indexOf('::');
  let words: number[];
  if (dc < 0) {
    const all = parseGroups(s, true);
    if (all === null || all.length !== 8) return null;
    words = all;
  } else {
    if (s.indexOf('::', dc + 1) >= 0) return null; // also rejects ":::"
    const head = parseGroups(s.slice(0, dc), false);
    const tail = parseGroups(s.slice(dc + 2), true);
    // "::" stands for at least one zero group (RFC 4291), so seven explicit groups is the most it allows.
    if (head === null || tail === null || head.length + tail.length > 7) return null;
    words = [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  }
  const out = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    out[2 * i] = words[i] >>> 8;
    out[2 * i + 1] = words[i] & 0xff;
  }
  return out;
}

/** IPv4 dotted quad -> 4 bytes, IPv6 text -> 16 bytes, anything else (incl. zone ids, spaces) -> null. */
/** ::ffff:a.b.c.d, the IPv6 spelling of an IPv4 address (RFC 4291 §2.5.5.2). */
export function isV4Mapped(a: Uint8Array): boolean {
  if (a.length !== 16 || a[10] !== 0xff || a[11] !== 0xff) return false;
  for (let i = 0; i < 10; i++) if (a[i] !== 0) return false;
  return true;
}

export function parseIP(s: string): Uint8Array | null {
  if (s.length === 0 || s.length > 45) return null; // 45 = longest IPv6 text with an IPv4 tail
  if (s.includes(':')) return parseV6(s);
  const out = new Uint8Array(4);
  return parseV4Into(s, out, 0) ? out : null;
}

function formatV4(b: Uint8Array, at: number): string {
  return `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`;
}

/**
 * 4 bytes -> dotted quad; 16 bytes -> RFC 5952 text as glibc's inet_ntop writes it: lowercase, no leading
 * zeros, the longest run of two or more zero groups (the first on ties) becomes "::". Like glibc, ::ffff:0:0/96
 * and addresses with exactly six leading zero groups keep an IPv4 tail (::ffff:1.2.3.4, ::1.2.3.4).
 */
export function formatIP(b: Uint8Array): string {
  if (b.length === 4) return formatV4(b, 0);
  if (b.length !== 16) throw new WgError('bad-address', `address must be 4 or 16 bytes, got ${b.length}`, Errno.EINVAL);
  const w: number[] = [];
  for (let i = 0; i < 8; i++) w.push((b[2 * i] << 8) | b[2 * i + 1]);
  let bestAt = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (w[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && w[j] === 0) j++;
    if (j - i > bestLen) {
      bestAt = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (bestLen < 2) bestAt = -1;
  if (bestAt === 0 && (bestLen === 6 || (bestLen === 5 && w[5] === 0xffff))) {
    return (bestLen === 5 ? '::ffff:' : '::') + formatV4(b, 12);
  }
  let out = '';
  for (let i = 0; i < 8; i++) {
    if (i === bestAt) {
      out += '::';
      i += bestLen - 1;
      continue;
    }
    if (out !== '' && !out.endsWith(':')) out += ':';
    out += w[i].toString(16);
  }
  return out;
}

/** "IP/cidr" or a bare IP (cidr = full length); cidr is decimal and checked against the family's length. */
export function parsePrefix(s: string): { addr: Uint8Array; cidr: number } | null {
  const slash = s.indexOf('/');
  const addr = parseIP(slash < 0 ? s : s.slice(0, slash));
  if (addr === null) return null;
  const max = addr.length * 8;
  if (slash < 0) return { addr, cidr: max };
  const c = s.slice(slash + 1);
  if (!/^[0-9]{1,3}$/.test(c)) return null;
  const cidr = Number(c);
  if (cidr > max) return null;
  return { addr, cidr };
}

/** A copy of `addr` with every bit after the first `cidr` cleared; throws WgError (EINVAL) on a bad cidr. */
export function maskPrefix(addr: Uint8Array, cidr: number): Uint8Array {
  if (addr.length !== 4 && addr.length !== 16) {
    throw new WgError('bad-address', `address must be 4 or 16 bytes, got ${addr.length}`, Errno.EINVAL);
  }
  if (!Number.isInteger(cidr) || cidr < 0 || cidr > addr.length * 8) {
    throw new WgError('bad-cidr', `cidr ${cidr} out of range for a ${addr.length * 8}-bit address`, Errno.EINVAL);
  }
  const out = new Uint8Array(addr.length);
  const full = cidr >>> 3;
  out.set(addr.subarray(0, full));
  if (cidr & 7) out[full] = addr[full] & (0xff << (8 - (cidr & 7)));
  return out;
}

/** "IP/cidr" exactly as given: callers that need the masked form mask first (the table already stores it so). */
export function formatPrefix(addr: Uint8Array, cidr: number): string {
  return `${formatIP(addr)}/${cidr}`;
}
