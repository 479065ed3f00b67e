// The swap's speed as the host sees it: I/O stall per page swapped in.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { addSwapWait, defaultSwapSpeed, psiSomeTotalUs, SwapSpeedSource, swapInWaitMs } from '../../../src/host/swap-speed.js';
import { hostSources } from '../../../src/host/index.js';

const opts = defaultSwapSpeed;

test("psiSomeTotalUs reads the some line's total, not the full line's", () => {
  assert.equal(psiSomeTotalUs('some avg10=1.00 avg60=2.00 avg300=0.50 total=555254390\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=9\n'), 555254390);
  assert.equal(psiSomeTotalUs('full avg10=0.00 avg60=0.00 avg300=0.00 total=9\n'), null);
  assert.equal(psiSomeTotalUs(''), null);
});

test('only intervals with enough swap-ins count, and the figure waits for enough pages', () => {
  let acc = { pages: 0, waitUs: 0 };
  // A guest's disk I/O with 3 swap-ins: not the swap's cost.
  acc = addSwapWait(acc, { pswpin: 100, ioSomeUs: 0 }, { pswpin: 103, ioSomeUs: 4_000_000 }, opts);
  assert.deepEqual(acc, { pages: 0, waitUs: 0 });
  // A counter that went backwards (a fixture, a restarted container) adds nothing.
  assert.deepEqual(addSwapWait(acc, { pswpin: 0, ioSomeUs: 9_000_000 }, { pswpin: 900, ioSomeUs: 0 }, opts), acc);
  acc = addSwapWait(acc, { pswpin: 103, ioSomeUs: 4_000_000 }, { pswpin: 603, ioSomeUs: 7_200_000 }, opts);
  assert.deepEqual(acc, { pages: 500, waitUs: 3_200_000 });
  assert.equal(swapInWaitMs(acc, opts), null, '500 pages: not enough to judge');
  acc = addSwapWait(acc, { pswpin: 603, ioSomeUs: 7_200_000 }, { pswpin: 1603, ioSomeUs: 13_600_000 }, opts);
  // 9.6 s of stall over 1500 pages: 6.4 ms each, a hard disk.
  assert.equal(swapInWaitMs(acc, opts), 6.4);
  assert.equal(swapInWaitMs({ pages: 28_182, waitUs: 3_600_000 }, opts), 0.1277);
});

test('swap_speed source: null without PSI, then the cumulative figure from the live files', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'ballast-swap-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(join(root, 'proc/pressure'), { recursive: true });
  writeFileSync(join(root, 'proc/vmstat'), 'nr_free_pages 1\npswpin 1000\npswpout 5\n');
  const src = new SwapSpeedSource(root);
  assert.deepEqual(await src.collect(), { swap_in_io_wait_ms: null }, 'no /proc/pressure/io');
  const io = (us: number) =>
    writeFileSync(join(root, 'proc/pressure/io'), `some avg10=0.00 avg60=0.00 avg300=0.00 total=${us}\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=1\n`);
  io(1_000_000);
  assert.deepEqual(await src.collect(), { swap_in_io_wait_ms: null }, 'first reading: no interval yet');
  writeFileSync(join(root, 'proc/vmstat'), 'nr_free_pages 1\npswpin 3000\npswpout 5\n');
  io(1_260_000);
  assert.deepEqual(await src.collect(), { swap_in_io_wait_ms: 0.13 }, 'an SSD: 260 ms over 2000 pages');
  writeFileSync(join(root, 'proc/vmstat'), 'nr_free_pages 1\npswpout 5\n');
  await assert.rejects(src.collect(), /vmstat: no pswpin line/);
  assert.ok(
    hostSources({ root }).some((s) => s instanceof SwapSpeedSource),
    'a real host reads it',
  );
});
