// Records test/fixtures/wggo-handshake.json for the offline interop test (test/unit/wggo-fixture.test.ts):
// the real wireguard-go initiates (ping from its namespace), our Device answers with seeded randomness, and
// every datagram is kept. Root only: `npx tsc -p . && node dist/test/interop/capture-wggo.js`.

import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { NET, WGGO_KEYS, WGTS_KEYS, WgGoInterop, wireguardGoVersion, type ChildEvent } from './wggo-peer.js';

/** The seed of the child's RandomSource; the fixture test rebuilds the same Device from it. */
const FIXTURE_SEED = 0x5eed2022;

// From dist/test/interop/ back to the source tree, so the fixture lands where it is committed.
const FIXTURE = fileURLToPath(new URL('../../../test/fixtures/wggo-handshake.json', import.meta.url));

const type = (hex: string): number => parseInt(hex.slice(0, 2), 16);

async function capture(): Promise<void> {
  const net = await WgGoInterop.start({ seed: FIXTURE_SEED });
  try {
    const child = net.child!;
    const ping = await net.inA(['ping', '-c', '3', '-W', '2', NET.tunnelB], 20_000);
    if (ping.code !== 0) throw new Error(`ping from wireguard-go's side failed:\n${ping.stdout}${ping.stderr}\n${child.describe()}`);

    // After the last echo reply wireguard-go has received data and sent none, so KEEPALIVE_TIMEOUT (10 s)
    // later it sends a passive keepalive: wait for it so that the fixture holds one.
    const afterPing = child.events.length;
    await child.waitFor((e) => e.ev === 'recv' && (e.hex as string).length === 64 && type(e.hex as string) === 4, 15_000,
      'wireguard-go\'s passive keepalive', afterPing);

    const recv = child.of('recv').map((e) => e.hex as string);
    const sent = child.of('send').map((e) => e.hex as string);
    const initiations = recv.filter((h) => type(h) === 1);
    const responses = sent.filter((h) => type(h) === 2);
    const drops = child.of('drop');
    // The fixture is only reproducible if the seeded device consumed exactly one initiation and dropped nothing.
    if (initiations.length !== 1 || responses.length !== 1 || drops.length) {
      throw new Error(`unexpected exchange: ${initiations.length} initiations, ${responses.length} responses, drops ${JSON.stringify(drops)}\n${child.describe()}`);
    }
    const transport = recv.filter((h) => type(h) === 4).map((hex) => ({ kind: hex.length === 64 ? 'keepalive' : 'data', hex }));
    const echoes = child.of('echo-request');
    const fixture = {
      about: 'wireguard-go initiates, wgts (seeded) responds; datagrams as seen by wgts. Test-only keys. '
        + 'Regenerate as root: npx tsc -p . && node dist/test/interop/capture-wggo.js',
      wireguardGoVersion: wireguardGoVersion(),
      capturedAt: new Date().toISOString(),
      seed: FIXTURE_SEED,
      wgts: { privateKey: WGTS_KEYS.privateKey, publicKey: WGTS_KEYS.publicKey, tunnel: NET.tunnelB, endpoint: net.wgtsEndpoint },
      wggo: { privateKey: WGGO_KEYS.privateKey, publicKey: WGGO_KEYS.publicKey, tunnel: NET.tunnelA, endpoint: net.wggoEndpoint },
      initiation: initiations[0],
      response: responses[0],
      transport,
      // Our echo replies: deterministic too (seeded keys, counters, padding), so the test re-encrypts them.
      wgtsTransport: sent.filter((h) => type(h) === 4),
      echoRequestSeqs: echoes.map((e) => e.seq),
    };
    writeFileSync(FIXTURE, `${JSON.stringify(fixture, null, 2)}\n`);
    console.log(`wrote ${FIXTURE}: initiation, response, ${transport.length} transport datagrams `
      + `(${transport.map((t) => t.kind).join(', ')})`);
    console.log(timeline(child.events));
  } finally {
    await net.close();
    const left = net.leftovers();
    if (left.length) console.error(`LEFTOVERS: ${left.join(', ')}`);
  }
}

/** A readable log of the exchange, for the person regenerating the fixture. */
function timeline(events: ChildEvent[]): string {
  const names: Record<number, string> = { 1: 'initiation', 2: 'response', 3: 'cookie', 4: 'data' };
  return events
    .filter((e) => e.ev === 'recv' || e.ev === 'send')
    .map((e) => {
      const h = e.hex as string;
      return `  ${String(e.t).padStart(6)} ms  ${e.ev === 'recv' ? 'wggo -> wgts' : 'wgts -> wggo'}  ${names[type(h)] ?? '?'} ${h.length / 2} B`;
    })
    .join('\n');
}

capture().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exitCode = 1;
});
