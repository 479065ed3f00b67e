// A real lab guest in a memory domain: the domain's fields follow the guest's QEMU charge,
// ballooning the guest down gives memory back to the domain, and per-guest cgroup limits
// (mem_high / mem_max) land on the guest's own cgroup. Driven through the QMP driver.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findMemoryCgroup } from '../../src/host/cgroup.js';
import { MemoryDomainSource } from '../../src/host/memory-domain.js';
import { CgroupLimits } from '../../src/host/cgroup-limits.js';
import { readGuestRamRss } from '../../src/host/process.js';
import { QmpHypervisor } from '../../src/hypervisor/qmp/index.js';
import { parseConsole, summarizeConsole } from '../../src/lab/console.js';
import { startQemuGuest, stopQemuGuest, type QemuGuest } from '../../src/lab/qemu.js';
import { skipLoudly as skip, until } from './fixture.js';

test('lab guest in a memory domain: domain fields, balloon returns memory, per-guest limits', async (t) => {
  const self = await findMemoryCgroup('/', 'self');
  if (!self) return skip(t, 'no memory cgroup controller mounted');
  const domainDir = join(self.mountPoint, `ballast-test-${process.pid}`);
  const guestDir = join(domainDir, 'guest');
  try {
    mkdirSync(guestDir, { recursive: true });
  } catch (e) {
    return skip(t, `cannot create cgroups under ${self.mountPoint}: ${(e as Error).message}`);
  }
  const v = self.version;
  const MiB = 1024 * 1024;
  if (v === 2) writeFileSync(join(self.mountPoint, 'cgroup.subtree_control'), '+memory');
  writeFileSync(join(domainDir, v === 2 ? 'memory.max' : 'memory.limit_in_bytes'), String(512 * MiB));
  const dir = mkdtempSync(join(tmpdir(), 'ballast-domain-'));
  let guest: QemuGuest | null = null;
  const h = new QmpHypervisor({ sockets: [join(dir, 'g.qmp')], statsPeriodS: 1 });
  t.after(async () => {
    await h.close();
    if (guest) await stopQemuGuest(guest).catch(() => {});
    for (const d of [guestDir, domainDir]) {
      for (let i = 0; i < 40; i++) {
        try {
          rmdirSync(d);
          break;
        } catch {
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    }
    rmSync(dir, { recursive: true, force: true });
  });
  try {
    // Touch 120 MiB, free it, then idle: the memory stays charged to QEMU until ballooned away.
    guest = await startQemuGuest({
      name: 'domaintest',
      memMiB: 256,
      qmpSocket: join(dir, 'g.qmp'),
      workload: 'alloc:120,touch:2,free,idle:600',
      guestAgent: false,
      memCgroup: guestDir,
    });
  } catch (e) {
    return skip(t, `cannot start a lab guest: ${(e as Error).message}`);
  }
  const domain = new MemoryDomainSource({ dir: domainDir });
  const g = await until('fresh guest stats', 120000, async () => (await h.collect()).find((s) => !s.stale));
  assert.equal(g.props.pid, guest.pid);
  // Wait for the workload to have touched and freed its 120 MiB (its console says so: the
  // idle step after `free`), then for that to show as guest free memory. Free memory alone
  // does not tell: a guest just booted has more than 150 MiB free before the workload runs.
  await until('the workload to touch and free its 120 MiB', 120000, async () => {
    const c = summarizeConsole(parseConsole(readFileSync(guest!.consoleLog, 'utf8')));
    return c.phases.some((p) => p.op === 'idle' && p.arg === 600) ? c : null;
  });
  await until('the guest to free its 120 MiB', 60000, async () => {
    const s = (await h.collect())[0];
    return s && !s.stale && (s.stats.mem_unused as number) > 150 * 1024 ? s : null;
  });
  // What a balloon bounds is the guest's RAM block in QEMU, not QEMU's whole charge (TCG's
  // code buffer and QEMU's heaps, ~60-80 MiB here, stay): measure both.
  const ramRss = async () => {
    const r = await readGuestRamRss('/', guest!.pid, 256 * 1024);
    assert.ok(r !== null, 'the guest RAM mapping is found in /proc/PID/smaps');
    return r;
  };
  const before = await domain.collect();
  const ramBefore = await ramRss();
  assert.equal(before.mem_available, 512 * 1024, 'the domain limit is its memory');
  assert.ok((before.domain_usage as number) > 150 * 1024, `QEMU charged to the domain: ${before.domain_usage} KiB`);
  assert.ok(ramBefore > 96 * 1024 + 32 * 1024, `the guest touched its 120 MiB: guest RAM resident ${ramBefore} KiB`);

  const target = 96 * 1024;
  await h.setBalloon(g.id, target);
  await until('the balloon to reach 96 MiB', 60000, async () => (await h.collect())[0]?.stats.balloon_cur === target);
  // Holds on any kernel: pages the guest gave the balloon are discarded by QEMU, so at most
  // the balloon's size of guest RAM stays resident (THP or not: a partly discarded huge page
  // counts only its mapped 4 KiB pages). 4 MiB of slack for pages in flight.
  const ramAfter = await until('guest RAM resident <= the balloon size', 30000, async () => {
    const r = await ramRss();
    return r <= target + 4 * 1024 ? r : null;
  });
  const returned = ramBefore - ramAfter;
  // The domain's charge follows, either at once or, where the kernel defers freeing partly
  // unmapped huge pages, when the domain needs memory. Ask for it as a host under pressure
  // would (v1: a lower limit reclaims or fails with EBUSY; v2: memory.high), then put the
  // limit back so that mem_free compares with `before`.
  const dropped = async () => {
    const d = await domain.collect();
    return (d.domain_usage as number) <= (before.domain_usage as number) - returned / 2 ? d : null;
  };
  let after = await until('the domain charge to drop', 30000, dropped).catch(() => null);
  if (!after) {
    const usage = (await domain.collect()).domain_usage as number;
    const knob = join(domainDir, v === 2 ? 'memory.high' : 'memory.limit_in_bytes');
    console.error(
      `domain lab: charge still ${Math.round(usage / 1024)} MiB 30 s after ballooning returned ${Math.round(returned / 1024)} MiB of guest RAM (deferred huge page split?): lowering ${knob} to make the kernel reclaim`,
    );
    try {
      writeFileSync(knob, String((usage - returned / 2) * 1024));
    } catch (e) {
      console.error(`domain lab: the kernel could not reclaim: ${(e as Error).message}`);
    }
    writeFileSync(knob, v === 2 ? 'max' : String(512 * MiB));
    after = await until('the domain charge to drop after reclaim', 30000, dropped);
  }
  console.error(
    `domain lab: ballooned 256 -> 96 MiB: guest RAM resident ${Math.round(ramBefore / 1024)} -> ${Math.round(ramAfter / 1024)} MiB, QEMU charge ${Math.round((before.domain_usage as number) / 1024)} -> ${Math.round((after.domain_usage as number) / 1024)} MiB, domain mem_free ${Math.round((before.mem_free as number) / 1024)} -> ${Math.round((after.mem_free as number) / 1024)} MiB`,
  );
  assert.ok((after.mem_free as number) >= (before.mem_free as number) + returned / 2, 'the domain sees the memory come back');

  const limits = new CgroupLimits();
  const sample = (await h.collect())[0]!;
  const usage = after.domain_usage as number;
  await limits.setLimits(sample, { high: usage + 64 * 1024, max: usage + 128 * 1024 });
  const got = await limits.getLimits(sample);
  assert.equal(got.version, v);
  assert.ok(Math.abs((got.max as number) - (usage + 128 * 1024)) < 4 && Math.abs((got.high as number) - (usage + 64 * 1024)) < 4, JSON.stringify(got));
  // A process whose cgroup is shared with others (this test runner's) gets no per-guest limit.
  const parentLimits = new CgroupLimits();
  await assert.rejects(parentLimits.setLimits({ ...sample, props: { ...sample.props, pid: process.pid } }, { max: 1 << 20 }), /refusing|root memory cgroup/);
  await limits.setLimits(sample, { high: null, max: null });
  assert.deepEqual(await limits.getLimits(sample), { high: null, max: null, version: v });
});
