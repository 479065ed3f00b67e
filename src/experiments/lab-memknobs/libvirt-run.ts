// A run on libvirt guests (`--via libvirt`, or any run with momd): the run's own libvirtd
// and its guests (libvirt-guests.ts), and the row's manager as a process of its own — momd,
// or `ballast run` in MOM's style or ballast's — behind the LabManager interface run.ts
// drives every manager through. Its CPU time and memory over the window are in the row.
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Cleanup } from './cleanup.js';
import type { LabManager } from './lab-manager.js';
import { RunLibvirtd, type LibvirtRunGuest } from './libvirt-guests.js';
import type { ManagerReport } from './manager.js';
import { MomdManager } from './momd-manager.js';
import { BallastProcess } from './ballast-process.js';
import type { ProcessManagerReport } from './process-manager.js';
import type { ConfigParts, GuestPlan } from './plan.js';
import type { VirtioMemOptions } from '../../lab/guests.js';
import { RUN_DIR } from '../../lab/paths.js';

export interface LibvirtRunOptions {
  /** Short and unique among concurrent runs (paths of sockets derive from it). */
  tag: string;
  names: string[];
  plans: GuestPlan[];
  memMiB: number;
  virtioMem?: VirtioMemOptions;
  statsIntervalS: number;
  parts: ConfigParts;
  guestDirs: string[];
  /** Per guest: the other cgroups its QEMU joins (swap throttle, CPU cap). */
  moreCgroups: string[][];
  cacheMiB?: number;
  cleanup: Cleanup;
  bootTimeoutMs: number;
}

export interface LibvirtRun {
  guests: LibvirtRunGuest[];
  daemon: RunLibvirtd;
  /** Stops the guests and the daemon (once). */
  stop: () => Promise<void>;
}

export async function startLibvirtRun(o: LibvirtRunOptions): Promise<LibvirtRun> {
  const daemon = await RunLibvirtd.start(o.tag);
  const stop = o.cleanup.add({ what: `libvirtd of run ${o.tag} and its guests`, run: () => daemon.stop(), runSync: () => daemon.killNow() });
  const specs = o.plans.map((p, i) => ({
    name: o.names[i]!,
    memMiB: o.memMiB,
    workload: p.workload,
    delayS: p.delayS,
    statsPeriodS: Math.max(1, Math.floor(o.statsIntervalS)),
    memCgroup: o.guestDirs[i]!,
    moreCgroups: o.moreCgroups[i] ?? [],
    freePageReporting: o.parts.fpr,
    // The agent is a guest process with memory of its own: only where the manager reads it.
    guestAgent: o.parts.psi || o.parts.reclaim,
    ...(o.cacheMiB ? { cacheDiskMiB: o.cacheMiB } : {}),
    ...(o.virtioMem ? { virtioMem: o.virtioMem } : {}),
  }));
  const guests: LibvirtRunGuest[] = [];
  for (const s of specs) guests.push(await daemon.startGuest(s));
  await Promise.all(guests.map((g, i) => daemon.waitReady(g, specs[i]!, o.bootTimeoutMs)));
  return { guests, daemon, stop };
}

export interface ProcessManagerOptions {
  parts: ConfigParts;
  run: LibvirtRun;
  domainDir: string;
  statsIntervalS: number;
  policyIntervalS: number;
  /** A MOM checkout, for momd. */
  mom?: string;
  /** A vdsm checkout: momd runs its mom.d instead of MOM's doc/ rules. */
  vdsm?: string;
  /** Keep the manager's config and log here (--trace), else in a directory removed after. */
  traceDir?: string;
  tag: string;
  /** Where its process is SIGKILLed from if the experiment dies without stopping it. */
  cleanup: Cleanup;
}

/** Not counted for a manager that runs as a process (its log at info does not say): null in
 *  the JSON, never a made-up zero. */
const UNCOUNTED = Number.NaN;

/** A process manager's counts in the shape every row reports (pure). */
export function processManagerReport(r: ProcessManagerReport): ManagerReport {
  const momd = r.manager === 'momd';
  return {
    cycles: UNCOUNTED,
    balloonActions: r.balloonActions,
    // MOM has no rollbacks, no guard to veto and no virtio-mem: zero by construction.
    rollbacks: r.rollbacks ?? (momd ? 0 : UNCOUNTED),
    vetoes: momd ? 0 : UNCOUNTED,
    policyErrors: UNCOUNTED,
    controllerErrors: UNCOUNTED,
    driverErrors: UNCOUNTED,
    ksmRunSeen: r.ksmRunSeen,
    belowFloorLeft: UNCOUNTED,
    ksmRestoreError: r.ksmRestoreError,
    guestPsiPeak: null,
    psiStops: momd ? 0 : UNCOUNTED,
    vmemActions: r.vmemActions ?? 0,
    vmemUnplugs: r.vmemUnplugs ?? 0,
  };
}

/** The row's manager on libvirt guests: momd, or `ballast run` (MOM's style or ballast's). */
export class ProcessLabManager implements LabManager {
  private m: MomdManager | BallastProcess | null = null;
  private stopping: Promise<ManagerReport> | null = null;
  /** What it cost and did, once stopped. */
  report: ProcessManagerReport | null = null;
  private readonly workDir: string;

  constructor(private readonly o: ProcessManagerOptions) {
    this.workDir = o.traceDir ? join(o.traceDir, `${o.tag}-manager`) : join(RUN_DIR, `mgr-${o.tag}`);
  }

  get pid(): number | null {
    return this.m?.pid ?? null;
  }

  async start(): Promise<void> {
    rmSync(this.workDir, { recursive: true, force: true });
    mkdirSync(this.workDir, { recursive: true });
    const { parts, run } = this.o;
    const common = {
      domainDir: this.o.domainDir,
      statsIntervalS: this.o.statsIntervalS,
      policyIntervalS: this.o.policyIntervalS,
      workDir: this.workDir,
      guests: run.guests.length,
    };
    if (parts.manager === 'momd') {
      this.m = await MomdManager.start({ ...common, mom: this.o.mom!, vdsm: this.o.vdsm, uri: run.daemon.uri });
    } else if (parts.manager === 'ballast' || parts.manager === 'mom') {
      this.m = await BallastProcess.start({
        ...common,
        style: parts.manager,
        uri: run.daemon.openUri,
        socket: run.daemon.socket,
        qemuPidDir: run.daemon.pidDir,
        guestPsi: parts.psi,
        vmem: parts.vmem,
        reclaim: parts.reclaim,
      });
    } else throw new Error(`the ${parts.manager} manager does not run on libvirt guests`);
    const m = this.m;
    this.forget = this.o.cleanup.add({ what: `${parts.manager} process ${m.pid}`, run: async () => void (await m.stop()), runSync: () => m.killNow() });
  }

  private forget: (() => Promise<void>) | null = null;

  markWindow(): void {
    this.m?.markWindow();
  }

  stop(): Promise<ManagerReport> {
    this.stopping ??= (async () => {
      if (!this.m) throw new Error('the manager never started');
      const r = await this.m.stop();
      // Its cleanup step: stop() again, which gives the same figures.
      await this.forget?.();
      if (!this.o.traceDir) rmSync(this.workDir, { recursive: true, force: true });
      this.report = this.o.traceDir ? r : { ...r, log: null };
      return processManagerReport(r);
    })();
    return this.stopping;
  }
}
