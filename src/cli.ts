// The executable's entry: bin/wgts runs this file (in daemon mode in a session of its own). It turns
// V8's lazy compilation off while wgts's own modules load, then runs the command line (command.ts), which
// turns it back on once the daemon's modules are in. V8 otherwise compiles each function when first called,
// and a fresh daemon's first handshake and packets compiled a few hundred of ours on their way: ~20 ms of a
// first ping's ~48 here (wireguard-go: ~2). Node's own modules, loaded at its start, and the packages, loaded
// later, stay lazy: --no-lazy for the whole process cost 8 MiB more RSS, ours alone ~1. Only compilation
// changes, so a V8 that ignored the flag would merely be slower to its first packet.

import { setFlagsFromString } from 'node:v8';

setFlagsFromString('--no-lazy');
await import('./command.js');
