// The little the data path reads of an inner IP packet (RFC 791 / RFC 8200 headers): its real length, so
// transport padding can be cut off, and where the source and destination addresses are.
// Everything is looked up by the version nibble in tables rather than branched on: the optimising compiler
// turns code that never ran into a deoptimisation, and after a TCP stream the first IPv6 packet (the kernel's
// own router solicitations on the TUN) used to throw the whole send path back to unoptimised code for the
// pings that followed. A table read is the same operation for both versions.

export const IPV4_HEADER = 20;
export const IPV6_HEADER = 40;

/** Per version nibble: the header length (0: not IPv4/IPv6), where the 16-bit length field is, what it adds. */
const HEADER = new Int32Array(16);
const LENGTH_AT = new Int32Array(16);
const LENGTH_BASE = new Int32Array(16);
/** Per version nibble: address length (0: not IPv4/IPv6), source and destination offsets. */
const ADDRESS = new Int32Array(16);
const SOURCE_AT = new Int32Array(16);
const DESTINATION_AT = new Int32Array(16);
HEADER[4] = IPV4_HEADER;
LENGTH_AT[4] = 2; // total length, header included
ADDRESS[4] = 4;
SOURCE_AT[4] = 12;
DESTINATION_AT[4] = 16;
HEADER[6] = IPV6_HEADER;
LENGTH_AT[6] = 4; // payload length, the fixed header not included
LENGTH_BASE[6] = IPV6_HEADER;
ADDRESS[6] = 16;
SOURCE_AT[6] = 8;
DESTINATION_AT[6] = 24;

/** Length of the IPv4/IPv6 packet at buf[off..off+avail), or -1 when it is not a consistent IP packet. */
export function ipPacketLength(buf: Uint8Array, off: number, avail: number): number {
  if (avail < 1) return -1;
  const v = buf[off] >> 4;
  const hl = HEADER[v];
  if (hl === 0 || avail < hl) return -1;
  const at = off + LENGTH_AT[v];
  const total = LENGTH_BASE[v] + ((buf[at] << 8) | buf[at + 1]);
  return total >= hl && total <= avail ? total : -1;
}

/** 4 or 16 for IPv4/IPv6 (by the version nibble), 0 otherwise. */
export const addressLength = (buf: Uint8Array, off: number): 0 | 4 | 16 => ADDRESS[buf[off] >> 4] as 0 | 4 | 16;

/** Where the source address starts (an IPv4 or IPv6 packet only). */
export const sourceOffset = (buf: Uint8Array, off: number): number => off + SOURCE_AT[buf[off] >> 4];
export const destinationOffset = (buf: Uint8Array, off: number): number => off + DESTINATION_AT[buf[off] >> 4];
