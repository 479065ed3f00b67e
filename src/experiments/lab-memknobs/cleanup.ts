// Everything the experiment sets up (guests, cgroups, the swap file, KSM knobs) is undone
// even when a run fails or the user presses Ctrl-C: each resource registers how to undo it,
// in reverse order of creation. A SIGINT/SIGTERM runs the undo steps and exits; if the process
// dies anyway, the synchronous fallbacks run from the 'exit' event.
export interface UndoStep {
  what: string;
  run: () => Promise<void>;
  /** Best effort without the event loop (process 'exit'), e.g. SIGKILL a PID. */
  runSync?: () => void;
}

export class Cleanup {
  private steps: UndoStep[] = [];
  private signalled = false;
  private readonly onSignal = (sig: NodeJS.Signals) => void this.interrupt(sig);
  private readonly onExit = () => this.runSync();

  constructor(private readonly say: (m: string) => void) {}

  /** Registers an undo step; returns a function that runs it now (and forgets it). */
  add(step: UndoStep): () => Promise<void> {
    this.steps.push(step);
    return async () => {
      const i = this.steps.indexOf(step);
      if (i === -1) return;
      this.steps.splice(i, 1);
      await step.run();
    };
  }

  /** Runs every registered step, newest first; a failing step does not stop the others. */
  async runAll(): Promise<string[]> {
    const errors: string[] = [];
    while (this.steps.length) {
      const s = this.steps.pop()!;
      try {
        await s.run();
      } catch (e) {
        errors.push(`${s.what}: ${(e as Error).message}`);
        this.say(`cleanup: ${s.what} failed: ${(e as Error).message}`);
      }
    }
    return errors;
  }

  private runSync(): void {
    while (this.steps.length) {
      const s = this.steps.pop()!;
      try {
        s.runSync?.();
      } catch {
        // best effort on the way out
      }
    }
  }

  private async interrupt(sig: NodeJS.Signals): Promise<void> {
    if (this.signalled) {
      this.say(`${sig} again: exiting now (leftovers undone synchronously where possible)`);
      process.exit(130);
    }
    this.signalled = true;
    this.say(`${sig}: cleaning up (guests, cgroups, swap, KSM knobs) before exiting; ${sig} again to exit at once`);
    await this.runAll();
    process.exit(130);
  }

  install(): void {
    process.on('SIGINT', this.onSignal);
    process.on('SIGTERM', this.onSignal);
    process.on('exit', this.onExit);
  }

  uninstall(): void {
    process.off('SIGINT', this.onSignal);
    process.off('SIGTERM', this.onSignal);
    process.off('exit', this.onExit);
  }
}
