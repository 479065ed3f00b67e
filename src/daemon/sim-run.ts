// Runs the real Engine against a SimWorld in simulated time, as fast as the CPU allows:
// collect every statsIntervalS, evaluate and act every policyIntervalS (MOM's 5 s / 10 s by
// default), advance the world in between. What `ballast sim` and `ballast experiment` use.
import { Engine, type Counters } from '../engine/engine.js';
import { Loop } from '../engine/loop.js';
import type { CompiledPolicy } from '../engine/policy-adapter.js';
import type { SafeguardConfig } from '../controls/balloon/guard.js';
import type { Logger } from '../log/logger.js';
import { SimHypervisor, simHostSource, simWorldMetrics, type SimMetrics } from '../hypervisor/sim/index.js';
import type { SimWorld } from '../sim/world.js';

export interface SimTick {
  /** Simulated seconds. */
  time: number;
  world: SimWorld;
  engine: Engine;
  hypervisor: SimHypervisor;
}

export interface SimRunOptions {
  world: SimWorld;
  /** null: no policy (the engine only collects; nothing is controlled). */
  policy: CompiledPolicy | null;
  durationS: number;
  statsIntervalS?: number;
  policyIntervalS?: number;
  /** Called after every collection. */
  onTick?: (tick: SimTick) => void;
  safeguards?: Partial<SafeguardConfig>;
  logger?: Logger;
  historyLength?: number;
}

export interface SimRunResult {
  metrics: SimMetrics;
  /** setBalloon calls that changed a target. */
  balloonActions: number;
  engine: Counters;
  /** Wall-clock milliseconds the run took. */
  wallMs: number;
}

export async function runSimulated(opts: SimRunOptions): Promise<SimRunResult> {
  const stats = opts.statsIntervalS ?? 5;
  const policyEvery = opts.policyIntervalS ?? 10;
  if (!(stats > 0) || !(policyEvery > 0)) throw new Error('runSimulated: intervals must be positive');
  if (!(opts.durationS >= 0) || !Number.isFinite(opts.durationS)) throw new Error(`runSimulated: bad duration ${opts.durationS}`);
  const world = opts.world;
  const hypervisor = new SimHypervisor(world);
  const engine = new Engine({
    hypervisor,
    hostSources: [simHostSource(world)],
    policy: opts.policy,
    safeguards: opts.safeguards,
    logger: opts.logger,
    historyLength: opts.historyLength,
    now: () => world.now,
  });
  const t0 = performance.now();
  const loop = new Loop(engine, { statsIntervalS: stats, policyIntervalS: policyEvery, advance: (dt) => world.advance(dt) });
  loop.onCollect(() => opts.onTick?.({ time: world.now, world, engine, hypervisor }));
  try {
    await loop.runFor(opts.durationS, () => world.now);
  } finally {
    engine.dispose();
  }
  return {
    metrics: simWorldMetrics(world),
    balloonActions: hypervisor.balloonActions,
    engine: { ...engine.counters },
    wallMs: performance.now() - t0,
  };
}
