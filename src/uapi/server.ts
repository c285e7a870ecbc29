// The UAPI unix socket server (interfaces.md "The UAPI socket"): /var/run/wireguard/IFNAME.sock, folder 0755,
// socket 0700, a stale socket file replaced and a live one refused ("unix socket in use"), adoption of an
// inherited listening fd (WG_UAPI_FD), and a watcher for the socket file being deleted (the daemon then exits,
// as wireguard-go does). serveUapi() connects each accepted stream to a UapiConnection.

import { promises as fsp, watch, lstatSync, type FSWatcher } from 'node:fs';
import net from 'node:net';
import { basename, dirname, join } from 'node:path';
import { Errno, WgError } from '../errors.js';
import { UapiConnection, type UapiHost, type UapiLog, type UapiOutput } from './uapi.js';

export const UAPI_DIR = '/var/run/wireguard';
// Far above any real burst: `wg` deletes the socket file when connect() is refused, so a full queue must not
// happen. The kernel caps this at net.core.somaxconn.
const BACKLOG = 4096;
const SUN_PATH_MAX = 107; // sockaddr_un.sun_path is 108 bytes including the terminating NUL

export interface UapiServerOptions {
  /** Socket folder, default /var/run/wireguard (tests only: `wg` always looks there). */
  dir?: string;
  /** Adopt this already-listening socket (WG_UAPI_FD) instead of binding the path. */
  fd?: number;
  /** How often the deletion watcher re-checks the socket file when inotify cannot watch its folder, in ms (default 1000). */
  pollMs?: number;
  /** Watch the folder with inotify (default true; tests turn it off to exercise the poll). */
  inotify?: boolean;
}

export type UapiConnectionHandler = (socket: net.Socket) => void;

export function uapiSocketPath(ifname: string, dir = UAPI_DIR): string {
  return join(dir, `${ifname}.sock`);
}

/** Resolves true when something accepts connections at `path`. */
function probe(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(path);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', (e: NodeJS.ErrnoException) => {
      c.destroy();
      // A live daemon whose accept queue is full refuses with EAGAIN: its socket must not be deleted.
      resolve(e.code === 'EAGAIN');
    });
  });
}

function listenOn(server: net.Server, what: net.ListenOptions): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (e: Error): void => reject(e);
    server.once('error', onError);
    let oldMask: number | undefined;
    try {
      // The bind happens synchronously inside listen(), so the socket is born 0700 (no window where others
      // could connect); process.umask() is unavailable in worker threads, where the chmod below still holds.
      oldMask = process.umask(0o077);
    } catch {
      oldMask = undefined;
    }
    try {
      server.listen(what, () => {
        server.off('error', onError);
        resolve();
      });
    } finally {
      if (oldMask !== undefined) process.umask(oldMask);
    }
  });
}

export class UapiServer {
  private readonly deletedCbs: (() => void)[] = [];
  private watcher: FSWatcher | undefined;
  private poll: NodeJS.Timeout | undefined;
  private identity: { ino: bigint; dev: bigint } | undefined;
  private deleted = false;
  private closed = false;

  /** @internal use listenUapi() */
  constructor(
    readonly path: string,
    private readonly server: net.Server,
    private readonly sockets: Set<net.Socket>,
  ) {}

  /**
   * The listening socket's fd, for handing to a re-spawned daemon (spawn stdio). The process that hands it
   * over then exits without close(), which would remove the socket file the new process serves.
   */
  get fd(): number {
    const h = (this.server as unknown as { _handle?: { fd?: number } | null })._handle;
    return typeof h?.fd === 'number' ? h.fd : -1;
  }

  /** Calls cb once when the socket file disappears or is replaced by another file. */
  onDeleted(cb: () => void): void {
    if (this.deleted) process.nextTick(cb);
    else this.deletedCbs.push(cb);
  }

  /** Stops listening, drops open connections and removes the socket file (if it is still ours). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.stopWatch();
    // Unlinked while our fd still holds the inode, so a socket another daemon puts there later is never hit.
    if (this.isOurs()) await fsp.unlink(this.path).catch(() => {});
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** @internal */
  startWatch(pollMs: number, inotify = true): void {
    this.identity = this.stat();
    const check = (): void => {
      if (this.deleted || this.closed || this.isOurs()) return;
      this.deleted = true;
      this.stopWatch();
      for (const cb of this.deletedCbs.splice(0)) cb();
    };
    const startPoll = (): void => {
      if (this.poll || this.closed || this.deleted) return;
      this.poll = setInterval(check, pollMs);
      this.poll.unref();
    };
    // inotify on the folder reports an unlink or a replacement at once, and an idle daemon never wakes for
    // it (wireguard-go watches the same way). The poll is for folders inotify cannot watch.
    try {
      if (inotify) {
        // Any event: the folder itself may have been moved or deleted, which names no file in it.
        this.watcher = watch(dirname(this.path), { persistent: false }, () => check());
        this.watcher.on('error', () => {
          this.watcher?.close();
          this.watcher = undefined;
          startPoll();
          check();
        });
      }
    } catch {
      this.watcher = undefined;
    }
    if (!this.watcher) startPoll();
    check();
  }

  private stopWatch(): void {
    this.watcher?.close();
    this.watcher = undefined;
    if (this.poll) clearInterval(this.poll);
    this.poll = undefined;
  }

  private stat(): { ino: bigint; dev: bigint } | undefined {
    try {
      const st = lstatSync(this.path, { bigint: true });
      return st.isSocket() ? { ino: st.ino, dev: st.dev } : undefined;
    } catch {
      return undefined;
    }
  }

  private isOurs(): boolean {
    const now = this.stat();
    return !!now && !!this.identity && now.ino === this.identity.ino && now.dev === this.identity.dev;
  }
}

/** The private name bound first (not *.sock, so `wg` never lists it). */
const bindPath = (path: string): string => join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);

const ignoreMissing = (e: NodeJS.ErrnoException): void => {
  if (e.code !== 'ENOENT') throw e;
};

/**
 * Binds a private name in the folder and then links it to `path`. libuv unlinks the name it bound when the
 * server closes, by name and unconditionally; binding `path` itself would let our close() delete a socket
 * that another daemon has since put there (which would make that daemon exit). link() fails when `path`
 * exists, which keeps the check for a live socket atomic; a stale one is replaced by rename() in one step.
 */
async function bindInPlace(server: net.Server, path: string): Promise<void> {
  const tmp = bindPath(path);
  await fsp.unlink(tmp).catch(ignoreMissing);
  await listenOn(server, { path: tmp, backlog: BACKLOG });
  try {
    await fsp.chmod(tmp, 0o700);
    try {
      await fsp.link(tmp, path);
      await fsp.unlink(tmp);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      if (await probe(path)) throw new WgError('uapi-in-use', 'unix socket in use', Errno.EADDRINUSE);
      await fsp.rename(tmp, path);
    }
  } catch (e) {
    server.close(); // unlinks tmp
    throw e;
  }
}

/**
 * Listens on IFNAME's UAPI socket (or adopts opts.fd) and hands every accepted stream to `handler`. Throws
 * WgError 'uapi-in-use' ("unix socket in use", EADDRINUSE) when another process serves the name.
 */
export async function listenUapi(ifname: string, handler: UapiConnectionHandler, opts: UapiServerOptions = {}): Promise<UapiServer> {
  const dir = opts.dir ?? UAPI_DIR;
  const path = uapiSocketPath(ifname, dir);
  if (ifname === '' || ifname.includes('/') || ifname.includes('\0') || Buffer.byteLength(bindPath(path)) > SUN_PATH_MAX) {
    throw new WgError('bad-ifname', `invalid interface name for a UAPI socket: ${JSON.stringify(ifname)}`, Errno.EINVAL);
  }
  // allowHalfOpen: a client may shut down its sending side after a set and still read the errno.
  const server = net.createServer({ allowHalfOpen: true }, handler);
  // Tracked from the start so close() can drop every client, even one that connected while we set up.
  const sockets = new Set<net.Socket>();
  server.on('connection', (s) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  if (opts.fd !== undefined) {
    await listenOn(server, { fd: opts.fd, backlog: BACKLOG } as net.ListenOptions);
  } else {
    const created = await fsp.mkdir(dir, { recursive: true, mode: 0o755 });
    if (created !== undefined) await fsp.chmod(dir, 0o755); // umask may have narrowed it; `wg` must read it
    await bindInPlace(server, path);
    await fsp.chmod(path, 0o700);
  }
  const uapi = new UapiServer(path, server, sockets);
  uapi.startWatch(opts.pollMs ?? 1000, opts.inotify ?? true);
  return uapi;
}

/** The connection handler for a device: the UAPI protocol on each stream, replies written in order. */
export function serveUapi(host: UapiHost, log: UapiLog = () => {}): UapiConnectionHandler {
  return (socket) => {
    const conn = new UapiConnection(host, log);
    const emit = (out: UapiOutput): void => {
      for (const r of out.replies) {
        // A client that sends gets without reading must not grow our buffer forever: stop reading until
        // it catches up.
        if (!socket.write(r) && !socket.isPaused()) {
          socket.pause();
          socket.once('drain', () => socket.resume());
        }
      }
      if (out.close) socket.end(() => socket.destroy());
    };
    socket.on('data', (chunk: Buffer) => {
      if (conn.closed) return;
      try {
        emit(conn.feed(chunk));
      } catch (e) {
        log('error', `UAPI: internal error: ${e instanceof Error ? e.stack ?? e.message : String(e)}`);
        socket.destroy();
      }
    });
    socket.on('end', () => {
      if (conn.closed) return;
      try {
        emit(conn.end());
      } catch {
        socket.destroy();
      }
    });
    socket.on('error', () => socket.destroy());
  };
}
