// Stable reason codes for rejected input and errors with an errno. The packet path never throws: a consume
// function returns a result or one of these codes, and callers count or log the code.

export type Reason =
  | 'short' // shorter than the message type allows
  | 'bad-length' // wrong fixed length for the type
  | 'bad-type' // unknown type byte or non-zero reserved bytes
  | 'bad-mac1'
  | 'bad-mac2'
  | 'need-cookie' // under load and no valid mac2: answer with a cookie reply instead
  | 'ratelimited'
  | 'no-private-key'
  | 'unknown-peer' // decrypted static key is not a configured peer
  | 'unknown-index' // receiver index not in the table
  | 'wrong-state' // e.g. a response to no outstanding initiation
  | 'decrypt-failed' // AEAD tag mismatch
  | 'stale-timestamp' // TAI64N not newer than the last accepted
  | 'flood' // initiations from this peer faster than INITIATIONS_PER_SECOND
  | 'low-order' // DH result all zero
  | 'replay' // counter outside the window or seen before
  | 'expired' // keypair older than REJECT_AFTER_TIME or past REJECT_AFTER_MESSAGES
  | 'no-keypair'
  | 'allowed-ips' // inner source address not in the peer's allowed IPs
  | 'bad-packet' // inner packet not IPv4/IPv6 or inconsistent length
  | 'no-route' // outgoing packet's destination is in no peer's allowed IPs
  | 'no-endpoint' // the peer has no known endpoint to send to
  | 'queue-full' // a bounded queue (slots, serial queue, handshake queue) had no room
  | 'routing-loop' // the route to the endpoint goes through our own interface
  | 'internal'; // a bug caught at the packet-path boundary (logged, never thrown out)

export type Result<T> = { ok: true; value: T } | { ok: false; reason: Reason };

export const ok = <T>(value: T): Result<T> => ({ ok: true, value });
export const fail = <T = never>(reason: Reason): Result<T> => ({ ok: false, reason });

/** Linux errno values used by the CLI and the UAPI (the UAPI reports them negated). */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  EIO: 5,
  EBADF: 9,
  ENOMEM: 12,
  EACCES: 13,
  EEXIST: 17,
  ENODEV: 19,
  EINVAL: 22,
  EPROTO: 71,
  EMSGSIZE: 90,
  EADDRINUSE: 98,
  EADDRNOTAVAIL: 99,
} as const;

export class WgError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly errno: number = Errno.EINVAL,
  ) {
    super(message);
    this.name = 'WgError';
  }
}
