// A manager that runs as a process of its own beside the run's guests (momd, or `ballast
// run`), so that what it costs can be measured: its CPU time and resident memory over the
// window are its own, not shared with the experiment. What it did is read from its log,
// from the byte the window opened at.
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { killPid, pidAlive, waitFor } from '../../lab/proc.js';
import { UsageMeter, type ProcessUsage } from './proc-usage.js';

export interface ProcessManagerReport {
  manager: 'momd' | 'ballast';
  pid: number;
  /** CPU seconds and RSS over the measured window. */
  usage: ProcessUsage;
  /** Balloon changes it made in the window (its log's action lines). */
  balloonActions: number;
  /** ballast: rollbacks; momd has none. */
  rollbacks: number | null;
  /** ballast: virtio-mem resizes (and the unplugs among them); momd has no virtio-mem. */
  vmemActions: number | null;
  vmemUnplugs: number | null;
  /** ballast: reclaims inside guests carried out in full (reclaim rows). */
  reclaimActions?: number;
  /** Error lines of its log in the window. */
  errors: number;
  /** It switched KSM on (ksm_run 1) in the window. */
  ksmRunSeen: boolean;
  /** Putting the KSM knobs back as found failed (null: put back, or unchanged). */
  ksmRestoreError: string | null;
  /** It had exited before the run stopped it: the rest of the window had no manager. */
  exitedEarly: boolean;
  /** momd: the MOM commit it ran (git HEAD of the checkout). */
  momCommit?: string;
  /** The vdsm checkout whose mom.d momd ran (--vdsm). */
  vdsmCommit?: string;
  /** Its whole log, where the experiment keeps it (--trace); null: removed with the run. */
  log: string | null;
}

/** KSM knobs a manager may change (MOM's KSM controller writes these four), put back after it. */
const KSM_KNOBS = ['run', 'pages_to_scan', 'sleep_millisecs', 'merge_across_nodes'];

export function saveKsm(dir = '/sys/kernel/mm/ksm'): () => string | null {
  const saved = new Map<string, string>();
  for (const k of KSM_KNOBS) {
    try {
      saved.set(k, readFileSync(`${dir}/${k}`, 'utf8').trim());
    } catch {
      /* absent on this kernel */
    }
  }
  return () => {
    const failed: string[] = [];
    // run last: pages_to_scan and sleep first, then whether ksmd runs at all.
    for (const k of [...KSM_KNOBS.filter((x) => x !== 'run'), 'run']) {
      const v = saved.get(k);
      if (v === undefined) continue;
      try {
        if (readFileSync(`${dir}/${k}`, 'utf8').trim() !== v) writeFileSync(`${dir}/${k}`, v);
      } catch (e) {
        failed.push(`${k}: ${(e as Error).message}`);
      }
    }
    return failed.length ? failed.join('; ') : null;
  };
}

export interface SpawnedManagerOptions {
  command: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  log: string;
  /** True once the log shows the manager at work; false: wait on. */
  ready: (log: string) => boolean;
  readyTimeoutMs: number;
  what: string;
  /** The KSM knobs' directory (tests give their own). */
  ksmDir?: string;
}

export class SpawnedManager {
  private windowOffset = 0;
  private meter: UsageMeter | null = null;
  private stopped: Promise<{ usage: ProcessUsage; windowLog: string; ksmError: string | null; exitedEarly: boolean }> | null = null;

  private constructor(
    readonly pid: number,
    readonly o: SpawnedManagerOptions,
    private readonly restoreKsm: () => string | null,
  ) {}

  static async start(o: SpawnedManagerOptions): Promise<SpawnedManager> {
    // Before it runs: the knobs as the host had them.
    const restoreKsm = saveKsm(o.ksmDir);
    const fd = openSync(o.log, 'w');
    const child = spawn(o.command, o.args, { env: o.env ?? process.env, cwd: o.cwd, stdio: ['ignore', fd, fd], detached: true });
    closeSync(fd);
    const pid = await new Promise<number>((resolve, reject) => {
      child.once('spawn', () => resolve(child.pid!));
      child.once('error', (e) => reject(new Error(`cannot start ${o.what} (${o.command}): ${e.message}`)));
    });
    // Reaped by node: a manager that exits is no zombie, so pidAlive tells.
    child.unref();
    const m = new SpawnedManager(pid, o, restoreKsm);
    try {
      await waitFor(`${o.what} to start`, o.readyTimeoutMs, () => {
        // Alive first, then the log: a manager that writes its error and exits between the two
        // reads would otherwise be reported with a log read before its last words.
        const alive = pidAlive(pid);
        const text = m.readLog();
        if (!alive) throw new Error(`${o.what} exited at start; its log (${o.log}) ends:\n${tail(text)}`);
        return o.ready(text);
      });
    } catch (e) {
      await m.stop();
      throw e;
    }
    return m;
  }

  readLog(from = 0): string {
    try {
      return readFileSync(this.o.log).subarray(from).toString('utf8');
    } catch {
      return '';
    }
  }

  /** The measured window opens: CPU and RSS count from here, and the log's lines after here. */
  markWindow(): void {
    try {
      this.windowOffset = statSync(this.o.log).size;
    } catch {
      this.windowOffset = 0;
    }
    this.meter = new UsageMeter(this.pid);
    this.meter.start();
  }

  /** Ends the window, stops the process by its PID (SIGTERM, then SIGKILL), puts KSM back as
   *  found; returns the window's usage and log. Once: later calls get the same. */
  stop(): Promise<{ usage: ProcessUsage; windowLog: string; ksmError: string | null; exitedEarly: boolean }> {
    this.stopped ??= (async () => {
      const exitedEarly = !pidAlive(this.pid);
      const meter = this.meter ?? new UsageMeter(this.pid);
      const usage = this.meter ? meter.stop() : { pid: this.pid, cpuS: null, rssPeakMiB: null, rssMeanMiB: null, samples: 0, windowS: 0 };
      // The window ends here: what it logs while shutting down (momd says ERROR when its
      // threads end before its main loop notices the signal) is not the run's.
      const windowLog = this.readLog(this.windowOffset);
      // momd joins its threads for up to 20 s after the signal; ballast restores KSM first.
      await killPid(this.pid, 30_000);
      const ksmError = this.restoreKsm();
      return { usage, windowLog, ksmError, exitedEarly };
    })();
    return this.stopped;
  }

  /** Without the event loop (the process is exiting). */
  killNow(): void {
    try {
      process.kill(this.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
    this.restoreKsm();
  }
}

function tail(text: string): string {
  return text.trim().split('\n').slice(-12).join('\n');
}
