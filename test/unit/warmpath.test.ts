// The data-path warm-up (src/warmpath.ts): two detached daemons of this process, over socketpair TUN
// stand-ins and loopback UDP sockets, ping each other through the real data path, then stop and leave no fd,
// key or thread behind. A failure at any step ends it early with nothing left open.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { Daemon } from '../../src/daemon.js';
import { Logger } from '../../src/log.js';
import type { Device } from '../../src/device.js';
import type { TunDevice } from '../../src/tun/tun.js';
import { warmDataPath, type PathWarmUpOptions } from '../../src/warmpath.js';

const openFds = (): number => readdirSync('/proc/self/fd').length;
const threads = (): number => readdirSync('/proc/self/task').length;

/** Detached daemons as the real one makes them, remembered so the test can look at them after. */
function opener(devices: Device[], failAt = -1): PathWarmUpOptions['open'] {
  return (tun: TunDevice, mtu: number) => {
    if (devices.length === failAt) throw new Error('refused');
    const d = Daemon.detached({ tun, mtu, log: new Logger('warm-test', 'silent') });
    devices.push(d.device);
    return d;
  };
}

for (const vnetHdr of [true, false]) {
  test(`${vnetHdr ? 'with' : 'without'} a virtio_net_hdr: the round trips asked for, then no fd, key, peer or thread left`, async () => {
    const fds = openFds();
    const before = threads();
    const devices: Device[] = [];
    const made = await warmDataPath({ open: opener(devices), vnetHdr, uso: vnetHdr, roundTrips: 60, cancelled: () => false });
    assert.equal(made, 60);
    assert.equal(devices.length, 2);
    for (const dev of devices) {
      assert.equal(dev.privateKey, null, 'the private key is dropped');
      assert.equal([...dev.allPeers()].length, 0, 'the peers are removed');
    }
    assert.equal(threads(), before, 'no reader thread or crypto worker was started');
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(openFds(), fds, 'the socketpairs and UDP sockets are closed');
  });
}

test('a stop ends it at the next round trip', async () => {
  let asked = 0;
  const made = await warmDataPath({ open: opener([]), vnetHdr: true, uso: true, roundTrips: 1000, cancelled: () => ++asked > 5 });
  assert.equal(made, 5);
});

test('a daemon that cannot be made ends it with null, and the one already made is stopped', async () => {
  const fds = openFds();
  const devices: Device[] = [];
  const made = await warmDataPath({ open: opener(devices, 1), vnetHdr: true, uso: true, roundTrips: 10, cancelled: () => false });
  assert.equal(made, null);
  assert.equal(devices.length, 1);
  assert.equal(devices[0].privateKey, null);
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(openFds(), fds);
});
