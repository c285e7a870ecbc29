// Logging as wireguard-go does it (interfaces.md): LOG_LEVEL verbose/debug, error (default) or silent; lines on
// stdout as `DEBUG: (wg0) 2025/05/22 01:45:02 message`. Callers pass peer names (peer(AbCd…WxYz)), never keys.

export type LogLevel = 'silent' | 'error' | 'verbose';

export function parseLogLevel(s: string | undefined): LogLevel {
  switch ((s ?? '').toLowerCase()) {
    case 'verbose':
    case 'debug':
      return 'verbose';
    case 'silent':
      return 'silent';
    default:
      return 'error';
  }
}

const pad = (n: number) => String(n).padStart(2, '0');

function stamp(d = new Date()): string {
  return `${d.getFullYear()}/${pad(d.getMonth() + 1)}/${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export class Logger {
  constructor(
    readonly ifname: string,
    readonly level: LogLevel,
    private readonly write: (line: string) => void = (l) => process.stdout.write(l),
  ) {}

  verbose = (msg: string): void => {
    if (this.level === 'verbose') this.write(`DEBUG: (${this.ifname}) ${stamp()} ${msg}\n`);
  };

  error = (msg: string): void => {
    if (this.level !== 'silent') this.write(`ERROR: (${this.ifname}) ${stamp()} ${msg}\n`);
  };

  /** The (level, msg) shape Device and the UAPI take. */
  at = (level: 'error' | 'verbose', msg: string): void => (level === 'error' ? this.error(msg) : this.verbose(msg));
}
