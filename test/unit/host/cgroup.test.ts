// cgroup lookup, memory domains and per-guest limits on fake v1 / v2 trees laid out like the
// kernel's (plain files: writing behaviour on a real cgroup is in test/lab/host-kernel.test.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findMemoryCgroup, limitBytesToKiB, parseMountinfo, parseProcCgroup } from '../../../src/host/cgroup.js';
import { domainStats, MemoryDomainSource, readDomain } from '../../../src/host/memory-domain.js';
import { CgroupLimits, limitText, limitFiles } from '../../../src/host/cgroup-limits.js';
import type { GuestSample } from '../../../src/types.js';

const LIVE = join(import.meta.dirname, 'fixtures', 'live');
const MiB = 1024 * 1024;

function put(root: string, path: string, text: string) {
  const p = join(root, path);
  mkdirSync(join(p, '..'), { recursive: true });
  writeFileSync(p, text);
}

/** A v2 host: machine.slice limited to 1 GiB, with one guest scope inside; v1 hierarchies absent. */
function v2Tree(): string {
  const root = mkdtempSync(join(tmpdir(), 'ballast-cg2-'));
  put(
    root,
    'proc/self/mountinfo',
    '30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n',
  );
  put(root, 'sys/fs/cgroup/cgroup.controllers', 'cpuset cpu io memory hugetlb pids rdma misc\n');
  put(root, 'sys/fs/cgroup/cgroup.procs', '1\n');
  const slice = 'sys/fs/cgroup/machine.slice';
  put(root, `${slice}/cgroup.procs`, '');
  put(root, `${slice}/memory.max`, `${1024 * MiB}\n`);
  put(root, `${slice}/memory.swap.max`, 'max\n');
  put(root, `${slice}/memory.current`, `${600 * MiB}\n`);
  put(root, `${slice}/memory.swap.current`, `${50 * MiB}\n`);
  put(root, `${slice}/memory.stat`, `anon ${400 * MiB}\nfile ${150 * MiB}\nkernel 1000\nshmem 0\npgmajfault 12\n`);
  put(root, `${slice}/memory.events`, 'low 0\nhigh 3\nmax 7\noom 1\noom_kill 1\noom_group_kill 0\n');
  put(root, `${slice}/memory.pressure`, 'some avg10=12.50 avg60=3.00 avg300=1.00 total=999\nfull avg10=4.00 avg60=1.25 avg300=0.50 total=333\n');
  const scope = `${slice}/machine-qemu\\x2d1\\x2dvm1.scope`;
  put(root, `${scope}/cgroup.procs`, '4242\n');
  put(root, `${scope}/memory.max`, 'max\n');
  put(root, `${scope}/memory.high`, 'max\n');
  put(root, `${scope}/memory.current`, `${300 * MiB}\n`);
  put(root, `${scope}/memory.stat`, `anon ${250 * MiB}\nfile ${20 * MiB}\n`);
  put(root, 'proc/4242/cgroup', '0::/machine.slice/machine-qemu\\x2d1\\x2dvm1.scope\n');
  put(root, 'proc/4343/cgroup', '0::/machine.slice\n');
  put(root, 'proc/meminfo', 'MemTotal: 4000000 kB\nMemFree: 100 kB\nSwapTotal: 2097152 kB\nSwapFree: 2000000 kB\n');
  return root;
}

const guest = (pid: number, name = 'vm1'): GuestSample => ({ id: name, name, props: { pid }, stats: {} });

test("/proc/PID/cgroup and mountinfo parse, on this machine's files", () => {
  const lines = parseProcCgroup(readFileSync(join(LIVE, 'proc/self-cgroup.txt'), 'utf8'));
  const mem = lines.find((l) => l.controllers.includes('memory'))!;
  assert.match(mem.path, /^\/process_api\//);
  assert.deepEqual(
    lines.find((l) => l.id === 0),
    { id: 0, controllers: [], path: '/' },
  );
  const mounts = parseMountinfo(readFileSync(join(LIVE, 'proc/self-mountinfo.txt'), 'utf8'));
  assert.deepEqual(
    mounts.find((m) => m.controllers.includes('memory')),
    { root: '/', mountPoint: '/sys/fs/cgroup/memory', version: 1, controllers: ['memory'] },
  );
  assert.equal(mounts.find((m) => m.version === 2)?.mountPoint, '/sys/fs/cgroup/unified');
  assert.deepEqual(mounts.find((m) => m.controllers.includes('name=systemd'))?.controllers, ['name=systemd']);
  assert.throws(() => parseProcCgroup('nonsense'), /cannot read line/);
});

test('limits: "max", v1\'s huge "unlimited", bytes -> KiB; KiB -> file text', () => {
  assert.equal(limitBytesToKiB('max\n'), null);
  assert.equal(limitBytesToKiB('9223372036854771712\n'), null);
  assert.equal(limitBytesToKiB(`${64 * MiB}`), 65536);
  assert.throws(() => limitBytesToKiB('lots'), /cannot read/);
  assert.equal(limitText(65536, limitFiles(2)), String(64 * MiB));
  assert.equal(limitText(null, limitFiles(2)), 'max');
  assert.equal(limitText(null, limitFiles(1)), '-1');
  assert.throws(() => limitText(-5, limitFiles(1)), /non-negative/);
});

test("v2: a guest's cgroup found from its pid; the domain reads limit, usage, cache, swap, events", async (t) => {
  const root = v2Tree();
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const cg = await findMemoryCgroup(root, 4242);
  assert.equal(cg?.version, 2);
  assert.equal(cg?.dir, join(root, 'sys/fs/cgroup/machine.slice/machine-qemu\\x2d1\\x2dvm1.scope'));
  const src = new MemoryDomainSource({ root, pid: 4343 });
  const s = await src.collect();
  assert.equal(s.mem_available, 1024 * 1024);
  assert.equal(s.mem_unused, (1024 - 600) * 1024);
  assert.equal(s.mem_free, (1024 - 600 + 150) * 1024);
  assert.equal(s.anon_pages, 400 * 1024);
  assert.equal(s.swap_total, 2097152, "unlimited swap.max: the host's swap");
  assert.equal(s.swap_usage, 50 * 1024);
  assert.equal(s.domain_oom_kill, 1);
  assert.equal(s.domain_events_high, 3);
  assert.equal(s.domain_psi_some_avg10, 12.5, "the cgroup's own pressure");
  assert.equal(s.domain_psi_full_avg60, 1.25);
  // The scope has no limit of its own; its parent's 1 GiB is its effective limit.
  const scope = await readDomain(join(root, 'sys/fs/cgroup/machine.slice/machine-qemu\\x2d1\\x2dvm1.scope'), join(root, 'sys/fs/cgroup'));
  assert.equal(scope.limit, 1024 * 1024);
});

test('domain fields: unlimited cgroup is the whole host; free never exceeds the limit', () => {
  const base = { version: 2 as const, usage: 1000, fileCache: 5000, anon: 10, swapLimit: null, swapUsage: 0, events: {} };
  const host = { memTotal: 8000, swapTotal: 100 };
  assert.equal(domainStats({ ...base, limit: null }, host).mem_available, 8000);
  assert.equal(domainStats({ ...base, limit: 4000 }, host).mem_free, 4000, 'cache counted as free, capped at the limit');
  assert.equal(domainStats({ ...base, limit: 500 }, host).mem_unused, 0, 'usage above the limit: nothing unused, not negative');
  assert.equal(domainStats({ ...base, limit: 4000, swapLimit: 40 }, host).swap_total, 40);
});

test('v1 domain: hierarchical limit, total_cache, memsw swap, oom_control', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'ballast-cg1-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const d = join(root, 'lab');
  put(root, 'lab/memory.usage_in_bytes', `${300 * MiB}\n`);
  put(root, 'lab/memory.limit_in_bytes', '9223372036854771712\n');
  put(root, 'lab/memory.memsw.limit_in_bytes', `${768 * MiB}\n`);
  put(root, 'lab/memory.memsw.usage_in_bytes', `${320 * MiB}\n`);
  put(
    root,
    'lab/memory.stat',
    `cache 1\nrss 2\ntotal_cache ${40 * MiB}\ntotal_rss ${250 * MiB}\nhierarchical_memory_limit ${512 * MiB}\nhierarchical_memsw_limit ${768 * MiB}\n`,
  );
  put(root, 'lab/memory.oom_control', 'oom_kill_disable 0\nunder_oom 0\noom_kill 2\n');
  put(root, 'lab/memory.failcnt', '9\n');
  const r = await readDomain(d);
  assert.equal(r.version, 1);
  assert.equal((await new MemoryDomainSource({ dir: d, root: LIVE }).collect()).domain_psi_some_avg10, null, 'v1: no per-cgroup pressure');
  assert.equal(r.limit, 512 * 1024, "own limit unlimited, parent's 512 MiB applies");
  assert.equal(r.swapLimit, 256 * 1024);
  assert.equal(r.swapUsage, 20 * 1024, 'memsw usage minus memory usage');
  assert.equal(r.fileCache, 40 * 1024);
  assert.equal(r.anon, 250 * 1024);
  assert.deepEqual(r.events, { oom_kill: 2, max: 9 });
  await assert.rejects(readDomain(root), /not a memory cgroup/);
});

test('v2 per-guest limits: mem_high / mem_max written in bytes, null removes, restore puts back', async (t) => {
  const root = v2Tree();
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const scope = join(root, 'sys/fs/cgroup/machine.slice/machine-qemu\\x2d1\\x2dvm1.scope');
  const cg = new CgroupLimits({ root });
  await cg.setLimits(guest(4242), { high: 200 * 1024, max: 256 * 1024 });
  assert.equal(readFileSync(join(scope, 'memory.high'), 'utf8'), String(200 * MiB));
  assert.equal(readFileSync(join(scope, 'memory.max'), 'utf8'), String(256 * MiB));
  assert.deepEqual(await cg.getLimits(guest(4242)), { high: 200 * 1024, max: 256 * 1024, version: 2 });
  await cg.setLimits(guest(4242), { high: null });
  assert.equal(readFileSync(join(scope, 'memory.high'), 'utf8'), 'max');
  await cg.restore();
  assert.equal(readFileSync(join(scope, 'memory.max'), 'utf8'), 'max');
});

test('per-guest limits refuse shared cgroups, unknown pids and the root cgroup', async (t) => {
  const root = v2Tree();
  t.after(() => rmSync(root, { recursive: true, force: true }));
  put(root, 'proc/4343/cgroup', '0::/machine.slice\n');
  put(root, 'sys/fs/cgroup/machine.slice/cgroup.procs', '4343\n4444\n');
  put(root, 'proc/1/cgroup', '0::/\n');
  const cg = new CgroupLimits({ root });
  await assert.rejects(cg.setLimits(guest(4343), { max: 1000 }), /also holds process\(es\) 4444; refusing/);
  await assert.rejects(cg.setLimits(guest(1), { max: 1000 }), /root memory cgroup/);
  await assert.rejects(cg.setLimits(guest(77777), { max: 1000 }), /has no memory cgroup/);
  await assert.rejects(cg.setLimits({ ...guest(0), props: {} }, { max: 1000 }), /no QEMU pid/);
  // A libvirt guest: no props.pid, its PID file names the QEMU process.
  put(root, 'run/libvirt/qemu/vm1.pid', '4242');
  put(root, 'proc/4242/status', 'Name:\tqemu-system-x86\nTgid:\t4242\n');
  await cg.setLimits({ id: 'u', name: 'vm1', props: { uuid: 'u' }, stats: {} }, { max: 300 * 1024 });
  assert.equal(readFileSync(join(root, 'sys/fs/cgroup/machine.slice/machine-qemu\\x2d1\\x2dvm1.scope/memory.max'), 'utf8'), String(300 * MiB));
  put(root, 'run/libvirt/qemu/gone.pid', '5555');
  await assert.rejects(cg.setLimits({ id: 'g', name: 'gone', props: {}, stats: {} }, { max: 1 }), /no QEMU pid known/, 'a stale PID file is no pid');
  await new CgroupLimits({ root, allowShared: true }).setLimits(guest(4343), { max: 2048 });
  assert.equal(readFileSync(join(root, 'sys/fs/cgroup/machine.slice/memory.max'), 'utf8'), String(2 * MiB));
});
