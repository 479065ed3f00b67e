// The host backends against the real kernel of this machine: /sys/kernel/mm/ksm and the
// memory cgroup hierarchy. Skipped loudly where the files are missing or not writable; every
// change is put back.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { accessSync, constants, existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { KsmSysfs, KSM_DIR } from '../../src/host/ksm-sysfs.js';
import { KsmSource } from '../../src/host/ksm.js';
import { findMemoryCgroup } from '../../src/host/cgroup.js';
import { MemoryDomainSource } from '../../src/host/memory-domain.js';
import { CgroupLimits } from '../../src/host/cgroup-limits.js';

function skip(t: { skip: (m: string) => void }, why: string) {
  console.error(`LAB SKIPPED: ${why}`);
  t.skip(`LAB SKIPPED: ${why}`);
}

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
  const before = Object.fromEntries(['run', 'pages_to_scan', 'sleep_millisecs', 'smart_scan', 'advisor_mode'].filter((f) => existsSync(join(KSM_DIR, f))).map((f) => [f, readFileSync(join(KSM_DIR, f), 'utf8').trim()]));
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
      child.once('exit', () => { tryRemove(); setTimeout(resolve, 100); });
      if (child.exitCode !== null) { tryRemove(); resolve(); }
    });
  });
  await new Promise((r) => child.once('spawn', r));
  for (let i = 0; i < 100 && !readFileSync(join(dir, 'cgroup.procs'), 'utf8').includes(String(child.pid)); i++) await new Promise((r) => setTimeout(r, 20));
  await new Promise((r) => setTimeout(r, 100)); // let exec finish
  const v = self.version;
  const MiB = 1024 * 1024;
  writeFileSync(join(dir, v === 2 ? 'memory.max' : 'memory.limit_in_bytes'), String(256 * MiB));

  const domain = await new MemoryDomainSource({ pid: child.pid! }).collect();
  assert.equal(domain.mem_available, 256 * 1024, 'the cgroup limit is the domain\'s memory');
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
