// KSM for processes and containers on the real kernel, as root: two workers in a cgroup of
// their own (a stand-in for a container or service) hold identical pages, one marked with
// madvise(MADV_MERGEABLE), one made mergeable whole with prctl(PR_SET_MEMORY_MERGE); a third
// process marks unique pages mergeable, which KSM scans but can never merge. `ksm status`
// sums the workers as one group that KSM pays off for, and flags the third as costing more
// than it saves. KSM's knobs and the cgroup are put back afterwards.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { KsmSysfs, KSM_DIR } from '../../src/host/ksm-sysfs.js';
import { gatherKsmStatus, type KsmStatus } from '../../src/host/ksm-status.js';
import { findMemoryCgroup } from '../../src/host/cgroup.js';
import { processCgroupPath } from '../../src/host/cgroup-name.js';
import { RMAP_ITEM_BYTES } from '../../src/host/ksm-cost.js';
import { skipLoudly as skip } from './fixture.js';

const REPO = new URL('../../', import.meta.url).pathname;
const PAGES = 4096; // 16 MiB per process

// mode "madvise": identical pages, MADV_MERGEABLE (12) on them; "prctl": identical pages,
// the whole process mergeable (PR_SET_MEMORY_MERGE = 67); "unique": random pages, MADV_MERGEABLE.
const WORKER = `
import ctypes, mmap, os, sys, time
mode = sys.argv[1]
n = ${PAGES} * mmap.PAGESIZE
libc = ctypes.CDLL(None, use_errno=True)
if mode == 'prctl' and libc.prctl(67, 1, 0, 0, 0) != 0:
    print('prctl failed', ctypes.get_errno(), flush=True); sys.exit(1)
m = mmap.mmap(-1, n, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
m.write(os.urandom(n) if mode == 'unique' else b'\\x5b' * n)
addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
if mode != 'prctl' and libc.madvise(ctypes.c_void_p(addr), ctypes.c_size_t(n), 12) != 0:
    print('madvise failed', ctypes.get_errno(), flush=True); sys.exit(1)
print('ready', flush=True)
time.sleep(300)
`;

function startWorker(mode: string, cgroupProcs: string | null): ChildProcess {
  // The shell joins the cgroup before exec'ing python3, so all of python's memory is there.
  const script = `${cgroupProcs ? `echo $$ > '${cgroupProcs}' && ` : ''}exec python3 -c "$0" "$1"`;
  return spawn('sh', ['-c', script, WORKER, mode], { stdio: ['ignore', 'pipe', 'inherit'] });
}

function ready(child: ChildProcess): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => (d.toString().includes('ready') ? resolve() : reject(new Error(d.toString()))));
    child.once('exit', (c) => reject(new Error(`worker exited ${c}`)));
  });
}

test('ksm status by cgroup and by process on the real kernel: a group KSM pays off for, a process it costs', async (t) => {
  if (!existsSync(join(KSM_DIR, 'run'))) return skip(t, 'no /sys/kernel/mm/ksm on this kernel');
  if (!existsSync('/proc/self/ksm_stat')) return skip(t, 'no /proc/PID/ksm_stat (Linux 6.1+) on this kernel');
  if (spawnSync('python3', ['-c', 'import ctypes, mmap']).status !== 0) return skip(t, 'python3 with ctypes is needed for processes with mergeable pages');
  const self = await findMemoryCgroup('/', 'self');
  if (!self) return skip(t, 'no memory cgroup hierarchy to make a group in');
  const dir = join(self.mountPoint, `ballast-ksm-test-${process.pid}`);
  try {
    mkdirSync(dir);
  } catch (e) {
    return skip(t, `cannot create a cgroup under ${self.mountPoint}: ${(e as Error).message}`);
  }
  const ksm = new KsmSysfs();
  const children: ChildProcess[] = [];
  t.after(async () => {
    await Promise.all(
      children.map(
        (c) =>
          new Promise<void>((resolve) => {
            if (c.exitCode !== null || c.signalCode !== null) return resolve();
            c.once('exit', () => resolve());
            c.kill('SIGKILL');
          }),
      ),
    );
    for (let i = 0; i < 50; i++) {
      try {
        rmdirSync(dir);
        break;
      } catch (e) {
        if (i === 49) console.error(`could not remove ${dir}: ${(e as Error).message}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    await ksm.restore().catch((e: unknown) => console.error(`KSM restore failed: ${(e as Error).message}`));
  });
  try {
    await ksm.write({ pages_to_scan: 5000, sleep_millisecs: 10 });
  } catch (e) {
    return skip(t, `KSM sysfs not writable here: ${(e as Error).message}`);
  }

  const procs = join(dir, 'cgroup.procs');
  const madvised = startWorker('madvise', procs);
  const whole = startWorker('prctl', procs);
  const unique = startWorker('unique', null);
  children.push(madvised, whole, unique);
  await Promise.all(children.map(ready));
  await ksm.write({ run: 1 });

  const groupPath = processCgroupPath(readFileSync(`/proc/${madvised.pid}/cgroup`, 'utf8'));
  assert.ok(groupPath.endsWith(`/ballast-ksm-test-${process.pid}`), `the worker is in the test cgroup: ${groupPath}`);
  let s: KsmStatus | undefined;
  const find = (st: KsmStatus, pid: number | undefined) => st.processes.find((p) => p.pid === pid);
  for (let i = 0; i < 300; i++) {
    s = await gatherKsmStatus();
    const [a, b, u] = [find(s, madvised.pid), find(s, whole.pid), find(s, unique.pid)];
    if (a && b && u && a.merging_pages > PAGES * 0.9 && b.merging_pages > PAGES * 0.9 && (u.rmap_items ?? 0) > PAGES * 0.9) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  const [a, b, u] = [find(s!, madvised.pid)!, find(s!, whole.pid)!, find(s!, unique.pid)!];
  assert.ok(a.merging_pages > PAGES * 0.9, `madvise worker merged ${a.merging_pages} of ${PAGES} pages`);
  assert.ok(b.merging_pages > PAGES * 0.9, `prctl worker merged ${b.merging_pages} of ${PAGES} pages`);
  assert.equal(a.mergeable, true);
  assert.equal(b.merge_any, true, 'PR_SET_MEMORY_MERGE makes the whole process mergeable');

  // The workers as one group, summed from their own rows; KSM pays off there.
  const group = s!.groups.find((g) => g.cgroup === groupPath);
  assert.ok(group, `a group for ${groupPath}: ${JSON.stringify(s!.groups)}`);
  assert.equal(group.processes, 2);
  assert.equal(group.name, `ballast-ksm-test-${process.pid}`);
  assert.equal(group.merging_pages, a.merging_pages + b.merging_pages);
  assert.equal(group.rmap_items, a.rmap_items! + b.rmap_items!);
  assert.equal(group.profit_bytes, a.process_profit! + b.process_profit!);
  assert.equal(group.costs_more, false);
  assert.ok(group.rmap_per_page! < 2, `about one rmap item per merged page: ${group.rmap_per_page}`);

  // Unique pages: watched (rmap items), never merged: the kernel's own profit is negative.
  assert.ok((u.rmap_items ?? 0) > PAGES * 0.9, `unique worker has ${u.rmap_items} rmap items`);
  assert.equal(u.merging_pages, 0);
  assert.ok(u.process_profit! < 0, `kernel profit ${u.process_profit}`);
  assert.equal(u.costs_more, true);
  // The rule's constant is the kernel's: profit = (merging + zero pages) x 4096 - rmap items x 64.
  for (const p of [a, b, u])
    assert.equal((p.merging_pages + (p.zero_pages ?? 0)) * 4096 - p.rmap_items! * RMAP_ITEM_BYTES, p.process_profit, `profit identity for pid ${p.pid}`);
  assert.ok(a.map_count! > 0 && s!.max_map_count! > 0);

  const text = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'ksm', 'status', '--top', '1000'], { cwd: REPO, encoding: 'utf8' });
  assert.equal(text.status, 0, text.stderr);
  assert.match(text.stdout, new RegExp(`\\s2\\s+cgroup\\s+ballast-ksm-test-${process.pid} \\(`), text.stdout);
  assert.match(text.stdout, new RegExp(`^\\s+${u.pid}\\s+0\\s+0\\.0 MiB\\s+-\\d+\\s+- !\\s+\\d+\\s+madvise\\s+python3$`, 'm'), text.stdout);
  assert.match(text.stdout, new RegExp(`^\\s+${b.pid}\\s+\\d+\\s.*\\sprocess\\s+python3$`, 'm'), text.stdout);
});
