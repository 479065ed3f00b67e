// Property tests: whatever the policy asks (random balloon_target expressions in the policy
// language) on whatever host (random guests whose memory use and swapping change every
// cycle), no balloon target leaves [floor, balloon_max] and no per-cycle change exceeds the
// step limit (except the documented one: a guest below its floor is raised to it at once).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Engine } from '../../../src/engine/engine.js';
import { compilePolicyText } from '../../../src/engine/policy-adapter.js';
import type { SafeguardConfig } from '../../../src/controls/balloon/guard.js';
import type { GuestSample, Stats } from '../../../src/types.js';
import { FakeHypervisor, MiB } from './fakes.js';

// The guard's bounds recomputed independently from the sample the cycle decided on.
function bounds(s: Stats, sg: SafeguardConfig) {
  const cur = s.balloon_cur as number;
  const max = s.balloon_max as number;
  const unused = s.mem_unused as number;
  const used = Math.max(0, cur - unused);
  // Cache-aware: page cache (mem_usable - mem_unused) is not used memory, when reported sanely.
  const usable = typeof s.mem_usable === 'number' && sg.cacheStepFraction !== null ? s.mem_usable : null;
  const anon = usable !== null && usable >= unused ? Math.max(0, cur - usable) : null;
  const floor = Math.min(max, Math.ceil(Math.max(sg.minGuestKiB, (s.balloon_min as number | undefined) ?? 0, (anon ?? used) + sg.headroomKiB)));
  const step = Math.max(1, Math.floor(sg.maxStepFraction * max));
  const cacheFloor = Math.ceil(Math.min(max, Math.max(floor, used + sg.headroomKiB)));
  const cacheStep = anon === null ? 0 : Math.max(1, Math.floor((sg.cacheStepFraction ?? 0) * max));
  // The lowest an inflation may go this cycle: not more than cacheStep into the cache.
  const lowest = Math.max(floor, Math.min(cur, cacheFloor) - cacheStep);
  return { cur, max, floor, step, lowest };
}

const FIELDS = [
  'guest.balloon_cur',
  'guest.balloon_max',
  'guest.mem_unused',
  'guest.balloon_min',
  'guest.mem_free',
  'Host.mem_free',
  '(guest.StatAvg "mem_unused")',
];

/** Random arithmetic over guest and host fields, as policy text. */
const exprArb: fc.Arbitrary<string> = fc.letrec<{ e: string }>((tie) => ({
  e: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constantFrom(...FIELDS),
    fc.integer({ min: -4 * 1024 * 1024, max: 16 * 1024 * 1024 }).map(String),
    fc.constantFrom('0', '-1', '1e12', '0.5', '1048576'),
    fc.tuple(fc.constantFrom('+', '-', '*', '/', 'min', 'max'), tie('e'), tie('e')).map(([op, a, b]) => `(${op} ${a} ${b})`),
    fc.tuple(tie('e'), tie('e'), tie('e'), tie('e')).map(([a, b, c, d]) => `(if (< ${a} ${b}) ${c} ${d})`),
  ),
})).e;

interface SimGuest {
  id: string;
  name: string;
  max: number;
  cur: number;
  used: number;
  swapIn: number;
  faults: number;
  bmin: number;
  /** Share of `used` that is page cache (mem_usable reported), or null (not reported). */
  cacheFrac: number | null;
}

/** A host of random guests; each cycle their use drifts and some swap. */
const hostArb = fc.record({
  guests: fc.array(
    fc.record({
      maxMiB: fc.integer({ min: 256, max: 16384 }),
      curFrac: fc.double({ min: 0.05, max: 1, noNaN: true }),
      usedFrac: fc.double({ min: 0, max: 1, noNaN: true }),
      bminMiB: fc.integer({ min: 0, max: 2048 }),
      cacheFrac: fc.option(fc.double({ min: 0, max: 1, noNaN: true }), { nil: null }),
    }),
    { minLength: 1, maxLength: 8 },
  ),
  drift: fc.array(fc.double({ min: -0.2, max: 0.2, noNaN: true }), { minLength: 8, maxLength: 8 }),
  swaps: fc.array(fc.nat({ max: 100_000 }), { minLength: 8, maxLength: 8 }),
  safeguards: fc.record({
    minGuestKiB: fc.integer({ min: 0, max: 1024 * MiB }),
    headroomKiB: fc.integer({ min: 0, max: 512 * MiB }),
    maxStepFraction: fc.double({ min: 0.001, max: 1, noNaN: true }),
    cacheStepFraction: fc.option(fc.double({ min: 0, max: 0.2, noNaN: true }), { nil: null }),
    minChangeFraction: fc.double({ min: 0, max: 0.05, noNaN: true }),
    minChangeKiB: fc.integer({ min: 0, max: 8 * MiB }),
    rollbackWindow: fc.integer({ min: 0, max: 4 }),
    rollbackSwapInKiBPerS: fc.integer({ min: 1, max: 100_000 }),
    rollbackMajorFaultsPerS: fc.integer({ min: 1, max: 10_000 }),
    rollbackBackoffS: fc.integer({ min: 0, max: 100 }),
    psiStopPercent: fc.option(fc.integer({ min: 0, max: 100 }), { nil: null }),
    rollbackPsiPercent: fc.option(fc.integer({ min: 0, max: 100 }), { nil: null }),
    peakWindowS: fc.constantFrom(0, 30, 600),
    peakHoldS: fc.constantFrom(0, 60, 7200),
    quietGrowthFraction: fc.constantFrom(0, 0.25, 1),
    cacheStallPercent: fc.constantFrom(null, 2),
    cacheIoPercent: fc.constantFrom(null, 10),
    slowSwapInMs: fc.constantFrom(null, 1),
    externalHoldS: fc.constantFrom(0, 60),
  }),
});

class DriftingHypervisor extends FakeHypervisor {
  sims: SimGuest[];
  /** What each guest's last collected sample said: the guard decided on exactly this. */
  lastSeen = new Map<string, Stats>();
  constructor(sims: SimGuest[]) {
    super([]);
    this.sims = sims;
  }
  override async collect(): Promise<GuestSample[]> {
    const out = this.sims.map((g) => {
      const stats: Stats = {
        balloon_cur: g.cur,
        balloon_max: g.max,
        balloon_min: g.bmin,
        mem_unused: Math.max(0, g.cur - g.used),
        mem_free: Math.max(0, g.cur - g.used),
        ...(g.cacheFrac === null ? {} : { mem_usable: Math.max(0, g.cur - g.used) + Math.round(g.used * g.cacheFrac) }),
        swap_in: g.swapIn,
        major_fault: g.faults,
        swap_out: 0,
        minor_fault: 0,
        mem_available: g.cur,
        rss: g.cur,
      };
      this.lastSeen.set(g.id, stats);
      return { id: g.id, name: g.name, props: { name: g.name }, stats };
    });
    return out;
  }
  override async setBalloon(id: string, target: number): Promise<void> {
    this.setCalls.push({ id, target });
    const g = this.sims.find((x) => x.id === id)!;
    g.cur = target;
  }
}

test('balloon targets stay in [floor, balloon_max] and move at most one step per cycle', async () => {
  let checked = 0;
  await fc.assert(
    fc.asyncProperty(exprArb, hostArb, async (expr, host) => {
      const policy = compilePolicyText(`(with Guests guest (guest.Control "balloon_target" ${expr}))`);
      const sims: SimGuest[] = host.guests.map((g, i) => {
        const max = g.maxMiB * MiB;
        const cur = Math.max(1, Math.round(max * g.curFrac));
        return {
          id: `g${i}`,
          name: `vm${i}`,
          max,
          cur,
          used: Math.round(cur * g.usedFrac),
          swapIn: 0,
          faults: 0,
          bmin: g.bminMiB * MiB,
          cacheFrac: g.cacheFrac,
        };
      });
      const hv = new DriftingHypervisor(sims);
      let t = 0;
      // The present-use floor this property recomputes: a remembered peak (after a rollback)
      // raises the floor beyond what one sample shows; peaks.test.ts covers that floor.
      const sg = { ...(host.safeguards as SafeguardConfig), peakWindowS: 0 };
      const engine = new Engine({
        hypervisor: hv,
        hostSources: [{ name: 'h', collect: async () => ({ mem_available: 64 * 1024 * MiB, mem_free: 4 * 1024 * MiB }) }],
        policy,
        now: () => t,
        safeguards: sg,
      });
      for (let cycle = 0; cycle < 8; cycle++) {
        for (const [i, g] of sims.entries()) {
          g.used = Math.max(0, Math.min(g.cur, Math.round(g.used + host.drift[(i + cycle) % 8]! * g.max)));
          g.swapIn += host.swaps[(i * 3 + cycle) % 8]!;
        }
        t += 10;
        await engine.collect();
        hv.setCalls.length = 0;
        await engine.evaluateAndAct();
        for (const call of hv.setCalls) {
          checked++;
          const { cur, max, floor, step, lowest } = bounds(hv.lastSeen.get(call.id)!, sg);
          const ctx = `expr=${expr} cur=${cur} floor=${floor} max=${max} step=${step} target=${call.target}`;
          assert.ok(Number.isInteger(call.target), ctx);
          assert.ok(call.target >= floor && call.target <= max, `target outside [floor, max]: ${ctx}`);
          assert.ok(call.target >= cur || call.target >= lowest, `inflated more than the page-cache step allows (lowest ${lowest}): ${ctx}`);
          const change = Math.abs(call.target - cur);
          const raisedToFloor = cur < floor && call.target === floor;
          const loweredToMax = cur > max && call.target === max;
          assert.ok(change <= step || raisedToFloor || loweredToMax, `change ${change} above step: ${ctx}`);
        }
      }
      engine.dispose();
    }),
    { numRuns: 150 },
  );
  assert.ok(checked > 100, `only ${checked} balloon targets were set: the property was barely exercised`);
});

// ---- the same properties on the real simulator ----------------------------------------------

import { SimHypervisor, simHostSource } from '../../../src/hypervisor/sim/index.js';
import { parseScenario } from '../../../src/sim/scenarios.js';
import { SimWorld } from '../../../src/sim/world.js';
import type { Hypervisor, LifecycleEvent } from '../../../src/types.js';

const workloadArb = fc.oneof(
  fc.record({
    kind: fc.constant('memknobs'),
    sizesMiB: fc.array(fc.integer({ min: 32, max: 1500 }), { minLength: 1, maxLength: 3 }),
    runS: fc.integer({ min: 10, max: 120 }),
    pauseS: fc.integer({ min: 0, max: 30 }),
  }),
  fc.record({
    kind: fc.constant('web'),
    requestRate: fc.integer({ min: 1, max: 30 }),
    anonMiB: fc.integer({ min: 50, max: 600 }),
    fileSetMiB: fc.integer({ min: 50, max: 1500 }),
  }),
  fc.record({ kind: fc.constant('idle'), anonMiB: fc.integer({ min: 10, max: 400 }) }),
  fc.record({ kind: fc.constant('leak'), leakMiBPerMin: fc.integer({ min: 10, max: 400 }) }),
);

const scenarioArb = fc.record({
  hostMiB: fc.integer({ min: 1024, max: 8192 }),
  swapMiB: fc.integer({ min: 0, max: 4096 }),
  guests: fc.array(
    fc.record({
      memMiB: fc.integer({ min: 256, max: 2048 }),
      balloonFrac: fc.double({ min: 0.3, max: 1, noNaN: true }),
      balloonMinMiB: fc.integer({ min: 0, max: 256 }),
      stopS: fc.option(fc.integer({ min: 20, max: 200 }), { nil: undefined }),
      workload: workloadArb,
    }),
    { minLength: 1, maxLength: 6 },
  ),
  seed: fc.integer({ min: 1, max: 1000 }),
});

/** The simulator's hypervisor, recording what the guard saw and what was set. */
class RecordingHypervisor implements Hypervisor {
  readonly name = 'recording-sim';
  lastSeen = new Map<string, Stats>();
  calls: { id: string; target: number }[] = [];
  constructor(private readonly inner: SimHypervisor) {}
  get capabilities() {
    return this.inner.capabilities;
  }
  connect() {
    return this.inner.connect();
  }
  close() {
    return this.inner.close();
  }
  async collect(): Promise<GuestSample[]> {
    const out = await this.inner.collect();
    for (const s of out) this.lastSeen.set(s.id, s.stats);
    return out;
  }
  async setBalloon(id: string, target: number): Promise<void> {
    this.calls.push({ id, target });
    await this.inner.setBalloon(id, target);
  }
  onEvent(l: (e: LifecycleEvent) => void) {
    return this.inner.onEvent(l);
  }
}

test('on random simulated hosts, balloon targets stay in [floor, balloon_max] within the step limit, and back-offs hold', async () => {
  let checked = 0;
  let rollbacks = 0;
  await fc.assert(
    fc.asyncProperty(
      exprArb,
      scenarioArb,
      // Without the remembered-peak floor, as in the property above: bounds() recomputes the
      // present-use floor only (a seed once found a rollback's peak raising a guest by a step
      // plus a KiB, which is right). peaks.test.ts covers that floor.
      hostArb.map((h) => ({ ...h.safeguards, peakWindowS: 0 })),
      async (expr, sc, sg) => {
        const spec = parseScenario({
          host: { memMiB: sc.hostMiB, swapMiB: sc.swapMiB, cpus: 4 },
          guests: sc.guests.map((g, i) => ({
            name: `vm${i}`,
            memMiB: g.memMiB,
            balloonMiB: Math.max(64, Math.round(g.memMiB * g.balloonFrac)),
            balloonMinMiB: g.balloonMinMiB,
            stopS: g.stopS,
            workload: g.workload,
          })),
          seed: sc.seed,
        });
        const world = new SimWorld(spec, sc.seed);
        const hv = new RecordingHypervisor(new SimHypervisor(world));
        const policy = compilePolicyText(`(with Guests guest (guest.Control "balloon_target" ${expr}))`);
        const engine = new Engine({
          hypervisor: hv,
          hostSources: [simHostSource(world)],
          policy,
          now: () => world.now,
          safeguards: sg as SafeguardConfig,
        });
        const heldUntil = new Map<string, number>();
        for (let i = 0; i < 24; i++) {
          world.advance(5);
          await engine.collect();
          if (i % 2 === 0) continue;
          hv.calls.length = 0;
          const r = await engine.evaluateAndAct();
          assert.equal(r.outcomes.filter((o) => o.result === 'failed').length, 0, JSON.stringify(r.outcomes.filter((o) => o.result === 'failed')));
          // After a rollback, that guest is not inflated again before its back-off ends.
          for (const o of r.outcomes) {
            const id = o.action.guestId!;
            const s = hv.lastSeen.get(id)!;
            if (o.action.reasons[0]!.startsWith('rollback')) {
              rollbacks++;
              heldUntil.set(id, world.now + sg.rollbackBackoffS);
            } else if (o.result === 'applied' && (o.action.to as number) < (s.balloon_cur as number)) {
              assert.ok(world.now >= (heldUntil.get(id) ?? -Infinity), `${id} inflated at t=${world.now} during its back-off (until ${heldUntil.get(id)})`);
            }
          }
          for (const call of hv.calls) {
            checked++;
            const { cur, max, floor, step, lowest } = bounds(hv.lastSeen.get(call.id)!, sg);
            const ctx = `expr=${expr} t=${world.now} cur=${cur} floor=${floor} max=${max} step=${step} target=${call.target}`;
            assert.ok(call.target >= floor && call.target <= max, `target outside [floor, max]: ${ctx}`);
            assert.ok(call.target >= cur || call.target >= lowest, `inflated more than the page-cache step allows (lowest ${lowest}): ${ctx}`);
            const change = Math.abs(call.target - cur);
            assert.ok(change <= step || (cur < floor && call.target === floor) || (cur > max && call.target === max), `change ${change} above step: ${ctx}`);
          }
        }
        engine.dispose();
      },
    ),
    { numRuns: 60 },
  );
  assert.ok(checked > 100, `only ${checked} balloon targets were set: the property was barely exercised`);
  // (rollbacks happen in some runs only; the test below makes sure they are exercised)
  void rollbacks;
});

test('simulator: an over-eager policy triggers rollbacks, and each guest then backs off for the whole period', async () => {
  const spec = parseScenario({
    host: { memMiB: 3072, swapMiB: 4096, cpus: 2 },
    guests: [0, 1, 2].map((i) => ({
      name: `vm${i}`,
      memMiB: 1024,
      workload: { kind: 'memknobs', sizesMiB: [300, 700], runS: 40, pauseS: 5, offsetS: i * 13 },
    })),
    seed: 3,
  });
  const world = new SimWorld(spec, 3);
  const hv = new RecordingHypervisor(new SimHypervisor(world));
  // Shrink every guest by 15% a cycle, whatever happens: the guard must catch the swapping.
  const policy = compilePolicyText('(with Guests guest (guest.Control "balloon_target" (* guest.balloon_cur 0.85)))');
  const sg: Partial<SafeguardConfig> = {
    minGuestKiB: 64 * MiB,
    headroomKiB: 0,
    rollbackWindow: 3,
    rollbackSwapInKiBPerS: 256,
    rollbackMajorFaultsPerS: 100,
    rollbackBackoffS: 60,
  };
  const engine = new Engine({ hypervisor: hv, hostSources: [simHostSource(world)], policy, now: () => world.now, safeguards: sg });
  const heldUntil = new Map<string, number>();
  let rollbacks = 0;
  let inflations = 0;
  for (let i = 0; i < 120; i++) {
    world.advance(5);
    await engine.collect();
    if (i % 2 === 0) continue;
    const r = await engine.evaluateAndAct();
    for (const o of r.outcomes) {
      const id = o.action.guestId!;
      if (o.action.reasons[0]!.startsWith('rollback')) {
        rollbacks++;
        assert.ok((o.action.to as number) > (o.action.from as number), 'a rollback deflates');
        heldUntil.set(id, world.now + 60);
      } else if ((o.action.to as number) < (o.action.from as number)) {
        inflations++;
        assert.ok(world.now >= (heldUntil.get(id) ?? -Infinity), `${id} inflated at t=${world.now} during its back-off (until ${heldUntil.get(id)})`);
      }
    }
  }
  assert.ok(rollbacks >= 2, `rollbacks: ${rollbacks}`);
  assert.ok(inflations > rollbacks, 'inflation resumes after the back-offs');
  assert.equal(engine.counters.rollbacks, rollbacks);
  engine.dispose();
});
