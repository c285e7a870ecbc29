// Command line and process lifecycle (run by cli.ts), wireguard-go's contract (interfaces.md "The daemon's command line"):
// `wgts [-f|--foreground] IFNAME`, `wgts --version`, and `wgts --selftest` for the kernel's selftests.
// Without -f the process opens the TUN and the UAPI socket, re-spawns itself with them as fds 3 and 4
// (Node cannot fork) and exits 0, so callers like wg-quick find both ready the moment it returns.

import { spawn } from 'node:child_process';
import { setFlagsFromString } from 'node:v8';
import { closeSync, writeSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { VERSION } from './version.js';
import { Logger, parseLogLevel } from './log.js';
import { WgError } from './errors.js';
import { otherThreads, SCHED_BATCH, setPolicy } from './threads.js';

const USAGE = 'Usage: wgts [-f/--foreground] INTERFACE-NAME\n       wgts --version\n       wgts --selftest';

function fail(msg: string): number {
  process.stderr.write(`wgts: ${msg}\n`);
  return 1;
}

const parsePolicy = (s: string | undefined): 'adaptive' | 'pool' | 'inline' =>
  s === 'pool' || s === 'inline' ? s : 'adaptive';

/** TUN offload (TSO in, GRO out) unless WGTS_TUN_OFFLOAD=0. */
const tunOffload = (): boolean => process.env.WGTS_TUN_OFFLOAD !== '0';

const describe = (e: unknown): string => (e instanceof Error ? e.message : String(e));

/** Parent side: create the TUN and the UAPI socket, hand both to a detached child, return. */
async function daemonize(ifname: string): Promise<number> {
  setFlagsFromString('--lazy'); // this process never runs the protocol (cli.ts)
  const { openTun } = await import('./tun/tun.js');
  const { listenUapi } = await import('./uapi/server.js');
  let tun;
  try {
    tun = openTun(ifname, { offload: tunOffload() });
  } catch (e) {
    return fail(`Failed to create TUN device: ${describe(e)}`);
  }
  let server;
  try {
    // The parent never serves: it exits without closing, so the kernel keeps queueing connections for the child.
    server = await listenUapi(ifname, () => {});
  } catch (e) {
    tun.close();
    return fail(`Failed to listen on uapi socket: ${describe(e)}`);
  }
  const child = spawn(process.execPath, [...process.execArgv, fileURLToPath(new URL('./cli.js', import.meta.url)), ifname], {
    // fd 5 is a pipe on which the child says it has taken over: until then a signal would kill it before
    // its handlers exist and leave the socket behind, so the parent returns only after that line.
    stdio: ['ignore', 'inherit', 'inherit', tun.fd, server.fd, 'pipe'],
    env: { ...process.env, WG_TUN_FD: '3', WG_UAPI_FD: '4', WG_PROCESS_FOREGROUND: '1', WGTS_READY_FD: '5' },
    detached: true,
  });
  const ready = await new Promise<boolean>((resolve) => {
    const pipe = (child.stdio as unknown as NodeJS.ReadableStream[])[5];
    pipe.once('data', () => resolve(true));
    child.once('exit', () => resolve(false));
    setTimeout(() => resolve(false), 15_000).unref();
  });
  if (!ready) {
    child.kill('SIGKILL');
    await server.close(); // this one the parent may remove: nobody took it over
    tun.close();
    return fail('the daemon process did not start (see its output above)');
  }
  child.unref();
  // exit() at once: closing the server would unlink the socket the child now serves.
  process.exit(0);
}

/** Foreground: run the interface until a signal, `ip link del`, or the socket file being deleted. */
async function foreground(ifname: string): Promise<number> {
  const log = new Logger(ifname, parseLogLevel(process.env.LOG_LEVEL));
  // Before the daemon starts its own threads: every other thread now is node's (see threads.ts).
  const helpers = otherThreads();
  const batched = setPolicy(helpers, SCHED_BATCH);
  const { openTun, adoptTun } = await import('./tun/tun.js');
  const { Daemon } = await import('./daemon.js');
  setFlagsFromString('--lazy'); // every module of ours is in: anything loaded later compiles lazily again (cli.ts)
  const tunFd = process.env.WG_TUN_FD;
  const uapiFd = process.env.WG_UAPI_FD;
  let tun;
  try {
    tun = tunFd !== undefined ? adoptTun(Number(tunFd)) : openTun(ifname, { offload: tunOffload() });
  } catch (e) {
    return fail(`Failed to create TUN device: ${describe(e)}`);
  }
  const scale = Number(process.env.WGTS_TIMER_SCALE ?? '1');
  // Handlers first: a signal during start-up must still end in a clean stop.
  let stopRequested: string | undefined;
  let daemon: Awaited<ReturnType<typeof Daemon.start>> | undefined;
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      stopRequested = `received ${sig}`;
      void daemon?.stop(stopRequested);
    });
  }
  try {
    daemon = await Daemon.start({
      tun,
      log,
      uapiFd: uapiFd !== undefined ? Number(uapiFd) : undefined,
      timerScale: Number.isFinite(scale) && scale > 0 ? scale : 1,
      udpOffload: process.env.WGTS_UDP_OFFLOAD !== '0',
      io: process.env.WGTS_IO === 'threads' ? 'threads' : 'loop',
      cryptoThreads: process.env.WGTS_CRYPTO_THREADS ? Number(process.env.WGTS_CRYPTO_THREADS) : undefined,
      cryptoPolicy: parsePolicy(process.env.WGTS_CRYPTO_POLICY),
    });
  } catch (e) {
    tun.close();
    const msg = e instanceof WgError && e.code === 'uapi-in-use' ? `Failed to listen on uapi socket: ${e.message}` : `Failed to start: ${describe(e)}`;
    return fail(msg);
  }
  log.verbose(`Device started (${batched} of ${helpers.length} node helper threads SCHED_BATCH)`);
  const running = daemon;
  const exited = new Promise<number>((resolve) => running.onExit(() => resolve(0)));
  if (stopRequested) void running.stop(stopRequested);
  const readyFd = process.env.WGTS_READY_FD;
  if (readyFd !== undefined) {
    try {
      writeSync(Number(readyFd), 'ready\n');
      closeSync(Number(readyFd));
    } catch {
      // The parent is gone; nobody is waiting for the line.
    }
  }
  return exited;
}

async function main(argv: string[]): Promise<number> {
  if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-v')) {
    process.stdout.write(`wgts v${VERSION}\n\nUserspace WireGuard daemon for Linux, in TypeScript on Node.js ${process.version}.\n`);
    return 0;
  }
  if (argv.length === 1 && argv[0] === '--selftest') {
    // Loaded here only: the daemon and its launching parent never run them.
    const { runSelftests } = await import('./selftest/index.js');
    return runSelftests((l) => process.stdout.write(l + '\n')) ? 0 : 1;
  }
  if (argv.length === 1 && (argv[0] === '--help' || argv[0] === '-h')) {
    process.stdout.write(USAGE + '\n');
    return 0;
  }
  const fg = argv[0] === '-f' || argv[0] === '--foreground';
  const rest = fg ? argv.slice(1) : argv;
  if (rest.length !== 1 || rest[0].startsWith('-')) {
    process.stderr.write(USAGE + '\n');
    return 1;
  }
  if (process.getuid?.() !== 0) return fail('must be run as root (it creates a TUN device and /var/run/wireguard sockets)');
  if (fg || process.env.WG_PROCESS_FOREGROUND === '1') return foreground(rest[0]);
  return daemonize(rest[0]);
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`wgts: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
    process.exit(1);
  },
);
