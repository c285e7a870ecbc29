// Command line, wireguard-go's contract (interfaces.md "The daemon's command line"):
// `wgts [-f|--foreground] IFNAME`, `wgts --version`, plus `wgts --selftest` for the kernel's selftests.

import { runSelftests } from './selftest/index.js';
import { VERSION } from './version.js';

const USAGE = 'Usage: wgts [-f/--foreground] INTERFACE-NAME\n       wgts --version\n       wgts --selftest';

function main(argv: string[]): number {
  if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-v')) {
    process.stdout.write(`wgts v${VERSION}\n\nUserspace WireGuard daemon for Linux, in TypeScript on Node.js ${process.version}.\n`);
    return 0;
  }
  if (argv.length === 1 && argv[0] === '--selftest') {
    return runSelftests((l) => process.stdout.write(l + '\n')) ? 0 : 1;
  }
  if (argv.length === 1 && (argv[0] === '--help' || argv[0] === '-h')) {
    process.stdout.write(USAGE + '\n');
    return 0;
  }
  const foreground = argv[0] === '-f' || argv[0] === '--foreground';
  const rest = foreground ? argv.slice(1) : argv;
  if (rest.length !== 1 || rest[0].startsWith('-')) {
    process.stderr.write(USAGE + '\n');
    return 1;
  }
  process.stderr.write(`wgts: the endpoint (TUN, UDP, UAPI) is not built yet; only --version and --selftest work\n`);
  return 1;
}

process.exitCode = main(process.argv.slice(2));
