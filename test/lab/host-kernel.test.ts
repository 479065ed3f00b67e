// The host backends against the real kernel of this machine: /sys/kernel/mm/ksm and the
// memory cgroup hierarchy. Skipped loudly where the files are missing or not writable; every
// change is put back. The KSM tests share one file so they run one after the other (each
// remembers the knobs it found and puts them back).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KsmSysfs, KSM_DIR } from '../../src/host/ksm-sysfs.js';
import { gatherKsmStatus } from '../../src/host/ksm-status.js';
import { KsmSource } from '../../src/host/ksm.js';
import { findMemoryCgroup } from '../../src/host/cgroup.js';
import { MemoryDomainSource } from '../../src/host/memory-domain.js';
import { CgroupLimits } from '../../src/host/cgroup-limits.js';
import { areaRotational, SwapSpeedSource, swapRotational } from '../../src/host/swap-speed.js';
import { skipLoudly as skip, spawnDaemon, writeDaemonConfig } from './fixture.js';

function writable(path: string): boolean {
  try {
    accessSync(path, constants.W_OK);
    const cur = readFileSync(path, 'utf8').trim();
    writeFileSync(path, cur); // the only true test on sysfs: write what is there
    return true;
  } catch {
    return false;
  }
}

test('KSM sysfs: write knobs on the real kernel, read back, restore the originals', async (t) => {
  if (!existsSync(KSM_DIR)) return skip(t, `${KSM_DIR} does not exist (kernel without KSM)`);
  if (!writable(join(KSM_DIR, 'pages_to_scan'))) return skip(t, `${KSM_DIR} is not writable here (not root, or read-only sysfs)`);
  const before = Object.fromEntries(
    ['run', 'pages_to_scan', 'sleep_millisecs', 'smart_scan', 'advisor_mode']
      .filter((f) => existsSync(join(KSM_DIR, f)))
      .map((f) => [f, readFileSync(join(KSM_DIR, f), 'utf8').trim()]),
  );
  const k = new KsmSysfs();
  t.after(async () => {
    await k.restore().catch((e: unknown) => console.error(`restore failed: ${(e as Error).message}`));
  });
  const pts = Number(before.pages_to_scan) === 123 ? 124 : 123;
  const settings: Record<string, unknown> = { pages_to_scan: pts, sleep_millisecs: Number(before.sleep_millisecs) + 7 };
  if ('smart_scan' in before) settings.smart_scan = before.smart_scan === '1' ? 0 : 1;
  await k.write(settings);
  const s = await k.read();
  assert.equal(s.ksm_pages_to_scan, pts);
  assert.equal(s.ksm_sleep_millisecs, Number(before.sleep_millisecs) + 7);
  if ('smart_scan' in before) assert.equal(String(s.ksm_smart_scan), settings.smart_scan === 1 ? '1' : '0');
  const source = await new KsmSource({ guestPids: () => [process.pid] }).collect();
  assert.equal(source.ksm_pages_to_scan, pts);
  assert.ok((source.ksm_shareable as number) > 0);
  if ('advisor_mode' in before) {
    // With the advisor on, the kernel owns pages_to_scan and refuses writes to it.
    await k.write({ advisor_mode: 'scan-time' });
    assert.match(readFileSync(join(KSM_DIR, 'advisor_mode'), 'utf8'), /\[scan-time\]/);
    await assert.rejects(k.write({ pages_to_scan: pts + 1 }), /pages_to_scan/);
    await k.write({ advisor_mode: 'none' });
  }
  await k.restore();
  for (const [f, v] of Object.entries(before)) assert.equal(readFileSync(join(KSM_DIR, f), 'utf8').trim(), v, `${f} restored`);
});

test('ballast run killed with SIGKILL leaves KSM as it set it; the next daemon puts back what the first found, from its journal (real KSM)', async (t) => {
  if (!existsSync(KSM_DIR)) return skip(t, `${KSM_DIR} does not exist (kernel without KSM)`);
  if (!writable(join(KSM_DIR, 'pages_to_scan'))) return skip(t, `${KSM_DIR} is not writable here (not root, or read-only sysfs)`);
  const knob = (f: string) => readFileSync(join(KSM_DIR, f), 'utf8').trim();
  const before = { pages_to_scan: knob('pages_to_scan'), sleep_millisecs: knob('sleep_millisecs') };
  const dir = mkdtempSync(join(tmpdir(), 'ballast-ksm-journal-'));
  const runtime = join(dir, 'runtime');
  const saved = process.env.BALLAST_RUNTIME_DIR;
  process.env.BALLAST_RUNTIME_DIR = runtime; // spawnDaemon's children inherit it
  t.after(() => {
    for (const [f, v] of Object.entries(before)) writeFileSync(join(KSM_DIR, f), v); // whatever happened
    if (saved === undefined) delete process.env.BALLAST_RUNTIME_DIR;
    else process.env.BALLAST_RUNTIME_DIR = saved;
    rmSync(dir, { recursive: true, force: true });
  });
  mkdirSync(join(dir, 'policies'));
  mkdirSync(join(dir, 'qmp'));
  // No guests (an empty QMP directory): only the host's KSM is driven, and ksmd is not started.
  const config = writeDaemonConfig(dir, { hypervisor: { driver: 'qmp', qmp_dir: join(dir, 'qmp') }, ksm: { enabled: true }, api: { socket: '' } });
  const pts = Number(before.pages_to_scan) === 1234 ? 1235 : 1234;
  const sleep = Number(before.sleep_millisecs) === 77 ? 78 : 77;
  const policy = join(dir, 'policies', '10-ksm.policy');
  writeFileSync(policy, `(Host.Control "ksm_pages_to_scan" ${pts})\n(Host.Control "ksm_sleep_millisecs" ${sleep})\n`);
  const journal = join(runtime, 'ksm-found.json');

  const first = spawnDaemon(config);
  t.after(() => first.proc.kill('SIGKILL'));
  await waitFor(
    () => knob('pages_to_scan') === String(pts) && knob('sleep_millisecs') === String(sleep),
    30_000,
    () => first.logText(),
  );
  assert.deepEqual(JSON.parse(readFileSync(journal, 'utf8')).knobs, {
    pages_to_scan: { found: before.pages_to_scan, wrote: String(pts) },
    sleep_millisecs: { found: before.sleep_millisecs, wrote: String(sleep) },
  });
  first.proc.kill('SIGKILL');
  await first.exited;
  assert.equal(knob('pages_to_scan'), String(pts), 'a killed daemon cannot put KSM back');

  // The next daemon runs no KSM policy: all it does with KSM is put back what the first found.
  rmSync(policy);
  const second = spawnDaemon(config);
  t.after(() => second.proc.kill('SIGKILL'));
  await waitFor(
    () => second.logs.some((r) => r.event === 'started'),
    30_000,
    () => second.logText(),
  );
  const taken = second.logs.find((r) => r.event === 'ksm_journal_taken_over');
  assert.deepEqual(taken?.knobs, before, second.logText());
  second.proc.kill('SIGTERM');
  assert.equal(await second.exited, 0, second.logText());
  assert.deepEqual({ pages_to_scan: knob('pages_to_scan'), sleep_millisecs: knob('sleep_millisecs') }, before, 'put back as the first daemon found them');
  assert.equal(existsSync(journal), false, 'everything put back: no journal left');
});

/** Polls `ok` every 100 ms; fails with `why()` after `ms`. */
async function waitFor(ok: () => boolean, ms: number, why: () => string): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) assert.fail(`timed out after ${ms / 1000} s\n${why()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('memory cgroup (real): domain fields of a child cgroup with a limit; per-guest limits on a process', async (t) => {
  const self = await findMemoryCgroup('/', 'self');
  if (!self) return skip(t, 'no memory cgroup controller mounted (neither v1 nor v2 with memory)');
  const parent = self.mountPoint;
  const dir = join(parent, `ballast-test-${process.pid}`);
  try {
    mkdirSync(dir);
  } catch (e) {
    return skip(t, `cannot create a cgroup under ${parent}: ${(e as Error).message}`);
  }
  // The shell joins the cgroup before exec'ing sleep, so sleep's memory is charged there
  // (v1 does not move a process's existing charges when it moves).
  const child = spawn('sh', ['-c', `echo $$ > '${join(dir, 'cgroup.procs')}' && exec sleep 60`], { stdio: 'ignore' });
  t.after(() => {
    child.kill('SIGKILL');
    // The cgroup can only go once its last process has left.
    const until = Date.now() + 5000;
    const tryRemove = () => {
      try {
        rmdirSync(dir);
      } catch (e) {
        if (Date.now() < until) return setTimeout(tryRemove, 50);
        console.error(`could not remove ${dir}: ${(e as Error).message}`);
      }
    };
    return new Promise<void>((resolve) => {
      child.once('exit', () => {
        tryRemove();
        setTimeout(resolve, 100);
      });
      if (child.exitCode !== null) {
        tryRemove();
        resolve();
      }
    });
  });
  await new Promise((r) => child.once('spawn', r));
  for (let i = 0; i < 100 && !readFileSync(join(dir, 'cgroup.procs'), 'utf8').includes(String(child.pid)); i++) await new Promise((r) => setTimeout(r, 20));
  await new Promise((r) => setTimeout(r, 100)); // let exec finish
  const v = self.version;
  const MiB = 1024 * 1024;
  writeFileSync(join(dir, v === 2 ? 'memory.max' : 'memory.limit_in_bytes'), String(256 * MiB));

  const domain = await new MemoryDomainSource({ pid: child.pid! }).collect();
  assert.equal(domain.mem_available, 256 * 1024, "the cgroup limit is the domain's memory");
  assert.ok((domain.mem_free as number) <= 256 * 1024 && (domain.mem_free as number) > 200 * 1024, `mem_free ${domain.mem_free}`);
  assert.ok((domain.domain_usage as number) > 0, 'sleep is charged to the cgroup');

  const limits = new CgroupLimits();
  const guest = { id: 'g', name: 'g', props: { pid: child.pid! }, stats: {} };
  await limits.setLimits(guest, { high: 100 * 1024, max: 128 * 1024 });
  const got = await limits.getLimits(guest);
  assert.deepEqual(got, { high: 100 * 1024, max: 128 * 1024, version: v });
  assert.equal(readFileSync(join(dir, v === 2 ? 'memory.max' : 'memory.limit_in_bytes'), 'utf8').trim(), String(128 * MiB));
  // Far below what the process holds: v1 reclaims then refuses with EBUSY; v2 OOM-kills instead,
  // so only v1 can be asked this safely.
  if (v === 1) {
    await assert.rejects(limits.setLimits(guest, { max: 4 }), /EBUSY|reads back/);
  }
  await limits.setLimits(guest, { high: null, max: null });
  assert.deepEqual(await limits.getLimits(guest), { high: null, max: null, version: v });
  await limits.restore();
  assert.equal((await new MemoryDomainSource({ dir }).collect()).mem_available, 256 * 1024, 'restore put back the 256 MiB we set before ballast touched it');
});

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

test("ksm status shows a process's merged pages, top first (real KSM)", async (t) => {
  if (!existsSync(join(KSM_DIR, 'run'))) return skip(t, 'no /sys/kernel/mm/ksm on this kernel');
  if (spawnSync('python3', ['-c', 'import ctypes, mmap']).status !== 0)
    return skip(t, 'python3 (with ctypes) is needed to make a process with mergeable pages');
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
  assert.deepEqual(
    merging,
    [...merging].sort((a: number, b: number) => b - a),
    'largest first',
  );
  assert.ok(j.processes.some((p: { pid: number }) => p.pid === child.pid));
  const text = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'ksm', 'status'], { encoding: 'utf8' });
  assert.match(text.stdout, /KSM: running/);
  assert.match(text.stdout, new RegExp(`\\b${child.pid}\\b.*madvise\\s+python3`));
});

test("swap_speed (real kernel): a block device's rotational flag, found from its device node as a swap partition's would be", async (t) => {
  const losetup = spawnSync('losetup', ['--version']);
  if (losetup.status !== 0) return skip(t, 'losetup is not installed (util-linux)');
  const dir = mkdtempSync(join('/var/tmp', 'ballast-rot-'));
  const file = join(dir, 'disk');
  writeFileSync(file, Buffer.alloc(4 * 1024 * 1024));
  const attach = spawnSync('losetup', ['--find', '--show', file], { encoding: 'utf8' });
  if (attach.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    return skip(t, `no loop device here (not root, or no loop module): ${attach.stderr.trim()}`);
  }
  const loop = attach.stdout.trim();
  t.after(() => {
    spawnSync('losetup', ['-d', loop]);
    rmSync(dir, { recursive: true, force: true });
  });
  const flagFile = `/sys/block/${loop.replace('/dev/', '')}/queue/rotational`;
  const area = { path: loop, type: 'partition', priority: 32767 };
  for (const flag of [1, 0] as const) {
    writeFileSync(flagFile, String(flag));
    assert.equal(areaRotational('/', area), flag, `${loop} with rotational ${flag}`);
    assert.equal(
      swapRotational([area], (a) => areaRotational('/', a)),
      flag,
    );
  }
  assert.equal(areaRotational('/', { ...area, path: join(dir, 'gone') }), null, 'an area that went away is unknown');
  // The live source reads this machine's own swap and pressure without failing.
  const live = await new SwapSpeedSource().collect();
  assert.ok([0, 1, null].includes(live.swap_rotational as number | null), JSON.stringify(live));
});
