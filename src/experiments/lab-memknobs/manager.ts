// The manager of a run: ballast's Engine on real timers against the run's QEMU guests (QMP
// driver), with the memory domain as its host and the real KSM in /sys/kernel/mm/ksm.
// The two managed configurations run the same policy program (default.policy is
// balloon.policy followed by ksm.policy, then reclaim.policy, whose control is off unless a
// +reclaim row turns it on); they differ in the guard:
//   mom:     MOM's behaviour — only the basics: a target within [balloon_min, balloon_max],
//            no inflation of a guest whose use is unknown or whose sample is stale; no floor
//            headroom, no configured minimum, no rate limit, no rollback.
//   ballast: ballast's default safeguards (floor = used + 64 MiB, at least 128 MiB, at most
//            10% of balloon_max per cycle, rollback on guest swap-in / major-fault spikes).
// The virtio-mem rows (ballast+vmem...) run vmem.policy after the default policy, with
// ballast's safeguards (its guard keeps the balloon's floor rules in whole blocks).
import { hostSources } from '../../host/index.js';
import { QmpHypervisor } from '../../hypervisor/qmp/index.js';
import { Engine } from '../../engine/engine.js';
import { Loop } from '../../engine/loop.js';
import { balloonBounds, defaultSafeguards, type SafeguardConfig } from '../../controls/balloon/guard.js';
import type { QmpGuestConfig } from '../../hypervisor/qmp/hypervisor.js';
import { compilePolicies, shippedPolicy } from '../../policy/index.js';
import { createWriteStream, type WriteStream } from 'node:fs';
import { createLogger, nullLogger } from '../../log/logger.js';
import type { LabManager } from './lab-manager.js';

export const MOM_STYLE_SAFEGUARDS: Partial<SafeguardConfig> = {
  minGuestKiB: 0,
  headroomKiB: 0,
  maxStepFraction: 1,
  rollbackWindow: 0,
  // As measured before cache-aware floors: MOM's style counts page cache as used.
  cacheStepFraction: null,
  cacheStallPercent: null,
  psiStopPercent: null,
  rollbackPsiPercent: null,
  quietGrowthFraction: 0,
};

/** MOM's style with only the guest-PSI safeguard added (stop at 10%, roll back at 20% within
 *  the default rollback window); swap-in and major-fault rollbacks stay off. */
export const MOM_STYLE_PSI_SAFEGUARDS: Partial<SafeguardConfig> = {
  ...MOM_STYLE_SAFEGUARDS,
  rollbackWindow: defaultSafeguards.rollbackWindow,
  rollbackSwapInKiBPerS: Number.POSITIVE_INFINITY,
  rollbackMajorFaultsPerS: Number.POSITIVE_INFINITY,
  psiStopPercent: defaultSafeguards.psiStopPercent,
  rollbackPsiPercent: defaultSafeguards.rollbackPsiPercent,
};

export interface ManagerOptions {
  /** The manager: MOM's style or ballast's (free page reporting is the guests', not its). */
  config: 'mom' | 'ballast';
  /** Read the guests' PSI through their agents (each socket's agentSocket) and, for MOM's
   *  style, add the PSI safeguard (ballast's own safeguards have it by default). */
  guestPsi?: boolean;
  /** Run vmem.policy after the default policy: each guest's virtio-mem device gives back free
   *  blocks under host pressure (ballast only; guests without a device are left alone). */
  vmem?: boolean;
  /** [reclaim] on, so that default.policy's reclaim rules are carried out: guests reclaim their
   *  own page cache through their agents (qmpSockets must name the agent sockets). */
  reclaim?: boolean;
  qmpSockets: QmpGuestConfig[];
  domainDir: string;
  guestPids: number[];
  statsIntervalS: number;
  policyIntervalS: number;
  /** Write the engine's log (debug level: every decision with its reasons) and each cycle's
   *  guest balloon sizes to this JSON-lines file. */
  traceFile?: string;
  /** Errors the loop meets (logged by the caller). */
  onError?: (what: string, err: unknown) => void;
}

export interface ManagerReport {
  cycles: number;
  balloonActions: number;
  rollbacks: number;
  vetoes: number;
  policyErrors: number;
  controllerErrors: number;
  driverErrors: number;
  /** The manager switched KSM on at some point. */
  ksmRunSeen: boolean;
  /** Guest-cycles in which a guest's balloon was below the safeguards' floor (by at least the
   *  smallest change) and the cycle did not deflate it. */
  belowFloorLeft: number;
  ksmRestoreError: string | null;
  /** The highest guest memory stall (psi some avg10, %) the manager saw; null: none read. */
  guestPsiPeak: number | null;
  /** Guest-cycles in which the guard refused or rolled back an inflation for a guest's stall. */
  psiStops: number;
  /** virtio-mem resizes applied (unplugs and plugs), and the unplugs among them. */
  vmemActions: number;
  vmemUnplugs: number;
}

/** The shipped policies a manager runs, in order: MOM's style runs balloon + ksm (what
 *  default.policy is made of), ballast the default policy, and the virtio-mem rows add
 *  vmem.policy after it (its header: after default.policy, or before balloon.policy). */
export function managerPolicies(config: 'mom' | 'ballast', vmem: boolean): string[] {
  if (config === 'mom') return ['balloon', 'ksm'];
  return vmem ? ['default', 'vmem'] : ['default'];
}

/** The guard's reasons that name a guest's memory stall (refusals and rollbacks). */
const PSI_REASON = /psi some avg10/;

export class RunManager implements LabManager {
  private readonly hypervisor: QmpHypervisor;
  readonly engine: Engine;
  private readonly loop: Loop;
  private balloonActions = 0;
  private ksmRunSeen = false;
  private belowFloorLeft = 0;
  private guestPsiPeak: number | null = null;
  private psiStops = 0;
  private vmemActions = 0;
  private vmemUnplugs = 0;
  private readonly trace: WriteStream | null;

  constructor(o: ManagerOptions) {
    this.hypervisor = new QmpHypervisor({ sockets: o.qmpSockets, statsPeriodS: Math.max(1, Math.floor(o.statsIntervalS)), guestPsi: o.guestPsi === true });
    const policy = compilePolicies(managerPolicies(o.config, o.vmem === true).map((n) => shippedPolicy(n)));
    this.trace = o.traceFile ? createWriteStream(o.traceFile) : null;
    this.engine = new Engine({
      logger: this.trace ? createLogger({ format: 'json', level: 'debug', stream: this.trace }) : nullLogger,
      hypervisor: this.hypervisor,
      hostSources: hostSources({ domain: { dir: o.domainDir }, guestPids: () => o.guestPids }),
      policy,
      safeguards: o.config === 'mom' ? (o.guestPsi ? MOM_STYLE_PSI_SAFEGUARDS : MOM_STYLE_SAFEGUARDS) : undefined,
      sections: { reclaim: { enabled: o.reclaim === true } },
    });
    this.loop = new Loop(this.engine, {
      statsIntervalS: o.statsIntervalS,
      policyIntervalS: o.policyIntervalS,
      onError: (task, err) => o.onError?.(task, err),
    });
    this.loop.onCycle((r) => {
      const deflated = new Set<string>();
      for (const out of r.outcomes) {
        if (out.action.control === 'balloon_target' && out.result === 'applied') {
          this.balloonActions++;
          if ((out.action.to ?? 0) > (out.action.from ?? Infinity)) deflated.add(out.action.entity);
        }
        if (out.action.control === 'vmem_target' && out.result === 'applied') {
          this.vmemActions++;
          if ((out.action.to ?? Infinity) < (out.action.from ?? 0)) this.vmemUnplugs++;
        }
        if (out.action.control === 'ksm_run' && out.result === 'applied' && out.action.to === 1) this.ksmRunSeen = true;
        if (out.action.control === 'balloon_target' && out.action.reasons.some((x) => PSI_REASON.test(x))) this.psiStops++;
      }
      for (const n of r.notes) if (n.control === 'balloon_target' && n.reasons.some((x) => PSI_REASON.test(x))) this.psiStops++;
      this.afterCycle(r.cycle, deflated);
    });
  }

  private afterCycle(cycle: number, deflated: Set<string>): void {
    const snap = this.engine.snapshot();
    const headroom = this.engine.safeguards.headroomKiB;
    const sizes: Record<string, [number | null, number | null]> = {};
    for (const g of snap.guests) {
      const cur = g.stats.balloon_cur ?? null;
      const unused = g.stats.mem_unused ?? null;
      sizes[g.name] = [cur, unused];
      const psi = g.stats.psi_some_avg10;
      if (typeof psi === 'number' && (this.guestPsiPeak === null || psi > this.guestPsiPeak)) this.guestPsiPeak = psi;
      // The guard's own floor (without page cache where the guest reports MemAvailable): a
      // cache-filled guest has little unused memory and is not short of anything.
      const b = headroom > 0 ? balloonBounds(g.stats, this.engine.safeguards) : null;
      if (b !== null && typeof b !== 'string' && b.floor - (cur ?? b.floor) >= b.minChange && !deflated.has(g.name)) this.belowFloorLeft++;
    }
    this.trace?.write(
      JSON.stringify({
        ts: new Date().toISOString(),
        event: 'cycle_guests',
        cycle,
        host_free: snap.host.stats.mem_free,
        host_available: snap.host.stats.mem_available,
        guests: sizes,
      }) + '\n',
    );
  }

  async start(): Promise<void> {
    await this.hypervisor.connect();
    this.loop.start();
  }

  private stopping: Promise<ManagerReport> | null = null;
  /** The counts when the measured window began (after the warm-up): the report is what
   *  happened since. */
  private atWindow: ManagerReport | null = null;

  /** The measured window begins now: the report counts from here. */
  markWindow(): void {
    this.atWindow = this.counts(null);
  }

  private counts(ksmRestoreError: string | null): ManagerReport {
    const c = this.engine.counters;
    return {
      cycles: c.cycles,
      balloonActions: this.balloonActions,
      rollbacks: c.rollbacks,
      vetoes: c.vetoes,
      policyErrors: c.policyErrors,
      controllerErrors: c.controllerErrors,
      driverErrors: c.driverErrors,
      ksmRunSeen: this.ksmRunSeen,
      belowFloorLeft: this.belowFloorLeft,
      ksmRestoreError,
      guestPsiPeak: this.guestPsiPeak,
      psiStops: this.psiStops,
      vmemActions: this.vmemActions,
      vmemUnplugs: this.vmemUnplugs,
    };
  }

  /** Stops the loop, puts KSM back as found, closes the QMP connections (once; later calls
   *  get the same report). Balloons are left: the guests are stopped right after. */

  stop(): Promise<ManagerReport> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<ManagerReport> {
    await this.loop.stop();
    let ksmRestoreError: string | null = null;
    // Each module puts back what it changed (KSM as found; balloons are left).
    for (const { instance } of this.engine.controlInstances) {
      try {
        await instance.restore?.([]);
      } catch (e) {
        ksmRestoreError = (e as Error).message;
      }
    }
    this.engine.dispose();
    await this.hypervisor.close();
    if (this.trace) await new Promise<void>((r) => this.trace!.end(r));
    const now = this.counts(ksmRestoreError);
    const a = this.atWindow;
    if (!a) return now;
    // Event counts since the window began; KSM switched on and the stall peak stay whole-run.
    return {
      ...now,
      cycles: now.cycles - a.cycles,
      balloonActions: now.balloonActions - a.balloonActions,
      rollbacks: now.rollbacks - a.rollbacks,
      vetoes: now.vetoes - a.vetoes,
      policyErrors: now.policyErrors - a.policyErrors,
      controllerErrors: now.controllerErrors - a.controllerErrors,
      driverErrors: now.driverErrors - a.driverErrors,
      belowFloorLeft: now.belowFloorLeft - a.belowFloorLeft,
      psiStops: now.psiStops - a.psiStops,
      vmemActions: now.vmemActions - a.vmemActions,
      vmemUnplugs: now.vmemUnplugs - a.vmemUnplugs,
    };
  }
}
