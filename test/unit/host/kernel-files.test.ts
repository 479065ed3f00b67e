// Kernel files kept open (src/host/files.ts KernelFiles): each read gives the file's current
// content, a kept descriptor whose file went away is reopened (and then fails as a first open
// would), and at most `max` stay open. On regular files, then on the real kernel's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KernelFiles, readText } from '../../../src/host/files.js';
import { findMemoryCgroup } from '../../../src/host/cgroup.js';

test('kept open: every read is the current content, whatever its size; at most max kept; a missing file fails and is not kept', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ballast-kf-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const files = new KernelFiles(2);
  t.after(() => files.closeAll());
  const a = join(dir, 'a');
  writeFileSync(a, 'run 1\n');
  assert.equal(files.read(a), 'run 1\n');
  writeFileSync(a, 'run 0 and a longer line\n'); // rewritten in place, as a sysfs read regenerates
  assert.equal(files.read(a), 'run 0 and a longer line\n');
  writeFileSync(a, 'x');
  assert.equal(files.read(a), 'x', 'shorter content: nothing of the old one is left');
  const big = 'y'.repeat(100_000) + '\n';
  writeFileSync(join(dir, 'big'), big);
  assert.equal(files.read(join(dir, 'big')), big, 'bigger than the buffer: read whole');
  assert.equal(files.read(a), 'x', 'the grown buffer still reads small files right');
  writeFileSync(join(dir, 'c'), 'c');
  files.read(join(dir, 'c'));
  assert.equal(files.open, 2, 'the least recently read was closed');
  assert.throws(() => files.read(join(dir, 'missing')), { code: 'ENOENT' });
  assert.equal(files.open, 2);
});

test('real kernel: /proc and sysfs read the same through kept descriptors; a removed cgroup fails as ENOENT, not stale', async (t) => {
  const files = new KernelFiles();
  t.after(() => files.closeAll());
  const m1 = files.read('/proc/meminfo');
  const m2 = files.read('/proc/meminfo');
  assert.match(m1, /^MemTotal:\s+\d+ kB\n/);
  assert.equal(m2.split('\n').length, m1.split('\n').length, 'read again from the start, not from where the last read ended');
  assert.equal(await readText('/', '/proc/meminfo').then((x) => x.split('\n')[0]), m1.split('\n')[0], 'readText goes through the kept files');
  const self = await findMemoryCgroup('/', 'self');
  const dir = self ? join(self.mountPoint, `ballast-kf-test-${process.pid}`) : null;
  try {
    if (!dir) throw new Error('no memory cgroup');
    mkdirSync(dir);
  } catch (err) {
    t.skip(`cannot make a memory cgroup here (${(err as Error).message}): the removed-file case needs root and cgroupfs`);
    return;
  }
  let removed = false;
  t.after(() => {
    if (!removed) rmdirSync(dir);
  });
  const file = self!.version === 2 ? 'memory.current' : 'memory.usage_in_bytes';
  const path = join(dir, file);
  assert.match(files.read(path), /^\d+\n$/);
  assert.match(files.read(path), /^\d+\n$/, 'read twice through the kept descriptor');
  rmdirSync(dir);
  removed = true;
  assert.throws(() => files.read(path), { code: 'ENOENT' }, 'the kept descriptor of a removed cgroup is not read as if it were there');
  assert.equal(files.open, 1, 'only /proc/meminfo stays open');
});

test('a missing file is not looked for again until missingRetryMs has passed', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ballast-kf-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  let now = 1_000_000;
  const files = new KernelFiles(8, 30_000, () => now);
  t.after(() => files.closeAll());
  const p = join(dir, 'arcstats');
  assert.equal(files.readIfExists(p), null);
  assert.equal(files.readIfExists(join(dir, 'nodir', 'x')), null, 'ENOTDIR/ENOENT below a missing folder: null too');
  writeFileSync(p, 'size 4 1\n');
  now += 29_000;
  assert.equal(files.readIfExists(p), null, 'still taken as missing for 30 s');
  now += 1_000;
  assert.equal(files.readIfExists(p), 'size 4 1\n', 'looked for again after 30 s');
  assert.equal(files.open, 1);
  assert.throws(() => files.read(join(dir, 'other')), { code: 'ENOENT' }, 'read() still throws for a missing file');
});

test('real kernel: files larger than one page of seq_file output read whole; small ones take one read', (t) => {
  const files = new KernelFiles();
  t.after(() => files.closeAll());
  // /proc/zoneinfo is a seq_file of one record per zone, pages long: its first read stops at
  // the kernel's page-sized buffer, and the rest must follow (as /proc/vmstat's, near a page).
  for (const path of ['/proc/zoneinfo', '/proc/vmstat', '/proc/stat', '/proc/meminfo', '/sys/kernel/mm/transparent_hugepage/enabled']) {
    let want: string;
    try {
      want = readFileSync(path, 'utf8');
    } catch {
      continue; // not on this kernel
    }
    const got = files.read(path);
    // Counters move between the two reads: compare the names, in order.
    const names = (s: string) => s.split('\n').map((l) => l.split(/[\s:]/)[0]);
    assert.deepEqual(names(got), names(want), path);
  }
  const big = files.read('/proc/zoneinfo');
  if (big.length <= 4096) t.diagnostic(`zoneinfo is only ${big.length} bytes here: the many-reads case is not exercised on this kernel`);
  assert.match(big, /\n$/);
});
