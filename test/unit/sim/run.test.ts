import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { runSimulated } from '../../../src/daemon/sim-run.js';
import { compilePolicyText } from '../../../src/engine/policy-adapter.js';
import { SimWorld } from '../../../src/sim/world.js';
import { memknobsScenario, demoScenario, cloudyScenario } from '../../../src/sim/scenarios.js';
import { runExperiment } from '../../../src/cli/experiment.js';

const policy = (f: string) => compilePolicyText(readFileSync(`policies/${f}`, 'utf8'));

test('runSimulated drives the real engine in simulated time at the given intervals', async () => {
  const world = new SimWorld(memknobsScenario({ guests: 4, guestMiB: 1024, hostMiB: 3072, cpus: 2 }));
  const ticks: number[] = [];
  const r = await runSimulated({
    world,
    policy: policy('default.policy'),
    durationS: 600,
    onTick: ({ time }) => ticks.push(time),
  });
  assert.equal(world.now, 600);
  assert.equal(ticks.length, 600 / 5 + 1);
  assert.equal(r.engine.cycles, 600 / 10);
  assert.equal(r.engine.policyErrors, 0);
  assert.equal(r.engine.driverErrors, 0);
  assert.ok(r.balloonActions > 0, 'the balloon policy acted on an overcommitted host');
  assert.ok(world.ksm.run === 1 || r.engine.actionsApplied > 0);
  assert.ok(r.metrics.throughput > 0);
});

test('guests that stop mid-run are dropped without errors; no policy means no actions', async () => {
  const world = new SimWorld(demoScenario());
  const r = await runSimulated({ world, policy: null, durationS: 2500 });
  assert.equal(r.balloonActions, 0);
  assert.equal(r.engine.actionsApplied, 0);
  assert.ok(r.engine.guestsAppeared >= 6, 'the late guest appeared');
  assert.ok(r.engine.guestsVanished >= 1, 'the stopped guest vanished');
  assert.equal(r.engine.driverErrors + r.engine.controllerErrors, 0);
});

test('an experiment runs the three configurations on identical workloads', async () => {
  const runs = await runExperiment({
    experiment: 'memknobs',
    scale: { guests: 4, guestMiB: 1024, hostMiB: 3072, cpus: 2, seed: 2 },
    durationS: 600,
  });
  assert.deepEqual(
    runs.map((r) => r.config),
    ['none', 'ksm', 'balloon+ksm'],
  );
  assert.equal(runs[0]!.throughput_vs_none_pct, 0);
  assert.equal(runs[0]!.balloon_actions, 0);
  assert.equal(runs[1]!.balloon_actions, 0, 'KSM only never touches balloons');
  assert.ok(runs[2]!.balloon_actions > 0);
  assert.equal(runs[0]!.ksmd_cpu_s, 0, 'no policy: ksmd never runs');
  // Same scenario and seed: running one configuration again gives the same numbers.
  const again = await runExperiment({
    experiment: 'memknobs',
    scale: { guests: 4, guestMiB: 1024, hostMiB: 3072, cpus: 2, seed: 2 },
    durationS: 600,
    configs: ['none', 'balloon+ksm'],
  });
  assert.equal(again[0]!.throughput, runs[0]!.throughput);
  assert.equal(again[0]!.swap_ops, runs[0]!.swap_ops);
  // With the engine and policy in the loop, too.
  assert.equal(again[1]!.throughput, runs[2]!.throughput);
  assert.equal(again[1]!.balloon_actions, runs[2]!.balloon_actions);
});

test("Cloudy's page cache: the balloon reclaims it with cache-aware floors, not when cache counts as used", async () => {
  const scale = { guests: 8, guestMiB: 1024, hostMiB: 6144, cpus: 4, seed: 3 };
  const run = (safeguards: object) =>
    runSimulated({ world: new SimWorld(cloudyScenario(scale)), policy: policy('default.policy'), durationS: 1200, safeguards });
  const aware = await run({});
  const counted = await run({ cacheStepFraction: null });
  assert.equal(counted.balloonActions, 0, 'all a guest holds is counted as used: its floor is above its size');
  assert.ok(aware.balloonActions > 0, 'cache-aware: the balloon moves');
  assert.ok(
    aware.metrics.swap_ops < counted.metrics.swap_ops,
    `the host swapped less when the balloon took cache: ${aware.metrics.swap_ops} vs ${counted.metrics.swap_ops}`,
  );
});
