// A node script run as a child inside a test namespace (`ip netns exec NS node SCRIPT`), speaking JSON lines:
// the config is its first stdin line (so throwaway keys stay off command lines), every event one stdout line.
// Killed by its pid after a deadline, so a hung child never outlives the test.

import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

export type ChildEvent = { ev: string } & Record<string, unknown>;

export class JsonChild {
  readonly events: ChildEvent[] = [];
  stderr = '';
  readonly done: Promise<number | null>;
  private readonly proc: ChildProcess;
  private readonly timer: NodeJS.Timeout;
  private listeners: ((e: ChildEvent) => void)[] = [];

  constructor(ns: string, script: string, config: unknown, timeoutMs: number) {
    this.proc = spawn('ip', ['netns', 'exec', ns, process.execPath, script], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.proc.stdin!.on('error', () => {});
    this.proc.stdin!.end(`${JSON.stringify(config)}\n`);
    this.proc.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    createInterface({ input: this.proc.stdout! }).on('line', (line) => {
      let e: ChildEvent;
      try {
        e = JSON.parse(line) as ChildEvent;
      } catch {
        e = { ev: 'stdout', line };
      }
      this.events.push(e);
      for (const l of this.listeners) l(e);
    });
    this.timer = setTimeout(() => this.kill(), timeoutMs);
    this.done = new Promise((resolve) => this.proc.once('close', (code) => {
      clearTimeout(this.timer);
      resolve(code);
    }));
  }

  /** Resolves with the first event named ev (or rejects when the child exits or ms pass without it). */
  wait(ev: string, ms: number): Promise<ChildEvent> {
    const seen = this.events.find((e) => e.ev === ev);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => fail(`no '${ev}' event within ${ms} ms`), ms);
      const fail = (why: string): void => {
        clearTimeout(t);
        reject(new Error(`${why}; events: ${JSON.stringify(this.events.slice(-5))}; stderr: ${this.stderr.slice(-2000)}`));
      };
      this.listeners.push((e) => {
        if (e.ev === ev) {
          clearTimeout(t);
          resolve(e);
        } else if (e.ev === 'error') {
          fail(`child error ${JSON.stringify(e)}`);
        }
      });
      void this.done.then(() => fail('child exited'));
    });
  }

  kill(): void {
    if (this.proc.exitCode === null && this.proc.pid) {
      try {
        process.kill(this.proc.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
}
