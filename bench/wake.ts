// Why the control thread reads the TUN and the sockets itself (src/tun/uvpoll.ts): what waking from idle costs
// on this machine. A writer thread writes one byte to a pipe every GAP ms; the time until the main thread
// handles it is measured (a) through a relay thread blocked in poll(2) that wakes the main thread with
// Atomics.notify -> Atomics.waitAsync (the WGTS_IO=threads layout), and (b) with libuv's uv_poll_t on the
// main thread's own loop (the default). Then (c) a few microseconds of packet-like JS (a sodium seal and some
// property reads) timed back to back and after GAP ms of idling: the cold-cache cost each hop pays again.
// Run: node dist/bench/wake.js [gapMs] [samples]

import { Worker, isMainThread, workerData } from 'node:worker_threads';
import { createRequire } from 'node:module';
import { FdWatcher } from '../src/tun/uvpoll.js';

const require = createRequire(import.meta.url);
type Fn = (...a: unknown[]) => number;
const koffi = require('koffi') as typeof import('koffi');
const libc = koffi.load('libc.so.6');
const poll = libc.func('int poll(void *, uint64_t, int)') as Fn;
const pipe2 = libc.func('int pipe2(_Out_ int *fds, int)') as Fn;
const write = libc.func('intptr_t write(int, void *, uint64_t)') as Fn;
const read = libc.func('intptr_t read(int, void *, uint64_t)') as Fn;
const now = (): number => Number(process.hrtime.bigint()) / 1000;
const O_NONBLOCK = 0o4000;

interface Shared {
  role: 'writer' | 'relay';
  sab: SharedArrayBuffer;
  viaRelay: number;
  direct: number;
  gap: number;
}

function median(xs: number[]): number {
  const v = [...xs].sort((a, b) => a - b);
  return v[v.length >> 1];
}

function makePipe(): [number, number] {
  const fds = [0, 0];
  if (pipe2(fds, O_NONBLOCK) !== 0) throw new Error('pipe2 failed');
  return [fds[0], fds[1]];
}

async function main(): Promise<void> {
  const gap = Number(process.argv[2] ?? 200);
  const n = Number(process.argv[3] ?? 40);
  const sab = new SharedArrayBuffer(64);
  const w = new Int32Array(sab); // [0] relay -> main, [1] main -> writer command
  const t = new Float64Array(sab, 16, 2); // [0] time of the writer's write
  const [relayRead, relayWrite] = makePipe();
  const [directRead, directWrite] = makePipe();
  const spawn = (role: Shared['role']): Worker =>
    new Worker(new URL(import.meta.url), { workerData: { role, sab, viaRelay: role === 'writer' ? relayWrite : relayRead, direct: directWrite, gap } satisfies Shared });
  const writer = spawn('writer');
  const relay = spawn('relay');
  await new Promise((r) => setTimeout(r, 300));
  const command = (c: number): void => {
    Atomics.store(w, 1, c);
    Atomics.notify(w, 1);
  };

  const viaRelay: number[] = [];
  for (let i = 0; i < n; i++) {
    Atomics.store(w, 0, 0);
    const r = Atomics.waitAsync(w, 0, 0);
    command(1);
    if (r.async) await r.value;
    viaRelay.push(now() - t[0]);
  }

  const one = new Uint8Array(64);
  let resolve: ((at: number) => void) | null = null;
  const watcher = new FdWatcher(directRead, () => {
    const at = now();
    read(directRead, one, 64);
    resolve?.(at);
  }, () => {});
  watcher.start();
  const direct: number[] = [];
  for (let i = 0; i < n; i++) {
    const p = new Promise<number>((r) => (resolve = r));
    command(2);
    direct.push((await p) - t[0]);
  }
  watcher.close();
  command(9);
  await Promise.all([writer, relay].map((x) => x.terminate()));

  const sodium = require('sodium-native') as typeof import('sodium-native');
  const key = Buffer.alloc(32, 1);
  const nonce = Buffer.alloc(12);
  const msg = Buffer.alloc(100);
  const out = Buffer.alloc(116);
  const objs = Array.from({ length: 5000 }, (_, i) => ({ a: i, b: String(i) }));
  const work = (): number => {
    let s = 0;
    for (let i = 0; i < objs.length; i += 7) s += objs[i].a;
    sodium.crypto_aead_chacha20poly1305_ietf_encrypt(out, msg, null, null, nonce, key);
    return s;
  };
  for (let i = 0; i < 20_000; i++) work();
  const hot: number[] = [];
  for (let i = 0; i < 200; i++) {
    const s = now();
    work();
    hot.push(now() - s);
  }
  const cold: number[] = [];
  for (let i = 0; i < n; i++) {
    await new Promise((r) => setTimeout(r, gap));
    const s = now();
    work();
    cold.push(now() - s);
  }
  console.log(`wake-up after ${gap} ms idle, medians of ${n} (us):`);
  console.log(`  relay thread in poll(2) -> Atomics.waitAsync on main: ${median(viaRelay).toFixed(1)}`);
  console.log(`  uv_poll on main's own loop:                          ${median(direct).toFixed(1)}`);
  console.log(`  the same JS work: back to back ${median(hot).toFixed(2)}, after ${gap} ms idle ${median(cold).toFixed(2)}`);
}

function worker(d: Shared): void {
  const w = new Int32Array(d.sab);
  const t = new Float64Array(d.sab, 16, 2);
  const one = new Uint8Array(64);
  if (d.role === 'writer') {
    const idle = new Int32Array(new SharedArrayBuffer(4));
    for (;;) {
      Atomics.wait(w, 1, 0);
      const c = Atomics.exchange(w, 1, 0);
      if (c === 9) return;
      Atomics.wait(idle, 0, 0, d.gap);
      t[0] = now();
      write(c === 1 ? d.viaRelay : d.direct, one, 1);
    }
  }
  const pfd = new Int32Array(2); // struct pollfd { int fd; short events; short revents; }
  for (;;) {
    pfd[0] = d.viaRelay;
    pfd[1] = 1; // POLLIN, revents 0
    poll(pfd, 1, 500);
    if (Atomics.load(w, 1) === 9) return;
    if (read(d.viaRelay, one, 64) > 0) {
      Atomics.store(w, 0, 1);
      Atomics.notify(w, 0);
    }
  }
}

if (isMainThread) await main();
else worker(workerData as Shared);
