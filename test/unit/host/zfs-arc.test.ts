// ZFS's ARC as cache: the arcstats kstat parsed from a fixture (laid out as OpenZFS writes it),
// the host's mem_free with the reclaimable ARC (size - c_min) added, and a host without ZFS or
// with a garbled file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MeminfoSource } from '../../../src/host/meminfo.js';
import { hostSources } from '../../../src/host/index.js';
import { ARCSTATS_PATH, parseArcstats, withArcAsCache, ZfsArcSource } from '../../../src/host/zfs-arc.js';

const FIX = join(import.meta.dirname, 'fixtures', 'zfs');
const GiB = 1024 * 1024 * 1024;

/** A root with /proc/meminfo and, when given, arcstats. */
function root(arcstats: string | null): string {
  const dir = mkdtempSync(join(tmpdir(), 'ballast-zfs-'));
  mkdirSync(join(dir, 'proc/spl/kstat/zfs'), { recursive: true });
  cpSync(join(FIX, 'meminfo'), join(dir, 'proc/meminfo'));
  if (arcstats !== null) writeFileSync(join(dir, ARCSTATS_PATH), arcstats);
  return dir;
}

test('arcstats: size and c_min in bytes; the ARC fields in KiB', async (t) => {
  const text = readFileSync(join(FIX, 'arcstats'), 'utf8');
  assert.deepEqual(parseArcstats(text), { size: 6 * GiB, cMin: 1 * GiB });
  const dir = root(text);
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  assert.deepEqual(await new ZfsArcSource(dir).collect(), { zfs_arc_size: 6 * 1048576, zfs_arc_min: 1048576, zfs_arc_reclaimable: 5 * 1048576 });
});

test("the host's mem_free counts the ARC above c_min as free; mem_unused and the total stay", async (t) => {
  const dir = root(readFileSync(join(FIX, 'arcstats'), 'utf8'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const plain = await new MeminfoSource(dir).collect();
  assert.equal(plain.mem_free, 1024000 + 10000 + 500000);
  const s = await withArcAsCache(new MeminfoSource(dir), dir).collect();
  assert.equal(s.mem_free, 1024000 + 10000 + 500000 + 5 * 1048576);
  assert.equal(s.mem_unused, plain.mem_unused);
  assert.equal(s.mem_available, plain.mem_available);
  // An ARC at its minimum has nothing to give; never more free than the host has.
  writeFileSync(join(dir, ARCSTATS_PATH), readFileSync(join(FIX, 'arcstats'), 'utf8').replace(/^size( +)4( +)\d+$/m, 'size$14$2536870912'));
  assert.equal((await withArcAsCache(new MeminfoSource(dir), dir).collect()).mem_free, plain.mem_free);
  writeFileSync(join(dir, ARCSTATS_PATH), readFileSync(join(FIX, 'arcstats'), 'utf8').replace(/^size( +)4( +)\d+$/m, `size$14$2${64 * GiB}`));
  assert.equal((await withArcAsCache(new MeminfoSource(dir), dir).collect()).mem_free, 16384000);
  // The host's source list does it (a memory domain does not: the ARC is not charged to a cgroup).
  const merged: Record<string, unknown> = {};
  for (const src of hostSources({ root: dir }).filter((x) => x.name === 'meminfo' || x.name === 'zfs_arc')) Object.assign(merged, await src.collect());
  assert.equal(merged.mem_free, 16384000);
  assert.equal(merged.zfs_arc_size, 64 * 1048576);
});

test('no ZFS: nothing changes; a garbled arcstats: a clear error from its own source, meminfo untouched', async (t) => {
  const none = root(null);
  t.after(() => rmSync(none, { recursive: true, force: true }));
  assert.deepEqual(await new ZfsArcSource(none).collect(), {});
  assert.deepEqual(await withArcAsCache(new MeminfoSource(none), none).collect(), await new MeminfoSource(none).collect());
  const bad: [string, RegExp][] = [
    ['garbage\n', /not a kstat file/],
    ['9 1 0x01\nname type data\nc_min 4 1024\n', /no "size" row/],
    ['9 1 0x01\nname type data\nsize 4 12x\nc_min 4 1024\n', /"size" is not a byte count: "12x"/],
    ['9 1 0x01\nname type data\nsize 4 99999999999999999999\nc_min 4 1024\n', /"size" is not a byte count/],
  ];
  for (const [text, re] of bad) {
    const dir = root(text);
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    await assert.rejects(new ZfsArcSource(dir).collect(), re, text);
    assert.deepEqual(await withArcAsCache(new MeminfoSource(dir), dir).collect(), await new MeminfoSource(dir).collect(), 'mem_free as meminfo gives it');
  }
});
