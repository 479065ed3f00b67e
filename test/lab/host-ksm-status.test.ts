// `ballast ksm status` on the real kernel: a process with identical mergeable pages, KSM run
// for a moment, and the command must show its merged pages first. KSM knobs are restored.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { KsmSysfs, KSM_DIR } from '../../src/host/ksm-sysfs.js';
import { gatherKsmStatus } from '../../src/host/ksm-status.js';

function skip(t: { skip: (m: string) => void }, why: string) {
  console.error(`LAB SKIPPED: ${why}`);
  t.skip(`LAB SKIPPED: ${why}`);
}

// 32 MiB of identical pages marked MADV_MERGEABLE (12), then wait to be killed.
const MERGEABLE = `
import ctypes, mmap, sys, time
n = 32 * 1024 * 1024
m = mmap.mmap(-1, n, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
m.write(b'\\x5a' * n)
libc = ctypes.CDLL(None, use_errno=True)
addr = ctypes.c_void_p.from_buffer(m)
if libc.madvise(ctypes.c_void_p(ctypes.addressof(addr)), ctypes.c_size_t(n), 12) != 0:
    print('madvise failed', ctypes.get_errno(), flush=True); sys.exit(1)
print('ready', flush=True)
time.sleep(120)
`;

test('ksm status shows a process\'s merged pages, top first (real KSM)', async (t) => {
  if (!existsSync(join(KSM_DIR, 'run'))) return skip(t, 'no /sys/kernel/mm/ksm on this kernel');
  if (spawnSync('python3', ['-c', 'import ctypes, mmap']).status !== 0) return skip(t, 'python3 (with ctypes) is needed to make a process with mergeable pages');
  const ksm = new KsmSysfs();
  try {
    await ksm.write({ pages_to_scan: 5000, sleep_millisecs: 10 });
  } catch (e) {
    return skip(t, `KSM sysfs not writable here: ${(e as Error).message}`);
  }
  const child = spawn('python3', ['-c', MERGEABLE], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(async () => {
    child.kill('SIGKILL');
    await ksm.restore().catch((e: unknown) => console.error(`KSM restore failed: ${(e as Error).message}`));
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => (d.toString().includes('ready') ? resolve() : reject(new Error(d.toString()))));
    child.once('exit', (c) => reject(new Error(`python exited ${c}`)));
  });
  await ksm.write({ run: 1 });
  let mine;
  for (let i = 0; i < 150; i++) {
    const s = await gatherKsmStatus();
    mine = s.processes.find((p) => p.pid === child.pid);
    if (mine && mine.merging_pages > 4000) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.ok(mine, 'the process is listed');
  assert.ok(mine.merging_pages > 4000, `merging_pages ${mine.merging_pages} (32 MiB of identical pages is 8192)`);
  assert.equal(mine.mergeable, true);
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'ksm', 'status', '--json'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.equal(j.state, 'running');
  assert.ok(j.counters.pages_sharing > 4000);
  assert.ok(j.counters.general_profit > 0);
  const merging = j.processes.map((p: { merging_pages: number }) => p.merging_pages);
  assert.deepEqual(merging, [...merging].sort((a: number, b: number) => b - a), 'largest first');
  assert.ok(j.processes.some((p: { pid: number }) => p.pid === child.pid));
  const text = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'ksm', 'status'], { encoding: 'utf8' });
  assert.match(text.stdout, /KSM: running/);
  assert.match(text.stdout, new RegExp(`\\b${child.pid}\\b.*madvise\\s+python3`));
});
