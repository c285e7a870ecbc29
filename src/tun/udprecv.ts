// The UDP receive thread, used when the control thread does not read the sockets itself (WGTS_IO=threads):
// poll(2) on the IPv4 and IPv6 sockets, then RxDrainer (udpdrain.ts) fills ring buffers and the control thread
// gets buffer numbers through an SPSC queue, one wake-up per burst. When every buffer is in use it waits, and
// the socket's own receive buffer absorbs (then drops) the excess, as a full ptr_ring does. It ends when the
// control thread sets CTL_STOP and shuts the sockets down.

import { parentPort, workerData } from 'node:worker_threads';
import { CMemory, POLLFD_SIZE } from './msghdr.js';
import { CTL_ERRNO, CTL_STOP, RxRing, type RxRingShape } from './udpring.js';
import { E } from './libc.js'; // constants only
import { POLLIN, poll } from './sys.js';
import { NO_BUFFERS, RxDrainer } from './udpdrain.js';

export interface UdpReceiverData {
  /** The IPv4 socket and the IPv6 one (-1 when there is none). */
  fds: number[];
  ring: RxRingShape;
}

export type UdpReceiverMessage = { kind: 'error'; errno: number };

const CALLS_PER_TURN = 4;
const POLL_ERR_MASK = 0x8 | 0x10 | 0x20; // POLLERR, POLLHUP, POLLNVAL

function run(data: UdpReceiverData): void {
  const ring = RxRing.attach(data.ring);
  const fds = data.fds.filter((fd) => fd >= 0);
  const drainer = new RxDrainer(ring);
  const m = new CMemory(fds.length * POLLFD_SIZE);
  for (let j = 0; j < fds.length; j++) {
    m.i32[(j * POLLFD_SIZE) >> 2] = fds[j];
    m.u16[(j * POLLFD_SIZE + 4) >> 1] = POLLIN;
  }
  const stopped = (): boolean => Atomics.load(ring.ctl, CTL_STOP) !== 0;
  const fail = (errno: number): void => {
    Atomics.store(ring.ctl, CTL_ERRNO, errno);
    parentPort?.postMessage({ kind: 'error', errno } satisfies UdpReceiverMessage);
  };

  while (!stopped()) {
    const r = poll(m.u8, fds.length, -1);
    if (stopped()) return;
    if (r < 0) {
      if (r === -E.EINTR) continue;
      return fail(-r);
    }
    for (let j = 0; j < fds.length; j++) {
      const revents = m.u16[(j * POLLFD_SIZE + 6) >> 1];
      if (revents === 0) continue;
      if (revents & POLL_ERR_MASK && !(revents & POLLIN)) {
        if (stopped()) return;
        if (revents & 0x20) return fail(E.EBADF); // POLLNVAL: the fd was closed under us (EBADF)
      }
      let res = drainer.drain(fds[j], CALLS_PER_TURN);
      ring.ready.wake();
      while (res === NO_BUFFERS) {
        ring.free.waitSync(50); // every buffer is with the control thread
        if (stopped()) return;
        res = drainer.drain(fds[j], CALLS_PER_TURN);
        ring.ready.wake();
      }
      if (res < 0) return stopped() ? undefined : fail(-res);
    }
  }
}

run(workerData as UdpReceiverData);
