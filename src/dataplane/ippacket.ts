// The little the data path reads of an inner IP packet (RFC 791 / RFC 8200 headers): its real length, so
// transport padding can be cut off, and where the source and destination addresses are.

export const IPV4_HEADER = 20;
export const IPV6_HEADER = 40;

/** Length of the IPv4/IPv6 packet at buf[off..off+avail), or -1 when it is not a consistent IP packet. */
export function ipPacketLength(buf: Uint8Array, off: number, avail: number): number {
  if (avail < 1) return -1;
  const version = buf[off] >> 4;
  if (version === 4) {
    if (avail < IPV4_HEADER) return -1;
    const total = (buf[off + 2] << 8) | buf[off + 3];
    return total >= IPV4_HEADER && total <= avail ? total : -1;
  }
  if (version === 6) {
    if (avail < IPV6_HEADER) return -1;
    const total = IPV6_HEADER + ((buf[off + 4] << 8) | buf[off + 5]);
    return total <= avail ? total : -1;
  }
  return -1;
}

/** 4 or 16 for IPv4/IPv6 (by the version nibble), 0 otherwise. */
export const addressLength = (buf: Uint8Array, off: number): 0 | 4 | 16 => {
  const v = buf[off] >> 4;
  return v === 4 ? 4 : v === 6 ? 16 : 0;
};

export const sourceOffset = (buf: Uint8Array, off: number): number => off + (buf[off] >> 4 === 4 ? 12 : 8);
export const destinationOffset = (buf: Uint8Array, off: number): number => off + (buf[off] >> 4 === 4 ? 16 : 24);
