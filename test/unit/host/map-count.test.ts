// Map counts on the real kernel: a python3 child marks every other page of one mapping
// MADV_MERGEABLE, which splits it into one mapping per page (KSM's warning: merging by ranges
// multiplies a process's mappings), until it holds 85% of vm.max_map_count. The host source
// finds it as the process with the most mappings, and the map_count alert names it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MapCountSource, readMapCount, readMaxMapCount, scanMapCounts } from '../../../src/host/map-count.js';
import { hostAlerts, mapCountAlert } from '../../../src/host/alerts.js';
import { hostSources } from '../../../src/host/index.js';

// Maps `pairs` x 2 pages and marks the first page of each pair mergeable (MADV_MERGEABLE = 12).
const SPLITTER = `
import ctypes, mmap, sys, time
pairs = int(sys.argv[1])
page = mmap.PAGESIZE
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
addr = libc.mmap(None, 2 * pairs * page, 3, 0x22, -1, 0)
if addr is None or addr == ctypes.c_void_p(-1).value:
    print('mmap failed', ctypes.get_errno(), flush=True); sys.exit(1)
for i in range(pairs):
    if libc.madvise(addr + 2 * i * page, page, 12) != 0:
        print('madvise failed', ctypes.get_errno(), flush=True); sys.exit(1)
print('ready', flush=True)
time.sleep(120)
`;

test('a process split by MADV_MERGEABLE: its map count, the host fields, and the alert naming it (real kernel)', async (t) => {
  const limit = await readMaxMapCount();
  if (limit === null) return t.skip('no /proc/sys/vm/max_map_count');
  if (spawnSync('python3', ['-c', 'import ctypes']).status !== 0) return t.skip('python3 with ctypes is needed for a process with many mappings');
  // 85% of the limit where that is a reasonable size (65530 by default); on hosts that raised
  // the limit far, 30,000 mappings and a threshold scaled to them.
  const target = limit <= 100_000 ? Math.ceil(limit * 0.85) : 30_000;
  const fraction = limit <= 100_000 ? 0.8 : (target * 0.9) / limit;
  const child = spawn('python3', ['-c', SPLITTER, String(Math.ceil(target / 2))], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => {
    child.kill('SIGKILL');
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => (d.toString().includes('ready') ? resolve() : reject(new Error(d.toString()))));
    child.once('exit', (c) => reject(new Error(`python3 exited ${c}`)));
  });
  const pid = child.pid!;
  const lines = readFileSync(`/proc/${pid}/maps`, 'utf8').trimEnd().split('\n').length;
  assert.ok(lines >= target, `${lines} mappings after splitting, wanted at least ${target}`);
  assert.equal(readMapCount('/', pid), lines, 'the chunked newline count equals the lines of the text');

  const started = performance.now();
  const scan = scanMapCounts();
  const ms = performance.now() - started;
  console.error(`map count scan: ${scan.scanned} processes in ${ms.toFixed(1)} ms, top pid ${scan.top?.pid} with ${scan.top?.count} mappings`);
  assert.equal(scan.top?.pid, pid, 'the split process has the most mappings on this host');

  const stats = await new MapCountSource().collect();
  assert.equal(stats.vm_max_map_count, limit);
  assert.equal(stats.map_count_max_pid, pid);
  assert.ok((stats.map_count_max as number) >= target);
  assert.ok(
    hostSources().some((s) => s instanceof MapCountSource),
    'registered with the host sources',
  );

  const alerts = hostAlerts([stats], { ...defaults(), mapCountFraction: fraction });
  const a = alerts.find((e) => e.kind === 'map_count');
  assert.ok(a, `a map_count alert: ${JSON.stringify(alerts)}`);
  assert.equal(a.severity, 'warning');
  assert.equal(a.entity, 'host');
  assert.match(
    a.message,
    new RegExp(`process python3 \\(pid ${pid}\\) has ${stats.map_count_max} memory mappings, \\d+\\.\\d% of vm\\.max_map_count \\(${limit}\\)`),
  );
  assert.equal(a.threshold, fraction);
});

const defaults = () => ({
  availableFraction: 0.2,
  usageFraction: 0.85,
  pagingPagesPerSec: 10,
  pagingSamples: 3,
  leakSamples: 10,
  leakWindowS: 1800,
  leakRisingShare: 0.8,
  leakMinRiseKiB: 32 * 1024,
  intervalS: 5,
});

test('map_count alert: over 80% a warning, from 95% critical; no fields or no limit, no alert', () => {
  const names = (pid: number) => (pid === 7 ? 'java' : null);
  const at = (count: number, pid = 7) => ({ vm_max_map_count: 1000, map_count_max: count, map_count_max_pid: pid });
  assert.equal(mapCountAlert(at(800), undefined, names), null, 'at the threshold: not above it');
  assert.equal(mapCountAlert(at(801), undefined, names)!.severity, 'warning');
  assert.match(mapCountAlert(at(801), undefined, names)!.message, /^process java \(pid 7\) has 801 memory mappings, 80\.1% of vm\.max_map_count \(1000\)/);
  assert.equal(mapCountAlert(at(950), undefined, names)!.severity, 'critical');
  assert.match(mapCountAlert(at(990, 8), undefined, names)!.message, /process \(exited\) \(pid 8\)/);
  assert.equal(mapCountAlert({ vm_max_map_count: null, map_count_max: 999, map_count_max_pid: 7 }, undefined, names), null);
  assert.equal(mapCountAlert({ mem_free: 1 }, undefined, names), null);
  assert.equal(mapCountAlert(at(700), { ...defaults(), mapCountFraction: 0.5 }, names)!.severity, 'warning');
  assert.equal(mapCountAlert(at(900), { ...defaults(), mapCountFraction: 0.5 }, names)!.severity, 'critical', '0.5 + 3/4 of the way to the limit');
  assert.deepEqual(
    hostAlerts([at(960)], undefined, names).map((e) => [e.kind, e.severity]),
    [['map_count', 'critical']],
  );
});

test('map count of a recorded tree: lines of /proc/PID/maps, largest process found, gone processes skipped', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'ballast-maps-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const line = '7f0000000000-7f0000001000 rw-p 00000000 00:00 0 \n';
  for (const [pid, n] of [
    [1, 3],
    [42, 70_000], // more than one 64 KiB read
    [43, 0], // a kernel thread: empty maps
  ] as const) {
    mkdirSync(join(root, 'proc', String(pid)), { recursive: true });
    writeFileSync(join(root, 'proc', String(pid), 'maps'), line.repeat(n));
  }
  mkdirSync(join(root, 'proc/44')); // exited between readdir and open: no maps
  mkdirSync(join(root, 'proc/sys/vm'), { recursive: true });
  writeFileSync(join(root, 'proc/sys/vm/max_map_count'), '65530\n');
  assert.deepEqual(scanMapCounts(root), { scanned: 3, top: { pid: 42, count: 70_000 } });
  assert.deepEqual(await new MapCountSource(root).collect(), { vm_max_map_count: 65530, map_count_max: 70_000, map_count_max_pid: 42 });
  // The scan is repeated at most every rescan interval; the limit is read each time.
  let now = 0;
  const src = new MapCountSource(root, 60_000, () => now);
  assert.equal((await src.collect()).map_count_max, 70_000);
  writeFileSync(join(root, 'proc', '42', 'maps'), line.repeat(5));
  now = 59_000;
  assert.equal((await src.collect()).map_count_max, 70_000, 'within the interval: the last scan');
  now = 60_000;
  assert.deepEqual(await src.collect(), { vm_max_map_count: 65530, map_count_max: 5, map_count_max_pid: 42 }, 'rescanned');
  writeFileSync(join(root, 'proc/sys/vm/max_map_count'), 'lots\n');
  assert.equal(await readMaxMapCount(root), null);
  assert.deepEqual(scanMapCounts(join(root, 'nowhere')), { scanned: 0, top: null });
});
