// Collections between two policy cycles feed only the guard pass; the loop lets one pass when no
// guard could act before the cycle (Engine.guardsWatch, the balloon's balloonWatch): no guest
// just inflated, none growing into its floor's urgent band, no stale sample, no stall.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { balloonWatch } from '../../../src/controls/balloon/between.js';
import { defaultSafeguards } from '../../../src/controls/floor.js';
import { reclaim } from '../../../src/controls/reclaim/index.js';
import { CONTROLS } from '../../../src/controls/registry.js';
import { vmem } from '../../../src/controls/vmem/index.js';
import { Engine } from '../../../src/engine/engine.js';
import { History } from '../../../src/engine/history.js';
import { Loop, type Steppable } from '../../../src/engine/loop.js';
import type { CollectReport, CycleReport } from '../../../src/engine/reports.js';
import type { HostSource, Stats } from '../../../src/types.js';
import { evaluateFn, FakeHypervisor, guest, MiB, targetPolicy, type FnPolicy } from './fakes.js';

const sg = defaultSafeguards;

/** A guest sampled every 2 s whose use grows by `perSampleMiB`, its balloon at its floor. */
function ramp(perSampleMiB: number, samples = 3) {
  const h = new History(10);
  const max = 1024 * MiB;
  const lastUsed = 300 * MiB;
  for (let i = samples - 1; i >= 0; i--) {
    const used = lastUsed - i * perSampleMiB * MiB;
    // Raised to its floor (used + headroom) at the latest sample.
    const cur = lastUsed + sg.headroomKiB;
    h.push({ balloon_cur: cur, balloon_max: max, mem_unused: cur - used }, (samples - 1 - i) * 2);
  }
  return h;
}

test('balloonWatch: a guest ramping at its floor slower than half its headroom per horizon needs no look; a faster one does', () => {
  const base = { props: { name: 'g' }, state: undefined, cycle: 10, now: 4, safeguards: sg };
  // 15 MiB every 4 s (the lab's ramp): 15 MiB by the cycle's collection 4 s on, under 32 MiB.
  assert.equal(balloonWatch({ ...base, history: ramp(7.5), horizonS: 4 }), null);
  // 20 MiB every 2 s: 40 MiB by then, more than half its 64 MiB headroom.
  assert.match(balloonWatch({ ...base, history: ramp(20), horizonS: 4 }) ?? '', /growing 40 MiB by the next cycle would leave it under half its headroom/);
  // The same growth over a shorter horizon stays clear.
  assert.equal(balloonWatch({ ...base, history: ramp(20), horizonS: 1.5 }), null);
  // Shrinking use never calls for a look.
  assert.equal(balloonWatch({ ...base, history: ramp(-30), horizonS: 4 }), null);
  assert.match(balloonWatch({ ...base, history: ramp(0, 1), horizonS: 4 }) ?? '', /too few samples/);
  const noUse = new History(10);
  noUse.push({ balloon_cur: 1, balloon_max: 2 }, 0);
  noUse.push({ balloon_cur: 1, balloon_max: 2 }, 2);
  assert.match(balloonWatch({ ...base, history: noUse, horizonS: 4 }) ?? '', /not known/);
});

test('balloonWatch: an inflation is watched once it shows half of what would roll it back, for its window; a guest another manager holds is not', () => {
  const h = (swapInKiBPerS: number, faultsPerS = 0) => {
    const x = new History(10);
    const s = { balloon_cur: 500 * MiB, balloon_max: 1024 * MiB, mem_unused: 200 * MiB };
    x.push({ ...s, swap_in: 0, major_fault: 0 }, 0);
    x.push({ ...s, swap_in: swapInKiBPerS * 2, major_fault: faultsPerS * 2 }, 2);
    return x;
  };
  const base = { props: { name: 'g' }, now: 2, safeguards: sg, horizonS: 4 };
  const inflated = { guard: { lastInflation: { cycle: 7, at: 0, step: 10 * MiB } } };
  const halfSwap = sg.rollbackSwapInKiBPerS / 2;
  assert.equal(balloonWatch({ ...base, history: h(0), state: inflated, cycle: 8 }), null, 'no sign of hurting');
  assert.equal(balloonWatch({ ...base, history: h(halfSwap), state: inflated, cycle: 8 }), null, 'at half, not above');
  assert.match(
    balloonWatch({ ...base, history: h(halfSwap + 512), state: inflated, cycle: 8 }) ?? '',
    /^swap_in 2560 KiB\/s > 2048 KiB\/s after inflating by 10 MiB 1 cycle\(s\) ago: halfway to a rollback$/,
  );
  assert.match(balloonWatch({ ...base, history: h(0, sg.rollbackMajorFaultsPerS), state: inflated, cycle: 8 }) ?? '', /major_fault 1000\/s > 500\/s/);
  assert.equal(balloonWatch({ ...base, history: h(halfSwap + 512), state: inflated, cycle: 8 + sg.rollbackWindow }), null, 'after its window');
  const held = { guard: {}, movedByOther: { at: 0, from: 1, to: 2, ours: 1, until: 100 } };
  assert.equal(balloonWatch({ ...base, history: ramp(40), state: held, cycle: 1 }), null);
});

test('Engine.guardsWatch: quiet guests need no look; an inflation, a jump, a stale guest or a host stall do; paused, nothing does', async () => {
  let t = 0;
  let host: Stats = { mem_available: 8192 * MiB, mem_free: 4000 * MiB, psi_some_avg10: 0 };
  const src: HostSource = { name: 'meminfo', watch: true, collect: async () => ({ ...host }) };
  const hv = new FakeHypervisor([guest('a'), guest('b')]);
  let target: number | undefined;
  const engine = new Engine<FnPolicy>({
    hypervisor: hv,
    hostSources: [src],
    policy: targetPolicy((_s, name) => (name === 'a' ? target : undefined)),
    evaluate: evaluateFn,
    now: () => t,
  });
  const step = async (cycle: boolean) => {
    t += 2;
    await engine.collect();
    if (cycle) await engine.evaluateAndAct();
  };
  await step(true);
  await step(true);
  assert.equal(engine.guardsWatch(4), null);

  // An inflation that makes a swap: watched until its rollback window ends.
  target = 1900 * MiB;
  await step(true);
  assert.equal(engine.guardsWatch(4), null, 'inflated, no sign of hurting yet');
  hv.guests.get('id-a')!.stats.swap_in = 40 * MiB;
  await step(false);
  assert.match(engine.guardsWatch(4) ?? '', /^a: swap_in \d+ KiB\/s > 2048 KiB\/s after inflating by 148 MiB 0 cycle\(s\) ago: halfway to a rollback/);
  target = undefined;
  await step(true);
  assert.equal(engine.counters.rollbacks, 1, 'the cycle rolled it back');
  hv.guests.get('id-a')!.stats.swap_in = 80 * MiB;
  await step(false);
  assert.equal(engine.guardsWatch(4), null, 'rolled back: nothing left to watch');

  // b's use jumps by 600 MiB in one interval: at that pace it is short before the cycle.
  hv.guests.get('id-b')!.stats.mem_unused = 424 * MiB;
  await step(false);
  assert.match(engine.guardsWatch(4) ?? '', /^b: growing .* under half its headroom/);
  hv.guests.get('id-b')!.stats.mem_unused = 424 * MiB;
  await step(false);
  assert.equal(engine.guardsWatch(4), null, 'it stopped growing');

  hv.failCollect = 'libvirtd gone';
  await step(false);
  assert.match(engine.guardsWatch(4) ?? '', /^a: sample stale/);
  hv.failCollect = undefined;
  await step(false);
  await step(false);
  assert.equal(engine.guardsWatch(4), null);

  host = { ...host, psi_some_avg10: 3 };
  await step(false);
  assert.match(engine.guardsWatch(4) ?? '', /^host: memory stall/);
  host = { ...host, psi_some_avg10: 0 };
  await step(false);
  assert.equal(engine.guardsWatch(4), null);

  engine.pausedReason = 'operator';
  hv.guests.get('id-b')!.stats.mem_unused = 64 * MiB;
  await step(false);
  assert.equal(engine.guardsWatch(4), null, 'paused: a guard pass would do nothing');
  engine.pausedReason = undefined;
  assert.match(engine.guardsWatch(4) ?? '', /^b: growing/);
  engine.dispose();
});

test('Loop: a collection between two policy cycles passes with a peek when the guards need no look; the one before a cycle never does', async (t) => {
  t.mock.timers.enable({ apis: ['setInterval'] });
  const clock = { t: 0 };
  const log: string[] = [];
  const horizons: number[] = [];
  let watch: string | null = null;
  let moved: string | null = null;
  const e: Steppable = {
    collect: async () => {
      log.push(`c${clock.t}`);
      return { time: clock.t, guests: 0, appeared: [], vanished: [], errors: [] } as CollectReport;
    },
    evaluateAndAct: async () => {
      log.push(`p${clock.t}`);
      return { cycle: 0, time: clock.t } as unknown as CycleReport;
    },
    guardsWatch: (h) => {
      horizons.push(h);
      return watch;
    },
    peek: async () => {
      log.push(`k${clock.t}`);
      return moved;
    },
    onCollect: () => () => {},
    onCycle: () => () => {},
  };
  const flush = async () => {
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  };
  const run = async (opts: { statsIntervalS: number; policyIntervalS: number; calmStride: number }, seconds: number) => {
    const loop = new Loop(e, opts);
    clock.t = 0;
    loop.start();
    await flush();
    for (let s = 0; s < seconds; s++) {
      clock.t++;
      t.mock.timers.tick(1000);
      await flush();
    }
    await loop.stop();
    return log.splice(0).join(' ');
  };
  const twoToOne = { statsIntervalS: 1, policyIntervalS: 2, calmStride: 4 };
  // Before the first cycle every interval is collected; then t3, t5 pass with a peek.
  assert.equal(await run(twoToOne, 6), 'c0 c1 c2 p2 k3 c4 p4 k5 c6 p6');
  assert.deepEqual([...new Set(horizons.splice(0))], [2], 'from the last sample to the collection before the next cycle');
  moved = 'free memory fell';
  assert.equal(await run(twoToOne, 4), 'c0 c1 c2 p2 k3 c3 c4 p4', 'the host moved: collected after all');
  moved = null;
  watch = 'a: inflated';
  assert.equal(await run(twoToOne, 4), 'c0 c1 c2 p2 c3 c4 p4', 'a guard may act: collected');
  watch = null;
  assert.equal(await run({ ...twoToOne, calmStride: 1 }, 4), 'c0 c1 c2 p2 c3 c4 p4', 'calm_stride 1: every interval');
  horizons.length = 0;
  // Policy 3 s, stats 2 s: t4 passes (t6 comes before the cycle at t6); t2 and t8 do not.
  assert.equal(await run({ statsIntervalS: 2, policyIntervalS: 3, calmStride: 4 }, 12), 'c0 c2 p3 k4 c6 p6 c8 p9 k10 c12 p12');
  assert.deepEqual([...new Set(horizons.splice(0))], [4]);
});

test('between cycles, the other guest planners: virtio-mem looks at a guest with a device every interval, reclaim never', () => {
  const withDevice = new History(10);
  withDevice.push({ vmem_size: 256 * MiB, vmem_requested: 256 * MiB, vmem_block: 2 * MiB, vmem_max: 512 * MiB }, 0);
  const without = new History(10);
  without.push({ vmem_size: null, vmem_requested: null, vmem_block: null, vmem_max: null }, 0);
  const base = { props: { name: 'g' }, state: undefined, cycle: 1, now: 0, safeguards: sg, horizonS: 4 };
  assert.match(vmem.betweenCycles!({ ...base, history: withDevice }) ?? '', /virtio-mem device/);
  assert.equal(vmem.betweenCycles!({ ...base, history: without }), null);
  assert.equal(reclaim.betweenCycles!({ ...base, history: withDevice }), null);
  // Every other module with a guest planner says something: none is left to the default.
  for (const m of CONTROLS) if (m.planGuest) assert.ok(m.betweenCycles, `${m.name} plans guest by guest but has no betweenCycles`);
});
