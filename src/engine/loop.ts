// The one control loop: collect every stats interval, evaluate-guard-actuate-record every policy
// interval, over an Engine; after a collection that no policy cycle follows at once, the
// engine's guards alone (Engine.guardPass), so a guest that fell below its floor is raised
// within a stats interval, not a policy interval. `ballast run`, `ballast demo`, `ballast sim`
// and the lab experiment all drive their engine through it; only the clock differs:
//   start()/stop(): real timers (the Scheduler: no overlap, a slow step delays the next);
//   runFor(seconds): simulated time, as fast as the CPU allows, advancing the clock itself.
// A calm engine (src/engine/calm.ts) is collected every `calmStride`-th stats interval in real
// time; between, the loop only peeks at the cheap host sources and collects at once when the
// host moved. A simulated host (advance) always steps every interval: its clock moves with
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

  constructor(
    readonly engine: Steppable,
    private readonly opts: LoopOptions,
  ) {
    if (!(opts.statsIntervalS > 0) || !(opts.policyIntervalS > 0)) throw new Error('loop: intervals must be positive');
    const scale = opts.timeScale ?? 1;
    // A simulated world advances with each collection: skipping one would stop its clock.
    this.stride = opts.advance ? 1 : Math.max(1, Math.floor(opts.calmStride ?? 1));
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
    if (!this.fresh && this.stride > 1 && this.engine.calm?.()) return;
    this.fresh = false;
    await this.engine.evaluateAndAct();
  }

  /** Whether a calm loop may let this stats interval pass with a peek only. */
  private async mayWait(): Promise<boolean> {
    if (this.stride <= 1 || this.idleTicks + 1 >= this.stride || !this.engine.calm?.()) return false;
    const moved = (await this.engine.peek?.()) ?? null;
    if (moved !== null) {
      this.lastWake = moved;
      return false;
    }
    return true;
  }

  /** Real time: collect, then the guards alone unless a policy cycle is queued right behind
   *  this collection (it runs them itself, on the same samples). */
  private async collectAndGuard(): Promise<void> {
    if (await this.mayWait()) {
      this.idleTicks++;
      return;
    }
    this.idleTicks = 0;
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
