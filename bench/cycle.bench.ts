// One full control cycle (collect all guests + host, evaluate the shipped default policy,
// guard, actuate) at 1,000 simulated guests; target 10 ms or less. Baselines measured in the
// same run: the policy evaluation alone over the same inputs, and the cycle at 100 guests.
// The simulated world's own stepping (advance) is outside the timed part: it is the
// simulator's cost, not ballast's.
import { readFileSync } from 'node:fs';
import { Engine } from '../src/engine/engine.js';
import { compilePolicyText, evaluatePolicy } from '../src/engine/policy-adapter.js';
import type { EntityInput } from '../src/engine/policy-port.js';
import { SimHypervisor, simHostSource } from '../src/hypervisor/sim/index.js';
import { parseScenario } from '../src/sim/scenarios.js';
import { SimWorld } from '../src/sim/world.js';

function scenario(guests: number) {
  return parseScenario({
    name: `bench-${guests}`,
    host: { memMiB: guests * 768, swapMiB: guests * 256, cpus: 64 },
    guests: [
      { name: 'knobs', count: Math.round(guests * 0.4), memMiB: 1024, workload: { kind: 'memknobs', sizesMiB: [200, 600, 900], runS: 60, pauseS: 10 } },
      { name: 'web', count: Math.round(guests * 0.3), memMiB: 1024, workload: { kind: 'web', requestRate: 4, anonMiB: 200, fileSetMiB: 500 } },
      { name: 'idle', count: guests - Math.round(guests * 0.4) - Math.round(guests * 0.3), memMiB: 1024, workload: { kind: 'idle', anonMiB: 150 } },
    ],
    seed: 7,
  });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

const policyText = readFileSync(new URL('../policies/default.policy', import.meta.url), 'utf8');

async function measure(guests: number, cycles: number) {
  const world = new SimWorld(scenario(guests), 7);
  const policy = compilePolicyText(policyText, 'default.policy');
  const engine = new Engine({
    hypervisor: new SimHypervisor(world),
    hostSources: [simHostSource(world)],
    policy,
    now: () => world.now,
  });
  const collect: number[] = [];
  const act: number[] = [];
  const total: number[] = [];
  const evalOnly: number[] = [];
  // Fill the history first (10 samples), as in steady state.
  for (let i = 0; i < 10; i++) {
    world.advance(5);
    await engine.collect();
  }
  for (let i = 0; i < cycles; i++) {
    world.advance(5);
    const t0 = performance.now();
    await engine.collect();
    const t1 = performance.now();
    const r = await engine.evaluateAndAct();
    const t2 = performance.now();
    collect.push(t1 - t0);
    act.push(t2 - t1);
    total.push(t2 - t0);
    evalOnly.push(r.evalMs);
  }
  // The policy alone, on a copy of the same inputs the engine fed it last.
  const snap = engine.snapshot();
  const hostIn: EntityInput = { props: { name: 'host' }, stats: Array(10).fill(snap.host.stats), vars: snap.host.vars };
  const guestIn: EntityInput[] = snap.guests.map((g) => ({ props: g.props, stats: Array(10).fill(g.stats), vars: g.vars }));
  const pure: number[] = [];
  for (let i = 0; i < cycles; i++) {
    const t0 = performance.now();
    evaluatePolicy(policy, hostIn, guestIn);
    pure.push(performance.now() - t0);
  }
  engine.dispose();
  return {
    guests: snap.guests.length,
    collect: median(collect),
    act: median(act),
    total: median(total),
    evalInCycle: median(evalOnly),
    evalAlone: median(pure),
    actions: engine.counters.actionsApplied,
  };
}

export default async function main(): Promise<void> {
  await measure(100, 20); // warm-up (JIT)
  const small = await measure(100, 60);
  const big = await measure(1000, 40);
  const fmt = (x: number) => x.toFixed(3).padStart(8);
  console.log(`guests  cycle ms  collect ms  eval+guard+act ms  policy-in-cycle ms  policy-alone ms  (medians)`);
  for (const m of [small, big]) {
    console.log(
      `${String(m.guests).padStart(6)}  ${fmt(m.total)}  ${fmt(m.collect)}    ${fmt(m.act)}           ${fmt(m.evalInCycle)}           ${fmt(m.evalAlone)}`,
    );
  }
  console.log(`cycle at 1,000 guests: ${big.total.toFixed(2)} ms (target <= 10 ms: ${big.total <= 10 ? 'met' : 'NOT met'})`);
  console.log(`ratio cycle(1000) / cycle(100): ${(big.total / small.total).toFixed(2)}x (linear would be 10x)`);
  console.log(`ratio cycle(1000) / policy evaluation alone(1000): ${(big.total / big.evalAlone).toFixed(2)}x`);
  console.log(`balloon/KSM actions applied during the 1,000-guest run: ${big.actions}`);
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
