// Picks the cipher suite once per process: sodium-native unless it cannot load or WGTS_CRYPTO=noble.

import { createRequire } from 'node:module';
import type { CipherSuite } from './suite.js';
import { makeNobleSuite } from './noble.js';
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

export function defaultSuite(): CipherSuite {
  if (cached) return cached;
  const sodium = process.env.WGTS_CRYPTO === 'noble' ? null : loadSodium();
  cached = sodium ? makeSodiumSuite(sodium) : makeNobleSuite();
  return cached;
}
