// virtio-mem on real guests, through each driver's memoryDevices capability: a lab guest with
// 256 MiB of base memory and a 256 MiB virtio-mem device (2 MiB blocks, onlined movable) touches
// 300 MiB and frees it; the device is shrunk to 64 MiB and regrown. The device's size must follow
// the request, the guest's MemTotal with it, and the QEMU's memory charge must fall by at least
// half of what was unplugged (the guest's pages were really there: without virtio-mem, memory a
// guest freed stays charged to QEMU). Transparent huge pages stay as the host has them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { findMemoryCgroup } from '../../src/host/cgroup.js';
import { LibvirtHypervisor } from '../../src/hypervisor/libvirt/index.js';
import { QmpHypervisor } from '../../src/hypervisor/qmp/index.js';
import { libvirtGuestPid, memCgroupDirOf } from '../../src/lab/cgroup.js';
import type { ConsoleSummary } from '../../src/lab/console.js';
import type { MemoryDeviceCapability } from '../../src/types.js';
import { acquireLab, skipLoudly, until, type LabSession } from './fixture.js';

const MiB = 1024; // KiB
const BASE_MIB = 256;
const VMEM = { maxMiB: 256, requestedMiB: 256, blockMiB: 2 };
const SHRUNK = 64 * MiB;
const UNPLUGGED = VMEM.maxMiB * MiB - SHRUNK;
// Touch 300 MiB (movable allocations go to the plugged, movable memory first), free it, idle.
const TOUCHED_MIB = 300;
const WORKLOAD = `alloc:${TOUCHED_MIB},touch:2,free,idle:3600`;

/** The cgroup's charge in KiB: memory.current (v2) or memory.usage_in_bytes (v1). */
function chargeKiB(dir: string): number {
  for (const f of ['memory.current', 'memory.usage_in_bytes']) {
    try {
      return Math.round(Number(readFileSync(join(dir, f), 'utf8')) / 1024);
    } catch {
      // the other cgroup version
    }
  }
  throw new Error(`no memory charge file in ${dir}`);
}

/** Rss and AnonHugePages of a process, KiB (what of the charge sits in host huge pages). */
function rollup(pid: number): { rss: number; anonHuge: number } {
  const text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const kib = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? Number.NaN);
  return { rss: kib('Rss'), anonHuge: kib('AnonHugePages') };
}

const thpSetting = () => readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8').trim();

interface Run {
  label: string;
  cap: MemoryDeviceCapability;
  guestId: string;
  pid: number;
  charge: () => number;
  console: () => ConsoleSummary;
}

const lastTotal = (c: ConsoleSummary) => c.meminfo.at(-1)?.totalKiB ?? Number.NaN;

async function shrinkAndRegrow(r: Run): Promise<void> {
  await until(`${r.label}: the workload to touch and free ${TOUCHED_MIB} MiB`, 240_000, () =>
    r.console().phases.some((p) => p.op === 'idle' && p.arg === 3600),
  );
  assert.ok(['loaded', 'builtin'].includes(r.console().modules.virtio_mem ?? ''), `${r.label}: the guest's virtio_mem driver is loaded`);
  const [dev, ...more] = await r.cap.list(r.guestId);
  assert.equal(more.length, 0, 'one virtio-mem device');
  assert.deepEqual({ ...dev, id: typeof dev!.id }, { id: 'string', size: 256 * MiB, requested: 256 * MiB, block: 2 * MiB, max: 256 * MiB });
  const totalBefore = lastTotal(r.console());
  const before = r.charge();
  const rollBefore = rollup(r.pid);
  assert.ok(before >= TOUCHED_MIB * MiB, `${r.label}: QEMU charged ${before} KiB after the guest touched ${TOUCHED_MIB} MiB`);

  const t0 = Date.now();
  await r.cap.resize(r.guestId, dev!.id, SHRUNK);
  const shrunk = await until(`${r.label}: size to reach ${SHRUNK} KiB`, 120_000, async () => {
    const d = (await r.cap.list(r.guestId))[0]!;
    return d.size === SHRUNK ? d : null;
  });
  const shrinkMs = Date.now() - t0;
  assert.equal(shrunk.requested, SHRUNK);
  // QEMU discards each block as the guest unplugs it; give the charge a moment to settle.
  const after = await until(`${r.label}: the charge to fall`, 30_000, () => {
    const c = r.charge();
    return before - c >= UNPLUGGED / 2 ? c : null;
  }).catch(() => r.charge());
  const rollAfter = rollup(r.pid);
  const totalShrunk = await until(`${r.label}: the guest's MemTotal to shrink`, 30_000, () => {
    const t = lastTotal(r.console());
    return totalBefore - t >= UNPLUGGED / 2 ? t : null;
  }).catch(() => lastTotal(r.console()));

  await r.cap.resize(r.guestId, dev!.id, 256 * MiB);
  const regrown = await until(`${r.label}: size back to 256 MiB`, 120_000, async () => {
    const d = (await r.cap.list(r.guestId))[0]!;
    return d.size === 256 * MiB ? d : null;
  });
  const totalRegrown = await until(`${r.label}: the guest's MemTotal back`, 30_000, () => {
    const t = lastTotal(r.console());
    return t >= totalBefore - 2 * MiB ? t : null;
  }).catch(() => lastTotal(r.console()));

  console.log(
    `virtio-mem ${r.label}: ${JSON.stringify({
      thp: thpSetting(),
      requested_kib: [256 * MiB, SHRUNK, 256 * MiB],
      plugged_kib: [dev!.size, shrunk.size, regrown.size],
      shrink_ms: shrinkMs,
      charge_kib: { before, after, fell: before - after, unplugged: UNPLUGGED },
      qemu_rss_kib: { before: rollBefore.rss, after: rollAfter.rss },
      qemu_anon_huge_kib: { before: rollBefore.anonHuge, after: rollAfter.anonHuge },
      guest_memtotal_kib: { before: totalBefore, shrunk: totalShrunk, regrown: totalRegrown },
    })}`,
  );
  assert.ok(before - after >= UNPLUGGED / 2, `${r.label}: charge fell ${before - after} KiB for ${UNPLUGGED} KiB unplugged (${before} -> ${after})`);
  assert.ok(totalBefore - totalShrunk >= UNPLUGGED / 2, `${r.label}: guest MemTotal ${totalBefore} -> ${totalShrunk} KiB`);
  assert.equal(regrown.requested, 256 * MiB);
  assert.ok(totalRegrown >= totalBefore - 2 * MiB, `${r.label}: guest MemTotal back to ${totalRegrown} KiB (was ${totalBefore})`);
}

test('virtio-mem through the QMP driver: shrink and regrow a lab guest, its QEMU charge falls with the unplug', async (t) => {
  const self = await findMemoryCgroup('/', 'self');
  if (!self) return skipLoudly(t, 'no memory cgroup controller mounted');
  const session: LabSession | null = await acquireLab(t, { libvirt: false });
  if (!session) return;
  t.after(() => session.release());
  // QEMU in a cgroup of its own, joined before the guest touches memory: its charge is all QEMU's.
  const dir = join(self.mountPoint, `ballast-vmem-${process.pid}`);
  mkdirSync(dir, { recursive: true });
  if (self.version === 2) writeFileSync(join(self.mountPoint, 'cgroup.subtree_control'), '+memory');
  t.after(async () => {
    for (let i = 0; i < 50; i++) {
      try {
        rmdirSync(dir);
        return;
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  });
  const g = await session.startQemu({ memMiB: BASE_MIB, workload: WORKLOAD, guestAgent: false, memCgroup: dir, virtioMem: VMEM });
  const h = new QmpHypervisor({ sockets: [{ socket: g.qmpSocket, name: 'vmem' }] });
  t.after(() => h.close());
  await h.connect();
  await shrinkAndRegrow({
    label: 'qmp',
    cap: h.capabilities.memoryDevices!,
    guestId: 'vmem',
    pid: g.pid,
    charge: () => chargeKiB(dir),
    console: () => session.consoleOf(g.consoleLog),
  });
});

test('virtio-mem through the libvirt driver: shrink and regrow a lab domain, its QEMU charge falls with the unplug', async (t) => {
  const session = await acquireLab(t);
  if (!session) return;
  t.after(() => session.release());
  const [g] = await session.startGuests({ count: 1, memMiB: BASE_MIB, workload: WORKLOAD, guestAgent: false, virtioMem: VMEM });
  const pid = libvirtGuestPid(g!.name);
  assert.ok(pid, `QEMU pid of ${g!.name}`);
  const dir = memCgroupDirOf(pid);
  const h = new LibvirtHypervisor({ statsPeriodSec: 0 });
  t.after(() => h.close());
  await h.connect();
  const sample = (await h.collect()).find((s) => s.name === g!.name);
  assert.ok(sample, `${g!.name} among the driver's guests`);
  await shrinkAndRegrow({
    label: 'libvirt',
    cap: h.capabilities.memoryDevices!,
    guestId: sample.id,
    pid,
    charge: () => chargeKiB(dir),
    console: () => session.consoleOf(g!.name),
  });
});
