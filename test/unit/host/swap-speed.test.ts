// The swap's speed as the host sees it: I/O stall per page swapped in.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  addSwapWait,
  defaultSwapSpeed,
  majorMinor,
  parseSwaps,
  rotationalOf,
  SwapSpeedSource,
  swapInWaitMs,
  swapRotational,
} from '../../../src/host/swap-speed.js';
import { hostSources } from '../../../src/host/index.js';
import { parsePsiTotals } from '../../../src/psi.js';

const opts = defaultSwapSpeed;

test("the source reads the I/O file's some total, not the full line's (parsePsiTotals)", () => {
  assert.equal(parsePsiTotals('some avg10=1.00 avg60=2.00 avg300=0.50 total=555254390\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=9\n').some, 555254390);
  assert.equal(parsePsiTotals('full avg10=0.00 avg60=0.00 avg300=0.00 total=9\n').some, null);
  assert.equal(parsePsiTotals('').some, null);
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
  assert.deepEqual(await src.collect(), { swap_rotational: null, swap_in_io_wait_ms: null }, 'no /proc/pressure/io, no /proc/swaps');
  const io = (us: number) =>
    writeFileSync(join(root, 'proc/pressure/io'), `some avg10=0.00 avg60=0.00 avg300=0.00 total=${us}\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=1\n`);
  io(1_000_000);
  assert.deepEqual(await src.collect(), { swap_rotational: null, swap_in_io_wait_ms: null }, 'first reading: no interval yet');
  writeFileSync(join(root, 'proc/vmstat'), 'nr_free_pages 1\npswpin 3000\npswpout 5\n');
  io(1_260_000);
  assert.deepEqual(await src.collect(), { swap_rotational: null, swap_in_io_wait_ms: 0.13 }, 'an SSD: 260 ms over 2000 pages');
  // swapon of another device: what the old one cost says nothing of it.
  writeFileSync(join(root, 'proc/swaps'), 'Filename Type Size Used Priority\n/nowhere partition 1000 0 5\n');
  writeFileSync(join(root, 'proc/vmstat'), 'nr_free_pages 1\npswpin 3100\npswpout 5\n');
  io(1_300_000);
  assert.deepEqual(await src.collect(), { swap_rotational: null, swap_in_io_wait_ms: null }, 'measured again from the next swap-ins');
  writeFileSync(join(root, 'proc/vmstat'), 'nr_free_pages 1\npswpout 5\n');
  await assert.rejects(src.collect(), /vmstat: no pswpin line/);
  assert.ok(
    hostSources({ root }).some((s) => s instanceof SwapSpeedSource),
    'a real host reads it',
  );
});

test('parseSwaps: areas with their priority; escaped names undone; the header and garbage skipped', () => {
  const text = [
    'Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority',
    '/dev/sda2                               partition\t8388604\t\t1024\t\t-2',
    '/var/swap\\040file                       file\t\t1048572\t\t0\t\t10',
    'half a line',
    '',
  ].join('\n');
  assert.deepEqual(parseSwaps(text), [
    { path: '/dev/sda2', type: 'partition', sizeKiB: 8388604, usedKiB: 1024, priority: -2 },
    { path: '/var/swap file', type: 'file', sizeKiB: 1048572, usedKiB: 0, priority: 10 },
  ]);
  assert.deepEqual(parseSwaps(''), []);
});

test('swapRotational: the areas of the highest priority decide; unknown stays unknown', () => {
  const areas = [
    { path: '/dev/zram0', type: 'partition', priority: 100 },
    { path: '/dev/sda2', type: 'partition', priority: -2 },
  ];
  const flags: Record<string, 0 | 1 | null> = { '/dev/zram0': 0, '/dev/sda2': 1 };
  assert.equal(
    swapRotational(areas, (a) => flags[a.path]!),
    0,
    'zram first: the disk is only the overflow',
  );
  assert.equal(
    swapRotational([{ ...areas[0]!, priority: -2 }, areas[1]!], (a) => flags[a.path]!),
    1,
    'equal priorities share pages: one slow device is slow',
  );
  assert.equal(
    swapRotational([areas[1]!], () => null),
    null,
  );
  assert.equal(
    swapRotational([], () => 0),
    null,
    'no swap',
  );
});

test("rotationalOf: a disk's flag, and a partition's from its disk (sysfs fixture)", (t) => {
  const root = mkdtempSync(join(tmpdir(), 'ballast-rot-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const disk = join(root, 'sys/devices/pci0000:00/ata1/block/sda');
  mkdirSync(join(disk, 'queue'), { recursive: true });
  mkdirSync(join(disk, 'sda2'));
  writeFileSync(join(disk, 'queue/rotational'), '1\n');
  const nvme = join(root, 'sys/devices/pci0000:00/nvme/block/nvme0n1');
  mkdirSync(join(nvme, 'queue'), { recursive: true });
  writeFileSync(join(nvme, 'queue/rotational'), '0\n');
  mkdirSync(join(root, 'sys/dev/block'), { recursive: true });
  symlinkSync(join(disk, 'sda2'), join(root, 'sys/dev/block/8:2'));
  symlinkSync(nvme, join(root, 'sys/dev/block/259:0'));
  assert.equal(rotationalOf(root, '8:2'), 1, 'a partition: its disk spins');
  assert.equal(rotationalOf(root, '259:0'), 0);
  assert.equal(rotationalOf(root, '0:45'), null, "btrfs's anonymous device: no block device to ask");

  // The source: the flag of the area the kernel uses first, found again only when the areas change.
  mkdirSync(join(root, 'proc'), { recursive: true });
  const swaps = (lines: string[]) => writeFileSync(join(root, 'proc/swaps'), ['Filename Type Size Used Priority', ...lines, ''].join('\n'));
  const asked: string[] = [];
  const dev: Record<string, string> = { '/dev/sda2': '8:2', '/dev/nvme0n1p3': '259:0' };
  const src = new SwapSpeedSource(root, defaultSwapSpeed, (_root, a) => {
    asked.push(a.path);
    const d = dev[a.path];
    if (!d) throw new Error('ENOENT');
    return d;
  });
  return (async () => {
    swaps(['/dev/sda2 partition 8388604 0 -2']);
    assert.equal((await src.collect()).swap_rotational, 1);
    swaps(['/dev/sda2 partition 8388604 4096 -2']);
    assert.equal((await src.collect()).swap_rotational, 1);
    assert.deepEqual(asked, ['/dev/sda2'], 'Used changing does not send it back to sysfs');
    swaps(['/dev/sda2 partition 8388604 4096 -2', '/dev/nvme0n1p3 partition 1000 0 5']);
    assert.equal((await src.collect()).swap_rotational, 0, 'a faster swap added above the disk');
    swaps(['/gone partition 1000 0 5']);
    assert.equal((await src.collect()).swap_rotational, null, 'an area that cannot be resolved is unknown, not an error');
  })();
});

test('majorMinor decodes stat device numbers as glibc packs them (minors above 255 included)', () => {
  assert.equal(majorMinor(0x700n), '7:0', 'loop0');
  assert.equal(majorMinor(0x802n), '8:2', 'sda2');
  assert.equal(majorMinor(0x11032cn), '259:300', 'an NVMe partition with a minor above 255');
});
