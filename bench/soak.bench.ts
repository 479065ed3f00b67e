// Soak: many simulated cycles at 200 guests, with guests coming and going and the policy
// reloaded now and then, to show that nothing in the loop grows without bound. Prints heap and
// RSS at the start and end of the measured part, their slope per 10,000 cycles (least squares
// over a sample every 1,000 cycles), and the process's active handles before and after.
//
// The simulated world lives in the same process; its guests stay put, and the churn is made
// by a wrapper that hides a rotating share of them and shows each one again under a new id,
// so the engine sees guests vanish and new ones appear without the simulator keeping a record
// of thousands of guests (which would be the simulator's growth, not ballast's).
//
//   SOAK_CYCLES=100000 (default) SOAK_GUESTS=200 npm run bench soak
import { readFileSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Engine } from '../src/engine/engine.js';
import { compilePolicyText } from '../src/engine/policy-adapter.js';
import { SimHypervisor, simHostSource } from '../src/hypervisor/sim/index.js';
import { parseScenario } from '../src/sim/scenarios.js';
import { SimWorld } from '../src/sim/world.js';
import type { GuestSample, Hypervisor } from '../src/types.js';

/** Shows the world's guests with a rotating tenth of them away; a guest back from away has a new id. */
class ChurnHypervisor implements Hypervisor {
  readonly name = 'churn';
  private cycle = 0;
  // The simulated host's KSM and CPU tuning, as the simulator offers them.
  get capabilities() {
    return this.inner.capabilities;
  }
  private readonly generation = new Map<string, number>();

  constructor(
    private readonly inner: SimHypervisor,
    private readonly period: number,
  ) {}

  async connect(): Promise<void> {}
  async close(): Promise<void> {}

  tick(): void {
    this.cycle++;
  }

  async collect(): Promise<GuestSample[]> {
    const all = await this.inner.collect();
    const out: GuestSample[] = [];
    const slot = Math.floor(this.cycle / this.period);
    all.forEach((s, i) => {
      // Guest i is away while slot % 10 == i % 10; every time it comes back it is a new guest.
      const away = slot % 10 === i % 10;
      const gen = this.generation.get(s.id) ?? 0;
      if (away) {
        if (gen % 2 === 0) this.generation.set(s.id, gen + 1);
        return;
      }
      if (gen % 2 === 1) this.generation.set(s.id, gen + 1);
      const g = this.generation.get(s.id) ?? 0;
      out.push({ ...s, id: `${s.id}#${g}`, props: { ...s.props, uuid: `${s.id}#${g}` } });
    });
    return out;
  }

  async setBalloon(id: string, targetKiB: number): Promise<void> {
    await this.inner.setBalloon(id.replace(/#\d+$/, ''), targetKiB);
  }
}

function slope(xs: number[], ys: number[]): number {
  const n = xs.length;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my);
    den += (xs[i]! - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

const MB = 1024 * 1024;

// A full collection before each heap sample, so the slope shows what is kept, not when the
// collector last ran.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

export default async function main(): Promise<void> {
  const cycles = Number(process.env.SOAK_CYCLES ?? 100_000);
  const guests = Number(process.env.SOAK_GUESTS ?? 200);
  const world = new SimWorld(
    parseScenario({
      name: 'soak',
      host: { memMiB: guests * 700, swapMiB: guests * 256, cpus: 64 },
      guests: [
        { name: 'knobs', count: Math.round(guests * 0.5), memMiB: 1024, workload: { kind: 'memknobs', sizesMiB: [200, 600, 900], runS: 60, pauseS: 10 } },
        { name: 'web', count: guests - Math.round(guests * 0.5), memMiB: 1024, workload: { kind: 'web', requestRate: 4, anonMiB: 200, fileSetMiB: 500 } },
      ],
      seed: 3,
    }),
    3,
  );
  const policies = ['default.policy', 'balloon.policy'].map((f) => compilePolicyText(readFileSync(new URL(`../policies/${f}`, import.meta.url), 'utf8'), f));
  const churn = new ChurnHypervisor(new SimHypervisor(world), 50);
  const engine = new Engine({ hypervisor: churn, hostSources: [simHostSource(world)], policy: policies[0]!, now: () => world.now });
  const handlesBefore = process.getActiveResourcesInfo().length;

  const warmup = Math.min(5_000, Math.floor(cycles / 10));
  const xs: number[] = [];
  const heap: number[] = [];
  const rss: number[] = [];
  const t0 = performance.now();
  for (let i = 0; i < cycles; i++) {
    world.advance(5);
    churn.tick();
    await engine.collect();
    await engine.evaluateAndAct();
    if (i % 2_000 === 1_999) engine.setPolicy(policies[(i / 2_000) % 2 < 1 ? 1 : 0]!);
    if (i >= warmup && i % 1_000 === 0) {
      gc();
      const m = process.memoryUsage();
      xs.push(i);
      heap.push(m.heapUsed / MB);
      rss.push(m.rss / MB);
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  engine.dispose();
  const handlesAfter = process.getActiveResourcesInfo().length;
  const c = engine.counters;
  console.log(`${cycles} cycles at ${guests} guests in ${seconds.toFixed(1)} s (${((seconds * 1000) / cycles).toFixed(2)} ms per cycle, simulator included)`);
  console.log(
    `guests appeared ${c.guestsAppeared}, vanished ${c.guestsVanished}; policy reloads ${Math.floor(cycles / 2_000)}; actions ${c.actionsApplied}, rollbacks ${c.rollbacks}`,
  );
  if (xs.length >= 2) {
    console.log(
      `heap used: ${heap[0]!.toFixed(1)} MB at cycle ${xs[0]} -> ${heap.at(-1)!.toFixed(1)} MB at ${xs.at(-1)}; slope ${(slope(xs, heap) * 10_000).toFixed(3)} MB per 10k cycles`,
    );
    console.log(`rss:       ${rss[0]!.toFixed(1)} MB -> ${rss.at(-1)!.toFixed(1)} MB; slope ${(slope(xs, rss) * 10_000).toFixed(3)} MB per 10k cycles`);
    console.log(`heap end / start: ${(heap.at(-1)! / heap[0]!).toFixed(3)}x   rss end / start: ${(rss.at(-1)! / rss[0]!).toFixed(3)}x`);
  }
  console.log(`active handles before ${handlesBefore}, after ${handlesAfter}`);
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
