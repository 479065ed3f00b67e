// Real timers for the loop: each task runs every `intervalS` seconds, tasks never overlap
// (one queue: a slow policy cycle delays the next collection instead of racing it), a tick
// that comes while its task is still queued or running is skipped and counted, and stop()
// clears every timer and waits for the task in flight. Timers are unref'd on request so a
// scheduler alone never keeps a process alive.
/** The longest delay Node's timers honour (2^31-1 ms, about 24.8 days). */
export const MAX_TIMER_MS = 2 ** 31 - 1;

export interface Task {
  name: string;
  intervalS: number;
  run: () => Promise<unknown> | unknown;
  /** Run once right at start (default true). */
  runAtStart?: boolean;
}

export interface SchedulerOptions {
  /** Called when a task throws; the scheduler goes on. */
  onError?: (task: string, err: unknown) => void;
  /** unref() the timers (default false: the daemon lives by its timers). */
  unref?: boolean;
}

export class Scheduler {
  private readonly timers: NodeJS.Timeout[] = [];
  private chain: Promise<void> = Promise.resolve();
  private readonly pending = new Set<string>();
  private running = false;
  readonly skipped: Record<string, number> = {};
  readonly runs: Record<string, number> = {};

  constructor(
    private readonly tasks: Task[],
    private readonly opts: SchedulerOptions = {},
  ) {
    for (const t of tasks) {
      if (!(t.intervalS > 0) || !Number.isFinite(t.intervalS))
        throw new RangeError(`task ${t.name}: interval must be a positive number of seconds, got ${t.intervalS}`);
      // Node turns a delay outside 1 ms .. 2^31-1 ms into 1 ms: a typo would hammer libvirtd.
      if (t.intervalS * 1000 < 1 || t.intervalS * 1000 > MAX_TIMER_MS) {
        throw new RangeError(`task ${t.name}: interval ${t.intervalS} s is outside what a timer can wait (0.001 s to ${MAX_TIMER_MS / 1000} s)`);
      }
      this.skipped[t.name] = 0;
      this.runs[t.name] = 0;
    }
  }

  get started(): boolean {
    return this.running;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    for (const t of this.tasks) {
      if (t.runAtStart !== false) this.enqueue(t);
      const timer = setInterval(() => this.enqueue(t), t.intervalS * 1000);
      if (this.opts.unref) timer.unref();
      this.timers.push(timer);
    }
  }

  private enqueue(t: Task): void {
    if (!this.running) return;
    if (this.pending.has(t.name)) {
      this.skipped[t.name]!++;
      return;
    }
    this.pending.add(t.name);
    this.chain = this.chain.then(async () => {
      try {
        if (!this.running) return;
        this.runs[t.name]!++;
        await t.run();
      } catch (err) {
        this.opts.onError?.(t.name, err);
      } finally {
        this.pending.delete(t.name);
      }
    });
  }

  /** Whether a run of this task is queued (or running). */
  isPending(name: string): boolean {
    return this.pending.has(name);
  }

  /** Clear all timers; resolves once the task in flight (if any) has finished. Queued runs are dropped. */
  async stop(): Promise<void> {
    this.running = false;
    for (const t of this.timers) clearInterval(t);
    this.timers.length = 0;
    await this.chain;
  }

  /** Resolves when every queued run has finished (tests). */
  idle(): Promise<void> {
    return this.chain;
  }
}
