// Protocol constants: every number in protocol.md "Limits and timers" and "Messages", in one place.
// Times are milliseconds (the injectable clock's unit); u64 limits are BigInt so they stay exact.

export const CONSTRUCTION = 'Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s';
export const IDENTIFIER = 'WireGuard v1 zx2c4 Jason@zx2c4.com';
export const LABEL_MAC1 = 'mac1----';
export const LABEL_COOKIE = 'cookie--';

export const MESSAGE_INITIATION = 1;
export const MESSAGE_RESPONSE = 2;
export const MESSAGE_COOKIE_REPLY = 3;
export const MESSAGE_DATA = 4;

export const INITIATION_SIZE = 148;
export const RESPONSE_SIZE = 92;
export const COOKIE_REPLY_SIZE = 64;
export const DATA_HEADER_SIZE = 16;
export const AEAD_TAG_SIZE = 16;
export const DATA_MIN_SIZE = DATA_HEADER_SIZE + AEAD_TAG_SIZE; // a keepalive
export const KEY_SIZE = 32;
export const MAC_SIZE = 16;
export const TAI64N_SIZE = 12;
export const COOKIE_NONCE_SIZE = 24;

export const REKEY_AFTER_MESSAGES = 1n << 60n;
export const REJECT_AFTER_MESSAGES = (1n << 64n) - 8130n; // kernel value (selftests.md RAM)
export const REKEY_AFTER_TIME = 120_000;
export const REJECT_AFTER_TIME = 180_000;
export const REKEY_ATTEMPT_TIME = 90_000;
export const REKEY_TIMEOUT = 5_000;
export const REKEY_TIMEOUT_JITTER_MAX = 334; // jitter is uniform in [0, 333] ms
export const KEEPALIVE_TIMEOUT = 10_000;
export const MAX_TIMER_HANDSHAKES = 18; // 90 s / REKEY_TIMEOUT
export const COOKIE_SECRET_MAX_AGE = 120_000;
export const COOKIE_SECRET_LATENCY = 5_000;
export const KEY_ERASE_AFTER = REJECT_AFTER_TIME * 3;
/** On receive, an initiator whose key is older than this initiates once more ("last minute"). */
export const REKEY_ON_RECEIVE_AGE = REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT;

export const COUNTER_BITS_TOTAL = 8192;
export const COUNTER_WINDOW_SIZE = COUNTER_BITS_TOTAL - 64; // 8128

export const INITIATIONS_PER_SECOND = 50;
export const MAX_QUEUED_INCOMING_HANDSHAKES = 4096;
export const UNDER_LOAD_QUEUE_LEN = MAX_QUEUED_INCOMING_HANDSHAKES / 8; // 512
export const UNDER_LOAD_AFTER_TIME = 1_000;
export const MAX_STAGED_PACKETS = 128;
export const MAX_QUEUED_PACKETS = 1024;
export const MESSAGE_PADDING_MULTIPLE = 16;
export const MAX_PEERS_PER_DEVICE = 1 << 20;
export const DEFAULT_MTU = 1420;

export const RATELIMIT_PACKETS_PER_SECOND = 20;
export const RATELIMIT_BURST = 5;
export const RATELIMIT_GC_INTERVAL = 1_000;
