// Picks the cipher suite once per process: sodium-native unless it cannot load or WGTS_CRYPTO=noble.

import { createRequire } from 'node:module';
import type { CipherSuite } from './suite.js';
import { makeSodiumSuite } from './sodium.js';

export type { CipherSuite } from './suite.js';
export { clamp, equal, isZero } from './suite.js';

let cached: CipherSuite | undefined;

/** Loads sodium-native, or returns null when the addon is unavailable on this machine. */
export function loadSodium(): typeof import('sodium-native') | null {
  try {
    return createRequire(import.meta.url)('sodium-native');
  } catch {
    return null;
  }
}

// Decided as this module loads, so that the pure-JS suite and @noble/ciphers (~10 ms and ~1 MiB for every
// daemon and worker thread) load only where they are the suite in use.
const sodium = process.env.WGTS_CRYPTO === 'noble' ? null : loadSodium();
const noble = sodium ? null : await import('./noble.js');

export function defaultSuite(): CipherSuite {
  cached ??= sodium ? makeSodiumSuite(sodium) : noble!.makeNobleSuite();
  return cached;
}
