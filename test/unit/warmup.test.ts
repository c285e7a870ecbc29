// The start-up warm-up (src/warmup.ts): a real handshake and a packet each way between two throwaway
// devices, with either cipher suite, spread over event-loop turns in the daemon, and ended by a stop.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { systemClock } from '../../src/clock.js';
import { defaultSuite, loadSodium } from '../../src/crypto/index.js';
import { makeNobleSuite } from '../../src/crypto/noble.js';
import { makeSodiumSuite } from '../../src/crypto/sodium.js';
import { warmUp, warmUpInBackground } from '../../src/warmup.js';

test('the warm-up completes a handshake and delivers a packet each way, with either suite', () => {
  const sodium = loadSodium();
  assert.ok(sodium, 'sodium-native loads here');
  for (const suite of [makeSodiumSuite(sodium), makeNobleSuite()]) {
    // initiation, response, a's staged packet, b's packet, a's keepalive (which delivers nothing)
    assert.deepEqual(warmUp(suite, systemClock), { datagrams: 5, delivered: 2 }, suite.name);
  }
});

test('in the background it takes one step per event-loop turn, so other work runs in between', async () => {
  let turns = 0;
  let done = false;
  const count = (): void => {
    turns++;
    if (!done) setImmediate(count);
  };
  setImmediate(count);
  const result = await warmUpInBackground(defaultSuite(), systemClock, () => false);
  done = true;
  assert.deepEqual(result, { datagrams: 5, delivered: 2 });
  assert.ok(turns >= 6, `other immediates ran ${turns} times while it ran`);
});

test('a stop ends it at the next step', async () => {
  let asked = 0;
  const result = await warmUpInBackground(defaultSuite(), systemClock, () => ++asked > 2);
  assert.equal(result, null);
  assert.equal(asked, 3, 'no step ran after the stop was seen');
});
