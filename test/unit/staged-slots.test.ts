// Packets staged for a handshake keep their own bytes (src/dataplane/send.ts): the real SendPath stages a
// packet that has no session yet and gives its slot back at once, and on the control thread that slot is the
// next one filled (SpscQueue.takeNewest). A staged packet kept as a view of its slot was overwritten by the
// next packet: an IPv6-underlay root test saw one ping's reply three times and the other two never.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Device } from '../../src/device.js';
import { FakeClock, seededRandom } from '../../src/clock.js';
import { Data } from '../../src/handshake/messages.js';
import type { Endpoint } from '../../src/peer.js';
import { SendPath } from '../../src/dataplane/send.js';
import { META_LEN, SlotArena } from '../../src/queues/slots.js';
import { SpscQueue } from '../../src/queues/spsc.js';
import { CryptPool } from '../../src/workers/pool.js';
import { KeyTable } from '../../src/workers/keytable.js';
import { key, peerEachOther } from '../helpers/net.js';
import { ipv4 } from '../helpers/packets.js';

test('staged packets survive their slot being reused at once, and each is delivered once with its own payload', async () => {
  const clock = new FakeClock();
  const eps: Endpoint[] = [{ addr: Uint8Array.of(198, 51, 100, 1), port: 1 }, { addr: Uint8Array.of(198, 51, 100, 2), port: 2 }];
  const wire: { to: number; data: Uint8Array }[] = [];
  const delivered: number[] = [];
  const devs = [0, 1].map((n) => {
    const d = new Device({
      io: {
        send: (data, to) => wire.push({ to: to.port - 1, data: Uint8Array.from(data) }),
        deliver: (pkt) => void delivered.push(pkt[pkt.length - 1]), // the payload's last byte: which packet
      },
      clock,
      random: seededRandom(90 + n),
    });
    d.setPrivateKey(key(50 + n));
    return d;
  });
  peerEachOther(devs, eps);
  const outbound = SlotArena.create(16, 2048);
  const inbound = SlotArena.create(16, 2048);
  const pool = new CryptPool(outbound, inbound, KeyTable.create(4), 1);
  const ready = new SpscQueue(16);
  const free = new SpscQueue(16);
  for (let i = 0; i < 16; i++) free.push(i);
  const out = { usable: () => true, queue: () => assert.fail('no session yet: nothing is sealed by the path'), flush: () => {} };
  const path = new SendPath(devs[0], outbound, ready, free, pool, out, () => {}, () => {});
  const used = new Set<number>();
  try {
    for (let i = 1; i <= 3; i++) {
      const slot = free.takeNewest(); // as the control thread's TUN reads take slots
      used.add(slot);
      const pkt = ipv4('203.0.113.1', '203.0.113.2', new Uint8Array(20).fill(i));
      outbound.slot(slot).bytes.set(pkt, Data.payload);
      outbound.set(slot, META_LEN, pkt.length);
      ready.push(slot);
      path.kick();
      assert.equal(free.size, 16, `packet ${i}: staged, and its slot is free again`);
    }
    assert.equal(used.size, 1, 'all three went through one slot');
    while (wire.length) {
      const m = wire.shift()!;
      devs[m.to].receive(m.data, eps[1 - m.to]);
    }
    assert.deepEqual(delivered, [1, 2, 3], 'each staged packet arrived once, with its own payload');
  } finally {
    path.stop();
    await pool.close();
  }
});
