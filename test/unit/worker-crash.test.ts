// A crashed crypto worker gives every slot of its batch back (issue 5 item 7), measured where a root test
// cannot see it: the real SendPath and ReceivePath over a real CryptPool whose workers all die on every
// pooled batch (WGTS_TEST_CRASH_WORKER=1*), with arenas of 128 slots pushed through several times over.
// A batch whose slots were not released would starve them within two rounds.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Device, type KeypairHooks } from '../../src/device.js';
import { FakeClock, seededRandom } from '../../src/clock.js';
import { Data } from '../../src/handshake/messages.js';
import type { Endpoint } from '../../src/peer.js';
import { ReceivePath } from '../../src/dataplane/receive.js';
import { BATCH, SendPath } from '../../src/dataplane/send.js';
import { META_LEN, SlotArena } from '../../src/queues/slots.js';
import { SpscQueue } from '../../src/queues/spsc.js';
import { CryptPool } from '../../src/workers/pool.js';
import { KeyTable } from '../../src/workers/keytable.js';
import { key, peerEachOther } from '../helpers/net.js';
import { ipv4 } from '../helpers/packets.js';

const SLOTS = 128;
const ROUNDS = 5; // 5 x 64 packets through 128 slots
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, ms: number): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(10)) if (cond()) return true;
  return cond();
}

/** Two Devices on a direct link with an established session; a mirrors its keys into a KeyTable, as the daemon does. */
function session() {
  const clock = new FakeClock();
  const keys = KeyTable.create(16);
  const eps: Endpoint[] = [{ addr: Uint8Array.of(198, 51, 100, 1), port: 1 }, { addr: Uint8Array.of(198, 51, 100, 2), port: 2 }];
  const queue: { to: number; data: Uint8Array }[] = [];
  const hooks: KeypairHooks = {
    installed: (kp) => void (kp.keySlot = keys.put(kp.sendKey, kp.receiveKey)),
    dropped: (kp) => keys.release(kp.keySlot),
  };
  const devs = [0, 1].map((n) => {
    const d = new Device({
      io: { send: (data, to) => queue.push({ to: to.port - 1, data: Uint8Array.from(data) }), deliver: () => {} },
      clock, random: seededRandom(70 + n), keypairHooks: n === 0 ? hooks : undefined,
    });
    d.setPrivateKey(key(30 + n));
    return d;
  });
  peerEachOther(devs, eps);
  const run = () => {
    while (queue.length) {
      const m = queue.shift()!;
      devs[m.to].receive(m.data, eps[1 - m.to]);
    }
  };
  devs[0].sendPacket(ipv4('203.0.113.1', '203.0.113.2'));
  run();
  devs[1].sendPacket(ipv4('203.0.113.2', '203.0.113.1'));
  run();
  assert.ok(devs[0].allPeers().next().value!.keypairs.current!.keySlot >= 0, 'a\'s keys are mirrored for the workers');
  return { a: devs[0], b: devs[1], keys, queue, from: eps[1] };
}

let pool: CryptPool;
const logged: string[] = [];
let s: ReturnType<typeof session>;
const outbound = SlotArena.create(SLOTS, 2048);
const inbound = SlotArena.create(SLOTS, 2048);

before(() => {
  s = session();
  process.env.WGTS_TEST_CRASH_WORKER = '1*'; // read when the pool is made: every pooled batch kills its worker
  try {
    pool = new CryptPool(outbound, inbound, s.keys, 1, 'pool', (_level, msg) => logged.push(msg));
  } finally {
    delete process.env.WGTS_TEST_CRASH_WORKER;
  }
});
after(async () => {
  await pool?.close();
});

test('send path: each crashed seal batch drops its packets and returns all its slots; Piscina replaces the worker', { timeout: 60_000 }, async () => {
  const ready = new SpscQueue(SLOTS);
  const free = new SpscQueue(SLOTS);
  for (let i = 0; i < SLOTS; i++) free.push(i);
  const sent: number[] = [];
  const out = { usable: () => true, queue: (_b: Uint8Array, _o: number, len: number) => void sent.push(len), flush: () => {} };
  const path = new SendPath(s.a, outbound, ready, free, pool, out, () => {}, (m) => logged.push(m));
  path.start();
  const pkt = ipv4('203.0.113.1', '203.0.113.2', new Uint8Array(100));
  const lostBefore = pool.stats.workersLost;
  try {
    for (let r = 0; r < ROUNDS; r++) {
      for (let i = 0; i < BATCH; i++) {
        const slot = free.pop();
        assert.ok(slot >= 0, `round ${r}: a free slot for packet ${i} (slots lost by earlier crashed batches?)`);
        outbound.slot(slot).bytes.set(pkt, Data.payload);
        outbound.set(slot, META_LEN, pkt.length);
        ready.push(slot);
      }
      ready.wake();
      assert.ok(await until(() => free.size === SLOTS && pool.stats.workersLost > lostBefore + r, 10_000),
        `round ${r}: all ${SLOTS} slots back (${free.size}) after worker ${pool.stats.workersLost - lostBefore} died`);
    }
    assert.equal(sent.length, 0, 'nothing of a crashed batch was sent');
    assert.ok((s.a.drops.get('internal') ?? 0) >= ROUNDS * BATCH, 'the lost packets are counted as drops');
    assert.ok(await until(() => logged.filter((l) => /Crypto worker \d+ exited unexpectedly; replaced/.test(l)).length >= ROUNDS, 5000), logged.join('\n'));
    assert.equal(pool.threads, 1, 'the pool is back to its one worker');

    // A lone packet is sealed on the control thread (no worker hop), which the crashes left intact.
    const slot = free.pop();
    outbound.slot(slot).bytes.set(pkt, Data.payload);
    outbound.set(slot, META_LEN, pkt.length);
    ready.push(slot);
    ready.wake();
    assert.ok(await until(() => sent.length === 1 && free.size === SLOTS, 5000), 'a packet still goes out');
  } finally {
    path.stop();
    ready.push(-1); // wakes the parked pump, which sees stop and never reads the value
    ready.wake();
  }
});

test('receive path: each crashed open batch drops its packets and frees all its slots; nothing is refused for want of one', { timeout: 60_000 }, async () => {
  let written = 0;
  const recv = new ReceivePath(s.a, inbound, pool, { write: () => void written++, flush: () => {} }, (m) => logged.push(m));
  const lostBefore = pool.stats.workersLost;
  const dataFromB = (): Uint8Array[] => {
    s.queue.length = 0;
    for (let i = 0; i < BATCH; i++) s.b.sendPacket(ipv4('203.0.113.2', '203.0.113.1', new Uint8Array(100)));
    return s.queue.splice(0).map((m) => m.data);
  };
  for (let r = 0; r < ROUNDS; r++) {
    const msgs = dataFromB();
    assert.equal(msgs.length, BATCH);
    for (const m of msgs) recv.onDatagram(m, 0, m.length, s.from); // the 64th dispatches the batch at once
    assert.ok(await until(() => pool.stats.workersLost > lostBefore + r, 10_000), `round ${r}: the worker died`);
    await sleep(20); // the rejection reaches the receive path after the exit is seen
  }
  assert.equal(s.a.drops.get('queue-full') ?? 0, 0, 'no datagram found the slots exhausted');
  assert.ok((s.a.drops.get('decrypt-failed') ?? 0) >= ROUNDS * BATCH, 'the lost packets are counted as drops');
  assert.equal(written, 0);

  // Three packets (an inline batch) still open and reach the TUN.
  const few = dataFromB().slice(0, 3);
  for (const m of few) recv.onDatagram(m, 0, m.length, s.from);
  recv.onBatchEnd(); // as a bind does after each burst: a partial batch opens then
  assert.ok(await until(() => written === 3, 5000), `packets still get through (${written})`);
});
