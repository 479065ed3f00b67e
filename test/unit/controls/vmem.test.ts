// The virtio-mem module: its guard on hand-made samples, then the module on the simulated host
// through the engine (the simulator's device behind the driver capability).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { History } from '../../../src/engine/history.js';
import { defaultSafeguards, type SafeguardConfig } from '../../../src/controls/floor.js';
import { guardVmem, SHORT_AFTER_CYCLES, type VmemState } from '../../../src/controls/vmem/guard.js';
import { Engine } from '../../../src/engine/engine.js';
import { compilePolicyText } from '../../../src/engine/policy-adapter.js';
import { SimHypervisor, simHostSource } from '../../../src/hypervisor/sim/index.js';
import { parseScenario } from '../../../src/sim/scenarios.js';
import { SimWorld } from '../../../src/sim/world.js';
import { memoryLogger } from '../../../src/log/logger.js';

const MiB = 1024;
const cfg: SafeguardConfig = { ...defaultSafeguards, headroomKiB: 64 * MiB, maxStepFraction: 0.1, rollbackWindow: 3 };
const NONE: VmemState = { guard: {} };

function hist(...samples: Record<string, number | null>[]): History {
  const h = new History(10);
  for (const [i, s] of samples.entries()) h.push(s, i * 5);
  return h;
}
const dev = (o: Record<string, number | null> = {}) => ({
  vmem_size: 1024 * MiB,
  vmem_requested: 1024 * MiB,
  vmem_block: 2 * MiB,
  vmem_max: 1024 * MiB,
  mem_unused: 900 * MiB,
  swap_in: 0,
  major_fault: 0,
  ...o,
});
const guard = (h: History, requested: unknown, state = NONE, cycle = 10, now = 50, stale?: string) =>
  guardVmem({ history: h, requested, state, cycle, now, stale }, cfg);

test('vmem guard: an unplug takes whole blocks, one step a cycle, only from free memory above headroom', () => {
  // Step: 10% of 1 GiB, rounded down to blocks (102 MiB); the request was 0.
  const d = guard(hist(dev()), 0);
  assert.equal(d.verdict, 'apply');
  assert.equal(d.to, 1024 * MiB - 102 * MiB);
  assert.equal(d.to! % (2 * MiB), 0, 'whole blocks');
  assert.ok(d.reasons.some((r) => r.includes('rate-limited')));
  assert.deepEqual(d.next.guard.lastInflation, { cycle: 10, at: 50, step: 102 * MiB }, 'the unplug is watched for a rollback');
  // Only 100 MiB free: at most 36 MiB (free - headroom, whole blocks) goes.
  const tight = guard(hist(dev({ mem_unused: 100 * MiB + 300 })), 0);
  assert.equal(tight.to, 1024 * MiB - 36 * MiB);
  assert.ok(tight.reasons.some((r) => r.includes('free memory above headroom')));
  // A request inside a block is rounded up: the guest keeps the partial block.
  assert.equal(guard(hist(dev()), 1000 * MiB + 1).to, 1002 * MiB);
});

test('vmem guard: no unplug on a stale sample, unknown use, a hold, a stall, or while the last one is still going', () => {
  assert.match(guard(hist(dev()), 0, NONE, 10, 50, 'driver error').reasons[0]!, /stale/);
  assert.match(guard(hist(dev({ mem_unused: null })), 0).reasons[0]!, /free memory unknown/);
  assert.match(guard(hist(dev()), 0, { guard: { holdUntil: 100 } }).reasons[0]!, /backing off/);
  assert.match(guard(hist(dev({ psi_some_avg10: 50 })), 0).reasons[0]!, /stall/);
  assert.match(guard(hist(dev({ vmem_size: 1024 * MiB, vmem_requested: 900 * MiB })), 0).reasons[0]!, /still going/);
  for (const d of [guard(hist(dev()), 0, NONE, 10, 50, 'x'), guard(hist(dev({ mem_unused: null })), 0)]) assert.equal(d.verdict, 'veto');
  // Plugging is never refused for those reasons: it gives the guest memory.
  const plug = guard(hist(dev({ vmem_size: 512 * MiB, vmem_requested: 512 * MiB })), 2048 * MiB, { guard: { holdUntil: 100 } }, 10, 50, 'stale');
  assert.equal(plug.verdict, 'apply');
  assert.equal(plug.to, 1024 * MiB, 'clamped to the device maximum');
});

test('vmem guard: a guest under its headroom is plugged back unasked; a spike after an unplug plugs the step back and holds', () => {
  const low = guard(hist(dev({ vmem_size: 512 * MiB, vmem_requested: 512 * MiB, mem_unused: 20 * MiB })), undefined);
  assert.equal(low.verdict, 'apply');
  assert.equal(low.to, 512 * MiB + 44 * MiB, 'plugged by what the guest lacks of its headroom, in blocks');
  const st: VmemState = { guard: { lastInflation: { cycle: 9, at: 45, step: 100 * MiB } } };
  const h = new History(10);
  h.push(dev({ vmem_size: 900 * MiB, vmem_requested: 900 * MiB, swap_in: 0 }), 45);
  h.push(dev({ vmem_size: 900 * MiB, vmem_requested: 900 * MiB, swap_in: 500 * MiB }), 50);
  const rb = guard(h, 0, st, 10, 50);
  assert.equal(rb.verdict, 'apply');
  assert.equal(rb.to, 1000 * MiB);
  assert.match(rb.reasons[0]!, /^rollback: .*after unplugging/);
  assert.equal(rb.next.guard.holdUntil, 50 + cfg.rollbackBackoffS);
});

test('vmem guard: an unplug that stops short is reported after a few cycles and not chased', () => {
  const h = hist(dev({ vmem_size: 800 * MiB, vmem_requested: 600 * MiB }));
  let st = NONE;
  for (let c = 10; c < 10 + SHORT_AFTER_CYCLES; c++) {
    const d = guard(h, 0, st, c, c * 5);
    assert.notEqual(d.verdict, 'apply', `cycle ${c}: still waiting`);
    st = d.next;
  }
  const d = guard(h, 0, st, 10 + SHORT_AFTER_CYCLES, 100);
  assert.equal(d.verdict, 'apply');
  assert.equal(d.to, 800 * MiB, 'asks for what is plugged');
  assert.match(d.reasons[0]!, /stopped short/);
  assert.equal(d.next.guard.holdUntil, 100 + cfg.rollbackBackoffS, 'left alone a while');
  assert.equal(guard(hist(dev({ vmem_size: 800 * MiB, vmem_requested: 800 * MiB })), 0, d.next, 20, 110).verdict, 'veto', 'no new unplug during the hold');
});

test('vmem guard: never unplugs what the guest used at its recent peak, page cache counted', () => {
  // Idle now (900 MiB free of 1.5 GiB), but it used 1.3 GiB within the peak window: at most
  // 1536 - 1300 - 64 (headroom) = 172 MiB may go, in whole blocks.
  const h = hist(dev({ mem_available: 1536 * MiB }));
  const wide = { ...cfg, maxStepFraction: 1 };
  const d = guardVmem({ history: h, requested: 0, state: NONE, cycle: 10, now: 50, recent: { used: 1300 * MiB, anon: 900 * MiB } }, wide);
  assert.equal(d.verdict, 'apply');
  assert.equal(d.to, 1024 * MiB - 172 * MiB);
  assert.ok(
    d.reasons.some((r) => /unused at its peak of the last 10 min/.test(r)),
    d.reasons.join('; '),
  );
  // A peak that left no more than the headroom: nothing goes.
  const none = guardVmem({ history: h, requested: 0, state: NONE, cycle: 10, now: 50, recent: { used: 1480 * MiB, anon: null } }, wide);
  assert.equal(none.verdict, 'skip');
  // Watched for less than a whole window: no unplug yet (plugging is never held back).
  const early = guardVmem({ history: h, requested: 0, state: NONE, cycle: 10, now: 50, recent: { used: 200 * MiB, anon: null }, watchedS: 300 }, wide);
  assert.equal(early.verdict, 'veto');
  assert.match(early.reasons[0]!, /watched 300 s of the 600 s peak window/);
  // Without a remembered peak (none yet, or peak_window = 0): free memory above headroom only.
  assert.equal(guardVmem({ history: h, requested: 0, state: NONE, cycle: 10, now: 50 }, wide).to, 1024 * MiB - 836 * MiB);
});

test('vmem module on the simulated host: nothing is unplugged before a whole peak window; then a guest whose work peaks every few minutes keeps its peak plugged and never swaps for it', async () => {
  // 512 MiB base + a 1 GiB device; the workload needs 1.2 GiB for 60 s, then 100 MiB for 120 s.
  const world = new SimWorld(
    parseScenario({
      host: { memMiB: 8192, swapMiB: 1024, cpus: 4 },
      guests: [{ name: 'vm1', memMiB: 512, virtioMem: { maxMiB: 1024, blockMiB: 2 }, workload: { kind: 'memknobs', sizesMiB: [1200, 100, 100], runS: 60 } }],
    }),
    1,
  );
  const engine = new Engine({
    hypervisor: new SimHypervisor(world),
    hostSources: [simHostSource(world)],
    policy: compilePolicyText('(with Guests guest (guest.Control "vmem_target" 0))'),
    now: () => world.now,
    logger: memoryLogger(),
    safeguards: { headroomKiB: 64 * MiB },
  });
  const g = world.guests.get('vm1')!;
  let smallest = Number.POSITIVE_INFINITY;
  let unpluggedEarly = false;
  for (let i = 0; i < 240; i++) {
    world.advance(5);
    await engine.collect();
    if (i % 2 === 1) await engine.evaluateAndAct();
    // No unplug before a whole peak window (600 s) of watching: its work may not have peaked yet.
    if (world.now < 590 && g.vmem!.size < 1024 * MiB) unpluggedEarly = true;
    if (world.now > 200) smallest = Math.min(smallest, g.vmem!.size);
  }
  assert.equal(unpluggedEarly, false, 'nothing unplugged within the first peak window');
  // After its first peak the device keeps what the peak needs: base + device >= peak + headroom.
  assert.ok(512 * MiB + smallest >= 1200 * MiB, `device never below the peak's need: ${smallest / MiB} MiB`);
  assert.ok(g.vmem!.size < 1024 * MiB, 'what the peak never used was unplugged');
  assert.equal(g.c.oomKills, 0);
  assert.ok(g.c.swapInKiB < 16 * MiB, `the guest did not swap for its peak: ${g.c.swapInKiB / MiB} MiB swapped in`);
});

function vmemWorld(usedMiB: number) {
  return new SimWorld(
    parseScenario({
      host: { memMiB: 8192, swapMiB: 1024, cpus: 4 },
      guests: [
        { name: 'vm1', memMiB: 1024, virtioMem: { maxMiB: 1024, blockMiB: 2 }, workload: { kind: 'idle', anonMiB: usedMiB } },
        { name: 'plain', memMiB: 1024, workload: { kind: 'idle', anonMiB: 100 } },
      ],
    }),
    1,
  );
}

test('vmem module on the simulated host: a policy shrinks the device step by step to what the guest can spare, in whole blocks; a guest without a device is vetoed', async () => {
  const world = vmemWorld(300);
  const logger = memoryLogger();
  const engine = new Engine({
    hypervisor: new SimHypervisor(world),
    hostSources: [simHostSource(world)],
    policy: compilePolicyText('(with Guests guest (guest.Control "vmem_target" 0))'),
    now: () => world.now,
    logger,
    // A short peak window: unplugs start once the guest has been watched for one.
    safeguards: { headroomKiB: 64 * MiB, peakWindowS: 60 },
  });
  const g = world.guests.get('vm1')!;
  let applied = 0;
  let vetoPlain = false;
  for (let i = 0; i < 60; i++) {
    world.advance(5);
    await engine.collect();
    if (i % 2 === 1) {
      const r = await engine.evaluateAndAct();
      for (const o of r.outcomes) if (o.action.control === 'vmem_target' && o.result === 'applied') applied++;
      if (r.notes.some((n) => n.entity === 'plain' && n.control === 'vmem_target' && n.verdict === 'veto')) vetoPlain = true;
    }
  }
  const s = engine.snapshot().guests.find((x) => x.name === 'vm1')!.stats;
  assert.ok(applied >= 5, `several steps (${applied})`);
  assert.ok(g.vmem!.size < (1024 * MiB) / 2, `most of the device unplugged (${g.vmem!.size / MiB} MiB left)`);
  assert.equal(g.vmem!.size % (2 * MiB), 0, 'whole blocks');
  assert.equal(s.vmem_size, g.vmem!.size, 'the fields are the device as read');
  assert.ok((s.mem_unused as number) >= 64 * MiB * 0.5, `the guest kept about its headroom free (${(s.mem_unused as number) / MiB} MiB)`);
  assert.ok(vetoPlain, 'a guest without a device: its request is vetoed');
});
