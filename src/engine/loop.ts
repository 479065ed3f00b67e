// The one control loop: collect every stats interval, evaluate-guard-actuate-record every policy
// interval, over an Engine; after a collection that no policy cycle follows at once, the
// engine's guards alone (Engine.guardPass), so a guest that fell below its floor is raised
// within a stats interval, not a policy interval. `ballast run`, `ballast demo`, `ballast sim`
// and the lab experiment all drive their engine through it; only the clock differs:
//   start()/stop(): real timers (the Scheduler: no overlap, a slow step delays the next);
//   runFor(seconds): simulated time, as fast as the CPU allows, advancing the clock itself.
// A calm engine (src/engine/calm.ts) is collected every `calmStride`-th stats interval in real
// time; between, the loop only peeks at the cheap host sources and collects at once when the
// host moved. With the same peek, a collection between two policy cycles is let pass when the
// engine sees nothing its guards could act on before the cycle (Engine.guardsWatch: no guest
// just inflated, none growing into its floor's urgent band); calmStride 1 turns both off.
// A simulated host (advance) always steps every interval: its clock moves with
// the collections, and its runs stay comparable.
// What callers want to see they get as events, not as steps of their own: the loop's
// onCollect / onCycle are the engine's one channel (a listener that throws is logged there).
import type { CollectReport, CycleReport } from './engine.js';
import { Scheduler } from './scheduler.js';

export interface LoopOptions {
  statsIntervalS: number;
  policyIntervalS: number;
  /** Moves a simulated clock by `seconds` before each collection (the simulated host). */
  advance?: (seconds: number) => void;
  /** Real timers run this many times faster than the intervals (a simulated host at speed). */
  timeScale?: number;
  /** Real time: while the engine is calm, collect every this many stats intervals (default 1:
   *  always every interval). */
  calmStride?: number;
  /** A step that threw (the engine reports its own failures; this is for bugs). */
  onError?: (step: 'collect' | 'policy', err: unknown) => void;
}

type Listener<T> = (x: T) => void;

/** What the loop drives: an Engine, whatever its policy type. */
export interface Steppable {
  collect(): Promise<CollectReport>;
  evaluateAndAct(): Promise<CycleReport>;
  /** The safeguards alone between policy cycles; absent: only policy cycles act. */
  guardPass?(): Promise<CycleReport | null>;
  /** Whether the loop may slow down; absent: never. */
  calm?(): boolean;
  /** Between collections of a calm loop: why the host moved (collect now), or null. */
  peek?(): Promise<string | null>;
  /** Between policy cycles: why the next collection is needed before the cycle (a guard may
   *  act on a guest `horizonS` seconds after its latest sample), or null; absent: always. */
  guardsWatch?(horizonS: number): string | null;
  onCollect(l: Listener<CollectReport>): () => void;
  onCycle(l: Listener<CycleReport>): () => void;
}

export class Loop {
  private readonly scheduler: Scheduler;
  private readonly stride: number;
  /** Stats intervals since the last collection. */
  private idleTicks = 0;
  /** A collection since the last policy cycle (a calm loop skips a cycle with nothing new). */
  private fresh = false;
  /** The last reason a peek gave to collect early (tests, logs). */
  lastWake?: string;
  /** Policy cycles started. */
  private cycles = 0;
  /** The stats tick (0 at start) of the last collection. */
  private lastCollectTick = 0;
  private readonly statsMs: number;
  private readonly policyMs: number;

  constructor(
    readonly engine: Steppable,
    private readonly opts: LoopOptions,
  ) {
    if (!(opts.statsIntervalS > 0) || !(opts.policyIntervalS > 0)) throw new Error('loop: intervals must be positive');
    const scale = opts.timeScale ?? 1;
    // A simulated world advances with each collection: skipping one would stop its clock.
    this.stride = opts.advance ? 1 : Math.max(1, Math.floor(opts.calmStride ?? 1));
    this.statsMs = Math.round(opts.statsIntervalS * 1000);
    this.policyMs = Math.round(opts.policyIntervalS * 1000);
    this.scheduler = new Scheduler(
      [
        { name: 'collect', intervalS: opts.statsIntervalS / scale, run: () => this.collectAndGuard() },
        { name: 'policy', intervalS: opts.policyIntervalS / scale, runAtStart: false, run: () => this.cycle() },
      ],
      { onError: (task, err) => opts.onError?.(task as 'collect' | 'policy', err) },
    );
  }

  /** After every collection. Returns the unsubscribe. */
  onCollect(l: Listener<CollectReport>): () => void {
    return this.engine.onCollect(l);
  }

  /** After every policy cycle. Returns the unsubscribe. */
  onCycle(l: Listener<CycleReport>): () => void {
    return this.engine.onCycle(l);
  }

  private async collect(dt: number): Promise<void> {
    if (dt > 0) this.opts.advance?.(dt);
    await this.engine.collect();
  }

  private async cycle(): Promise<void> {
    this.cycles++;
    if (!this.fresh && this.stride > 1 && this.engine.calm?.()) return;
    this.fresh = false;
    await this.engine.evaluateAndAct();
  }

  /** Whether the loop may let this stats interval pass with a peek only: calm, or between two
   *  policy cycles with nothing for the guards to watch. */
  private async mayWait(): Promise<boolean> {
    if (this.stride <= 1) return false;
    const calm = this.idleTicks + 1 < this.stride && (this.engine.calm?.() ?? false);
    if (!calm && this.betweenCyclesWhy() !== null) return false;
    const moved = (await this.engine.peek?.()) ?? null;
    if (moved !== null) {
      this.lastWake = moved;
      return false;
    }
    return true;
  }

  /**
   * Why this stats interval needs its collection although it lies between two policy cycles,
   * or null when it may pass. The collection just before a cycle is always made (the cycle
   * evaluates it), and so is one after which none comes before the cycle. Between them the
   * collection only feeds the guard pass, and the engine says whether a guard could act before
   * the cycle's own collection (a guest just inflated, or growing toward its floor's urgent
   * band): on a busy host whose guests ramp steadily this halves the collections at MOM's
   * two-to-one cadence. Ticks count from the start, as the scheduler's timers fire.
   */
  private betweenCyclesWhy(): string | null {
    if (!this.engine.guardsWatch) return 'no guard projection';
    if (this.cycles === 0) return 'no policy cycle yet';
    const sched = this.scheduler;
    const tick = (sched.runs.collect ?? 0) + (sched.skipped.collect ?? 0) - 1;
    const t = tick * this.statsMs;
    if (t % this.policyMs === 0) return 'a policy cycle follows this collection';
    const nextCycle = (Math.floor(t / this.policyMs) + 1) * this.policyMs;
    if (t + this.statsMs > nextCycle) return 'no other collection before the next policy cycle';
    const lastBefore = Math.floor(nextCycle / this.statsMs) * this.statsMs;
    return this.engine.guardsWatch((lastBefore - this.lastCollectTick * this.statsMs) / 1000);
  }

  /** Real time: collect, then the guards alone unless a policy cycle is queued right behind
   *  this collection (it runs them itself, on the same samples). */
  private async collectAndGuard(): Promise<void> {
    if (await this.mayWait()) {
      this.idleTicks++;
      return;
    }
    this.idleTicks = 0;
    this.lastCollectTick = (this.scheduler.runs.collect ?? 0) + (this.scheduler.skipped.collect ?? 0) - 1;
    this.fresh = true;
    await this.collect(this.opts.statsIntervalS);
    if (!this.scheduler.isPending('policy')) await this.engine.guardPass?.();
  }

  /** Whether the loop now runs at its calm cadence: a collection every stride-th interval
   *  (never with stride 1 or a simulated host). The cycle counter advances slower then. */
  get calm(): boolean {
    return this.stride > 1 && (this.engine.calm?.() ?? false);
  }

  get started(): boolean {
    return this.scheduler.started;
  }

  /** Real time: collect now and every stats interval, a cycle every policy interval. */
  start(): void {
    this.scheduler.start();
  }

  /** Stops the timers; resolves when the step in flight has finished. */
  stop(): Promise<void> {
    return this.scheduler.stop();
  }

  /** Simulated time: needs `advance`. Collects at the start, then after each stats interval,
   *  and cycles each time a policy interval has passed, until `seconds` have been simulated. */
  async runFor(seconds: number, now: () => number): Promise<void> {
    if (!this.opts.advance) throw new Error('loop: runFor needs a simulated clock (advance)');
    if (!(seconds >= 0) || !Number.isFinite(seconds)) throw new Error(`loop: bad duration ${seconds}`);
    const end = now() + seconds;
    let nextPolicy = now() + this.opts.policyIntervalS;
    await this.collect(0);
    while (now() < end - 1e-9) {
      await this.collect(Math.min(this.opts.statsIntervalS, end - now()));
      if (now() >= nextPolicy - 1e-9) {
        await this.cycle();
        nextPolicy += this.opts.policyIntervalS;
      } else await this.engine.guardPass?.();
    }
  }
}
