// Readiness of a raw fd on the control thread's own event loop: libuv's uv_poll_t, reached through koffi in
// the node binary itself (libuv's API is exported for addons). This is what lets the control thread read the
// TUN and the UDP sockets itself when the tunnel is lightly loaded: on this VM every thread that must wake from
// idle costs ~100 us here (bench/wake.ts), so a ping that crossed a reader thread and then the control
// thread paid that twice per hop; waking the control thread straight from epoll pays it once, as
// wireguard-go's goroutines do. The callback runs in libuv's poll phase, outside any JS frame: it must never
// throw, and it may not rely on promise reactions (microtasks) running before the next event-loop phase.

import { createRequire } from 'node:module';
import type * as KoffiNs from 'koffi';

type Koffi = typeof KoffiNs;
type Fn = (...args: unknown[]) => number;

const UV_POLL = 8; // uv_handle_type UV_POLL
const UV_READABLE = 1;

interface Uv {
  koffi: Koffi;
  loop: unknown;
  handleSize: number;
  init: Fn;
  start: Fn;
  stop: Fn;
  close: Fn;
  proto: KoffiNs.TypeObject;
}

let uv: Uv | null = null;

function load(): Uv {
  if (uv) return uv;
  const koffi = createRequire(import.meta.url)('koffi') as Koffi;
  const self = koffi.load(null as unknown as string); // the running node binary, where libuv lives
  // uintptr_t, not void *: koffi hands a callback's pointer arguments to JS as BigInts, one allocation a call.
  const proto = koffi.proto('void wgts_uv_poll_cb(uintptr_t handle, int status, int events)');
  uv = {
    koffi,
    loop: (self.func('void *uv_default_loop()') as () => unknown)(),
    handleSize: Number((self.func('size_t uv_handle_size(int)') as Fn)(UV_POLL)),
    init: self.func('int uv_poll_init(void *, void *, int)') as Fn,
    start: self.func('int uv_poll_start(void *, int, wgts_uv_poll_cb *)') as Fn,
    stop: self.func('int uv_poll_stop(void *)') as Fn,
    close: self.func('void uv_close(void *, void *)') as Fn,
    proto,
  };
  return uv;
}

/** Handles being closed: libuv owns their memory until the loop has processed the close. */
const closing = new Set<Uint8Array>();

/**
 * Calls `onReadable` from the main thread's event loop while `fd` is readable (level-triggered: data left
 * unread calls it again on the next turn). `onError(status)` gets libuv's negative status (UV_EBADF when the
 * fd reported POLLERR, as a deleted TUN does); the watcher has stopped by then.
 */
export class FdWatcher {
  private readonly uv = load();
  private readonly handle: Uint8Array;
  private readonly cb: bigint;
  private active = false;
  private closed = false;

  constructor(
    readonly fd: number,
    onReadable: () => void,
    onError: (status: number) => void,
  ) {
    this.handle = new Uint8Array(this.uv.handleSize);
    const r = this.uv.init(this.uv.loop, this.handle, fd);
    if (r < 0) throw new Error(`uv_poll_init(${fd}) failed: ${r}`);
    this.cb = this.uv.koffi.register((_h: number, status: number) => {
      try {
        if (status < 0) {
          this.active = false;
          onError(status);
        } else onReadable();
      } catch {
        // The callers catch their own errors; nothing may unwind into libuv.
      }
    }, this.uv.koffi.pointer(this.uv.proto));
  }

  get running(): boolean {
    return this.active;
  }

  start(): void {
    if (this.active || this.closed) return;
    this.active = this.uv.start(this.handle, UV_READABLE, this.cb) === 0;
  }

  stop(): void {
    if (!this.active) return;
    this.active = false;
    this.uv.stop(this.handle);
  }

  /** Stops watching for good. Call before the fd is closed. */
  close(): void {
    if (this.closed) return;
    this.stop();
    this.closed = true;
    const h = this.handle;
    closing.add(h);
    this.uv.close(h, null);
    // uv_close completes in the loop's next closing phase; the registered callback is never called again.
    setTimeout(() => {
      closing.delete(h);
      this.uv.koffi.unregister(this.cb);
    }, 100).unref();
  }
}
