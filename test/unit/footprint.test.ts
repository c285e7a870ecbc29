// The benchmark's memory-footprint probe (bench/footprint.ts): the referenced bits it clears and sums must
// follow what another process (as the bench's daemon is) touches, page by page.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { clearRefs, footprintPerEvent, referenced } from '../../bench/footprint.js';

const PAGE = 4096;

/** A child node process with 32 MiB already resident that touches one byte on each of N pages when told N. */
async function startToucher() {
  const src = `const big = new Uint8Array(32 << 20); big.fill(1);
    require('readline').createInterface({ input: process.stdin }).on('line', (l) => {
      for (let i = 0; i < Number(l); i++) big[i * ${PAGE}] ^= 1;
      process.stdout.write('ok\\n');
    });
    process.stdout.write('ready\\n');`;
  const child = spawn(process.execPath, ['-e', src], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  assert.equal((await lines.next()).value, 'ready');
  return {
    pid: child.pid!,
    /** Touches `pages` pages in the child and returns once it has. */
    async touch(pages: number): Promise<void> {
      child.stdin.write(`${pages}\n`);
      assert.equal((await lines.next()).value, 'ok');
    },
    stop: () => child.kill('SIGKILL'),
  };
}

const toucher = await startToucher();
after(() => toucher.stop());

test('referenced KiB follow the pages another process touched since clear_refs', async () => {
  // Several tries: on this VM a clear without the CPU visit missed the touches in most of them.
  for (let i = 0; i < 5; i++) {
    assert.ok(clearRefs(toucher.pid), 'clear_refs is writable for our own child');
    await toucher.touch(0);
    const quiet = referenced(toucher.pid);
    assert.ok(quiet, 'smaps is readable');
    assert.ok(clearRefs(toucher.pid));
    await toucher.touch(4096); // 16 MiB, one byte per page
    const busy = referenced(toucher.pid)!;
    assert.ok(busy.anon >= 4096 * 4, `try ${i}: touched 16384 KiB of anonymous memory, smaps says ${busy.anon}`);
    assert.ok(busy.total >= busy.anon);
    assert.ok(quiet.anon < busy.anon - 8192, `try ${i}: untouched ${quiet.anon} KiB against touched ${busy.anon} KiB`);
  }
});

test('a gone pid gives undefined and false, not a throw', () => {
  assert.equal(referenced(0x3fffffff), undefined);
  assert.equal(clearRefs(0x3fffffff), false);
});

test('footprintPerEvent is the median of what was touched between events', async () => {
  // Each interval touches 4 MiB; every third 32 MiB (an outlier, like a daemon timer firing in it).
  async function* events(n: number) {
    for (let i = 0; i < n; i++) {
      if (i > 0) await toucher.touch(i % 3 === 2 ? 8192 : 1024);
      yield i;
    }
  }
  const kib = await footprintPerEvent(toucher.pid, events(100), 9);
  assert.ok(kib !== null);
  assert.ok(kib >= 1024 * 4, `4 MiB touched per interval, median ${kib} KiB`);
  assert.ok(kib < 8192 * 4, `the 32 MiB outliers are not the median (${kib} KiB)`);
  let pulled = 0;
  async function* counted() {
    for (;;) {
      pulled++;
      yield pulled;
    }
  }
  await footprintPerEvent(toucher.pid, counted(), 5);
  assert.equal(pulled, 6, 'five intervals need six events, and no more are taken');
  assert.equal(await footprintPerEvent(toucher.pid, events(1), 3), null, 'one event makes no interval');
  assert.equal(await footprintPerEvent(0x3fffffff, events(5), 3), null, 'a gone pid gives no figure');
});
