// Builders for inner IP packets used by tests: minimal but valid IPv4/IPv6 headers with a payload.

export function ipv4(src: string, dst: string, payload: Uint8Array = new Uint8Array(8), proto = 17): Uint8Array {
  const p = new Uint8Array(20 + payload.length);
  p[0] = 0x45;
  p[2] = p.length >> 8;
  p[3] = p.length & 0xff;
  p[8] = 64;
  p[9] = proto;
  p.set(src.split('.').map(Number), 12);
  p.set(dst.split('.').map(Number), 16);
  let sum = 0;
  for (let i = 0; i < 20; i += 2) sum += (p[i] << 8) | p[i + 1];
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >> 16);
  const c = ~sum & 0xffff;
  p[10] = c >> 8;
  p[11] = c & 0xff;
  p.set(payload, 20);
  return p;
}

/** IPv6 packet; addresses given as 16 bytes. */
export function ipv6(src: Uint8Array, dst: Uint8Array, payload: Uint8Array = new Uint8Array(8), next = 17): Uint8Array {
  const p = new Uint8Array(40 + payload.length);
  p[0] = 0x60;
  p[4] = payload.length >> 8;
  p[5] = payload.length & 0xff;
  p[6] = next;
  p[7] = 64;
  p.set(src, 8);
  p.set(dst, 24);
  p.set(payload, 40);
  return p;
}

export const v4 = (s: string): Uint8Array => Uint8Array.from(s.split('.').map(Number));
