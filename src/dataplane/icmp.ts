// ICMP "host unreachable" for outgoing packets no peer routes (protocol.md "Receive-path rules", last rule;
// the kernel's icmp_ndo_send in its xmit path). The error is written back into the TUN as if sent by the
// unreachable destination, quoting the original header as RFC 792 / RFC 4443 require.

const ICMP_QUOTE_V4 = 8; // bytes of the original datagram after its header
const ICMPV6_MAX = 1280; // the whole error must fit the IPv6 minimum MTU

function checksum(buf: Uint8Array, off: number, len: number, initial = 0): number {
  let sum = initial;
  for (let i = 0; i + 1 < len; i += 2) sum += (buf[off + i] << 8) | buf[off + i + 1];
  if (len & 1) sum += buf[off + len - 1] << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** The ICMP error for the IP packet at pkt[off..off+len), or null when none is owed (e.g. for an ICMP error). */
export function hostUnreachable(pkt: Uint8Array, off: number, len: number): Uint8Array | null {
  const version = pkt[off] >> 4;
  if (version === 4) {
    const ihl = (pkt[off] & 0x0f) * 4;
    if (len < ihl || ihl < 20) return null;
    // Never answer an ICMP error with an error (RFC 1122 3.2.2).
    if (pkt[off + 9] === 1 && len > ihl && pkt[off + ihl] !== 8 && pkt[off + ihl] !== 0) return null;
    const quote = Math.min(len, ihl + ICMP_QUOTE_V4);
    const out = new Uint8Array(20 + 8 + quote);
    out[0] = 0x45;
    out[2] = out.length >> 8;
    out[3] = out.length & 0xff;
    out[8] = 64;
    out[9] = 1;
    out.set(pkt.subarray(off + 16, off + 20), 12); // from the unreachable destination
    out.set(pkt.subarray(off + 12, off + 16), 16); // to the original sender
    const h = checksum(out, 0, 20);
    out[10] = h >> 8;
    out[11] = h & 0xff;
    out[20] = 3; // destination unreachable
    out[21] = 1; // host unreachable
    out.set(pkt.subarray(off, off + quote), 28);
    const c = checksum(out, 20, out.length - 20);
    out[22] = c >> 8;
    out[23] = c & 0xff;
    return out;
  }
  if (version === 6) {
    if (len < 40) return null;
    if (pkt[off + 6] === 58 && len > 40 && pkt[off + 40] < 128) return null; // an ICMPv6 error
    const quote = Math.min(len, ICMPV6_MAX - 48);
    const out = new Uint8Array(40 + 8 + quote);
    out[0] = 0x60;
    const plen = 8 + quote;
    out[4] = plen >> 8;
    out[5] = plen & 0xff;
    out[6] = 58;
    out[7] = 64;
    out.set(pkt.subarray(off + 24, off + 40), 8);
    out.set(pkt.subarray(off + 8, off + 24), 24);
    out[40] = 1; // destination unreachable
    out[41] = 3; // address unreachable
    out.set(pkt.subarray(off, off + quote), 48);
    // Pseudo-header: source, destination, upper-layer length, next header.
    let pseudo = 0;
    for (let i = 8; i < 40; i += 2) pseudo += (out[i] << 8) | out[i + 1];
    pseudo += plen + 58;
    const c = checksum(out, 40, plen, pseudo);
    out[42] = c >> 8;
    out[43] = c & 0xff;
    return out;
  }
  return null;
}
