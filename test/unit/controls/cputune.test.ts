// MOM's CpuTune as a control module: guarded values, carried out per driver, read back as the
// guest fields vcpu_quota / vcpu_period the next cycle's policy sees.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { guardCpuTune } from '../../../src/controls/cputune/guard.js';
import { cgroupCpuTune, cgroupV2Mounted, cpuMaxFile } from '../../../src/host/cgroup-cpu.js';
import { Engine } from '../../../src/engine/engine.js';
import { compilePolicyText } from '../../../src/engine/policy-adapter.js';
import { memoryLogger } from '../../../src/log/logger.js';
import { SimHypervisor, simHostSource } from '../../../src/hypervisor/sim/index.js';
import { loadScenario } from '../../../src/sim/scenarios.js';
import { SimWorld } from '../../../src/sim/world.js';
import type { ControlEnv, ControlModule } from '../../../src/controls/control.js';
import type { GuestSample, Stats } from '../../../src/types.js';

test("guard: libvirt's ranges; -1 (or any negative quota) is no limit; MOM's fractional values are rounded", () => {
  assert.deepEqual(guardCpuTune('vcpu_quota', -1).value, -1);
  assert.equal(guardCpuTune('vcpu_quota', 50000.4).value, 50000);
  assert.equal(guardCpuTune('vcpu_quota', 999).verdict, 'veto');
  assert.equal(guardCpuTune('vcpu_period', 100000).value, 100000);
  assert.equal(guardCpuTune('vcpu_period', 999).verdict, 'veto');
  assert.equal(guardCpuTune('vcpu_period', 2_000_000).verdict, 'veto');
  assert.equal(guardCpuTune('vcpu_quota', 'lots').verdict, 'veto');
});

// oVirt's 04-cputune logic in short: a guest limited to 50% of the host's CPUs, spread over its vCPUs.
const POLICY = `(defvar period 100000)
(with Guests guest {
  (defvar quota (/ (* 0.5 (* period Host.cpu_count)) guest.vcpu_count))
  (if (!= guest.vcpu_quota quota) (guest.Control "vcpu_quota" quota) 0)
  (if (!= guest.vcpu_period period) (guest.Control "vcpu_period" period) 0)
})
`;

function simEngine(sections?: Record<string, unknown>) {
  const world = new SimWorld(loadScenario('demo'), 1);
  const logger = memoryLogger();
  const engine = new Engine({
    hypervisor: new SimHypervisor(world),
    hostSources: [simHostSource(world)],
    policy: compilePolicyText(POLICY),
    now: () => world.now,
    logger,
    sections,
  });
  return { world, engine, logger };
}

test("on the simulated host: the policy's quota and period are applied, then read back as guest fields, and not set again", async () => {
  const { world, engine } = simEngine();
  world.advance(5);
  await engine.collect();
  const first = await engine.evaluateAndAct();
  const tuned = first.outcomes.filter((o) => o.action.control === 'vcpu_quota' && o.result === 'applied');
  assert.ok(tuned.length >= 5, `quota applied to every guest (${tuned.length})`);
  const cpus = engine.snapshot().host.stats.cpu_count as number;
  for (const o of tuned) {
    const g = engine.snapshot().guests.find((x) => x.name === o.action.entity)!;
    assert.equal(o.action.to, Math.round((0.5 * 100000 * cpus) / (g.stats.vcpu_count as number)));
  }
  world.advance(5);
  await engine.collect();
  for (const g of engine.snapshot().guests) {
    const o = tuned.find((x) => x.action.entity === g.name);
    if (o) assert.equal(g.stats.vcpu_quota, o.action.to, `${g.name}: the value in force is read back`);
    assert.equal(g.stats.vcpu_period, 100000);
  }
  const second = await engine.evaluateAndAct();
  assert.equal(second.outcomes.filter((o) => o.action.control.startsWith('vcpu_')).length, 0, 'in force: the policy asks nothing more');
});

test('cputune.enabled = false: the controls are vetoed (quietly), nothing is set', async () => {
  const { world, engine } = simEngine({ cputune: { enabled: false } });
  world.advance(5);
  await engine.collect();
  const r = await engine.evaluateAndAct();
  assert.equal(r.outcomes.filter((o) => o.action.control.startsWith('vcpu_')).length, 0);
  const notes = r.notes.filter((n) => n.control === 'vcpu_quota');
  assert.ok(notes.length > 0 && notes.every((n) => n.verdict === 'veto' && n.quiet), 'vetoed, quietly');
});

test("without libvirt: the QEMU process's cgroup v2 cpu.max holds quota x vCPUs; root cgroup and v1 are refused clearly", async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'ballast-cpumax-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(join(root, 'proc/41'), { recursive: true });
  writeFileSync(join(root, 'proc/41/cgroup'), '0::/machine.slice/vm1.scope\n');
  mkdirSync(join(root, 'sys/fs/cgroup/machine.slice/vm1.scope'), { recursive: true });
  const file = join(root, 'sys/fs/cgroup/machine.slice/vm1.scope/cpu.max');
  writeFileSync(file, 'max 100000\n');
  const guest: GuestSample = { id: 'vm1', name: 'vm1', props: { pid: 41 }, stats: { vcpu_count: 2 } };
  const b = cgroupCpuTune((id) => (id === 'vm1' ? { pid: Number(guest.props.pid), vcpus: guest.stats.vcpu_count as number } : undefined), root);
  assert.deepEqual(await b.read('vm1'), { quota: -1, period: 100000 });
  await b.write('vm1', { quota: 25000, period: 50000 });
  assert.equal(readFileSync(file, 'utf8'), '50000 50000\n', 'per-vCPU quota times 2 vCPUs');
  assert.deepEqual(await b.read('vm1'), { quota: 25000, period: 50000 });
  await b.write('vm1', { quota: -1 });
  assert.equal(readFileSync(file, 'utf8'), 'max 50000\n');
  writeFileSync(join(root, 'proc/41/cgroup'), '0::/\n');
  await assert.rejects(cpuMaxFile(root, 41), /root cgroup/);
  writeFileSync(join(root, 'proc/41/cgroup'), '4:cpu,cpuacct:/x\n');
  await assert.rejects(cpuMaxFile(root, 41), /cgroup v2/);
  await assert.rejects(b.read('nope'), /pid is not known/);
  assert.equal(cgroupV2Mounted(root), false, 'no cgroup.controllers: not a v2 mount');
  writeFileSync(join(root, 'sys/fs/cgroup/cgroup.controllers'), 'cpu memory\n');
  assert.equal(cgroupV2Mounted(root), true);
});

/** An engine on the simulated demo whose only module reads guest fields with `read`. */
function probeEngine(read: (env: ControlEnv, g: GuestSample) => Promise<Stats>) {
  const world = new SimWorld(loadScenario('demo'), 1);
  const logger = memoryLogger();
  const probe: ControlModule = {
    name: 'probe',
    scope: 'guest',
    controls: [],
    offReason: 'never off',
    guard: (control, requested) => ({ control, requested, verdict: 'veto', value: null, reasons: [] }),
    setup: (env) => ({
      controller: { name: 'probe', controls: [], apply: async () => [] },
      readGuestFields: (g: GuestSample) => read(env, g),
    }),
  };
  const engine = new Engine({
    hypervisor: new SimHypervisor(world),
    hostSources: [simHostSource(world)],
    policy: compilePolicyText('(defvar x 1)'),
    now: () => world.now,
    logger,
    controls: [probe],
  });
  return { world, logger, engine };
}

test("a new guest's fields are read in its first collection: the control env's lookup sees the collection in progress", async () => {
  // cgroupCpuTune (the QMP driver's CPU tuning) finds QEMU's pid through env.lookup; before,
  // lookup returned only the previous collection's samples, so every guest's first read
  // failed with "QEMU's pid is not known" and a warning per guest at every daemon start.
  const { world, logger, engine } = probeEngine(async (env, g) => {
    const seen = env.lookup(g.id);
    if (!seen) throw new Error(`${g.id}: not known`);
    return { probe_seen: seen.name === g.name ? 1 : 0 };
  });
  world.advance(5);
  await engine.collect();
  const guests = engine.snapshot().guests;
  assert.ok(guests.length >= 5);
  for (const g of guests) assert.equal(g.stats.probe_seen, 1, `${g.name}: read in its first collection`);
  assert.deepEqual(
    logger.records.filter((r) => r.event === 'control_fields_failed'),
    [],
  );
});

test("a module's field read that fails backs off (an hour when unsupported, else doubling up to 10 min), said once, and is read again after", async () => {
  let reads = 0;
  let fail: Error | null = Object.assign(new Error('CPU tuning is not available in session mode'), { kind: 'unsupported' });
  const { world, logger, engine } = probeEngine(async () => {
    reads++;
    if (fail) throw fail;
    return { probe_ok: 1 };
  });
  world.advance(5);
  await engine.collect();
  const guests = engine.snapshot().guests.length;
  assert.equal(reads, guests, 'one read per guest');
  for (let i = 0; i < 10; i++) {
    world.advance(5);
    await engine.collect();
  }
  assert.equal(reads, guests, 'unsupported: not asked again within the hour');
  assert.equal(logger.records.filter((r) => r.event === 'control_fields_failed').length, guests, 'said once per guest');
  fail = new Error('connection reset'); // a plain failure from now on
  world.advance(3600);
  await engine.collect();
  assert.equal(reads, 2 * guests, 'asked again after the hour');
  world.advance(300);
  await engine.collect();
  assert.equal(reads, 2 * guests, 'a failure right after a long wait backs off at the longest, 10 min');
  fail = null;
  world.advance(300);
  await engine.collect();
  assert.equal(reads, 3 * guests, 'read again after 10 min');
  assert.ok(
    engine.snapshot().guests.every((g) => g.stats.probe_ok === 1),
    'and its fields are back',
  );
});
