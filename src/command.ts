// Command line and process lifecycle (run by cli.ts), wireguard-go's contract (interfaces.md "The daemon's command line"):
// `wgts [-f|--foreground] IFNAME`, `wgts --version`, and `wgts --selftest` for the kernel's selftests.
// Daemon mode (no -f) is bin/wgts's: it runs this in the foreground in a session of its own and returns once
// the line on WGTS_READY_FD says the TUN exists and the UAPI socket listens (Node cannot fork, and a parent
// node that re-spawned itself cost a second node start-up). WG_TUN_FD / WG_UAPI_FD are adopted if given.

import { setFlagsFromString } from 'node:v8';
import { closeSync, openSync, writeSync } from 'node:fs';
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

/** A whole number of 0 or more, else undefined (the default applies): WGTS_WARM_ROUND_TRIPS. */
const parseCount = (s: string | undefined): number | undefined => (s !== undefined && /^\d+$/.test(s) ? Number(s) : undefined);

/** TUN offload (TSO in, GRO out) unless WGTS_TUN_OFFLOAD=0. */
const tunOffload = (): boolean => process.env.WGTS_TUN_OFFLOAD !== '0';

const describe = (e: unknown): string => (e instanceof Error ? e.message : String(e));

/**
 * Daemon mode without LOG_LEVEL (or with silent), as wireguard-go: once started, the daemon lets go of its
 * caller's stdout and stderr, which go to /dev/null from here on. A caller that reads them to the end (a
 * `$(wgts wg0)`, a supervisor's pipe) would otherwise wait as long as the daemon runs. Setup errors came
 * before this, so they are still seen.
 */
async function detachStdio(log: Logger): Promise<void> {
  const { dup2 } = await import('./tun/libc.js');
  const nul = openSync('/dev/null', 'r+');
  try {
    for (const fd of [1, 2]) {
      const r = dup2(nul, fd);
      if (r < 0) log.error(`cannot point fd ${fd} at /dev/null: errno ${-r}`);
    }
  } finally {
    closeSync(nul);
  }
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
      warmRoundTrips: parseCount(process.env.WGTS_WARM_ROUND_TRIPS),
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
  if (process.env.WGTS_QUIET_STDIO === '1') await detachStdio(log);
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
  // bin/wgts daemonizes; this file alone would have to re-spawn node to do it.
  return fail('daemon mode is started by bin/wgts; run this file with -f for the foreground');
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`wgts: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
    process.exit(1);
  },
);
