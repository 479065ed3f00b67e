// The `proxmox` rows' manager: Proxmox VE's automatic ballooning (pvestatd's rule,
// proxmox-autoballoon.ts) driving the run's guests through ballast's QMP driver (as pvestatd
// speaks QMP) or, on `--via libvirt` guests beside momd, its libvirt driver, with the run's
// memory domain as the host whose usage it aims at 80%. Either way it reads the same balloon
// statistics and sets the same balloon targets.
//
// The guests are configured as a Proxmox VE user would: `memory:` = the guest's size and
// `balloon:` (the minimum) = half of it, `shares` left at the default. Half because a
// minimum is meant to be what the VM needs at rest plus a margin, and half of memory is the
// usual choice when the load is not known in advance (pvestatd may take the rest); here it is
// above the lab workload's small working set (1/6 of the guest) plus its kernel and below its
// peak (65%), so a guest at its peak needs pvestatd to give memory back, which is what the
// reaction time measures. pvestatd sets each balloon's statistics period to 2 s; so does this.
import { createWriteStream, type WriteStream } from 'node:fs';
import { MemoryDomainSource } from '../../host/memory-domain.js';
import { LibvirtHypervisor } from '../../hypervisor/libvirt/index.js';
import { QmpHypervisor } from '../../hypervisor/qmp/index.js';
import type { QmpGuestConfig } from '../../hypervisor/qmp/hypervisor.js';
import type { Hypervisor } from '../../types.js';
import type { LabManager } from './lab-manager.js';
import type { ManagerReport } from './manager.js';
import { autoBalloonRound, hostGoalKiB, PVE_AUTOBALLOON, type AutoBalloonVm } from './proxmox-autoballoon.js';

/** The guests' `balloon:` minimum as a share of their `memory:`. */
export const PVE_MIN_SHARE = 0.5;
/** pvestatd's guest-stats-polling-interval (qemu-server), seconds. */
const PVE_STATS_PERIOD_S = 2;

export interface ProxmoxManagerOptions {
  /** The guests: their QMP sockets, or the run's libvirtd. */
  guests: { qmpSockets: QmpGuestConfig[] } | { libvirt: { uri: string; socket: string } };
  domainDir: string;
  /** Seconds between rounds (default pvestatd's 10). */
  intervalS?: number;
  /** Host usage aimed at, percent (default 80). */
  targetPercent?: number;
  /** Each round's host reading, VM statuses and targets as JSON lines. */
  traceFile?: string;
  onError?: (what: string, err: unknown) => void;
}

/** A VM's `balloon:` for a guest of `maxKiB`, in whole MiB as a Proxmox VE config holds it. */
export function pveMinKiB(maxKiB: number): number {
  return Math.floor((maxKiB / 1024) * PVE_MIN_SHARE) * 1024;
}

interface Counts {
  rounds: number;
  balloonActions: number;
  controllerErrors: number;
  driverErrors: number;
}

export class ProxmoxManager implements LabManager {
  private readonly hypervisor: Hypervisor;
  private readonly host: MemoryDomainSource;
  private readonly trace: WriteStream | null;
  private readonly intervalMs: number;
  private readonly target: number;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private stopped = false;
  private readonly counts: Counts = { rounds: 0, balloonActions: 0, controllerErrors: 0, driverErrors: 0 };
  private atWindow: Counts | null = null;
  private stopping: Promise<ManagerReport> | null = null;

  constructor(private readonly o: ProxmoxManagerOptions) {
    this.hypervisor =
      'libvirt' in o.guests
        ? new LibvirtHypervisor({ uri: o.guests.libvirt.uri, socketPath: o.guests.libvirt.socket, statsPeriodSec: PVE_STATS_PERIOD_S, agentFallback: false })
        : new QmpHypervisor({ sockets: o.guests.qmpSockets, statsPeriodS: PVE_STATS_PERIOD_S });
    this.host = new MemoryDomainSource({ dir: o.domainDir });
    this.trace = o.traceFile ? createWriteStream(o.traceFile) : null;
    this.intervalMs = (o.intervalS ?? PVE_AUTOBALLOON.intervalS) * 1000;
    this.target = o.targetPercent ?? PVE_AUTOBALLOON.targetPercent;
  }

  async start(): Promise<void> {
    await this.hypervisor.connect();
    // pvestatd's first round comes one interval after it starts.
    this.schedule(Date.now() + this.intervalMs);
  }

  /** Rounds start every interval, as pvestatd's; one that overruns delays the next. */
  private schedule(at: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(
      () => {
        const started = Date.now();
        this.running = this.round()
          .catch((err) => this.o.onError?.('proxmox round', err))
          .finally(() => {
            this.running = null;
            this.schedule(Math.max(Date.now(), started + this.intervalMs));
          });
      },
      Math.max(0, at - Date.now()),
    );
  }

  private async round(): Promise<void> {
    let hostStats: Awaited<ReturnType<MemoryDomainSource['collect']>>;
    let guests: Awaited<ReturnType<Hypervisor['collect']>>;
    try {
      [hostStats, guests] = await Promise.all([this.host.collect(), this.hypervisor.collect()]);
    } catch (err) {
      this.counts.driverErrors++;
      this.o.onError?.('proxmox round', err);
      return;
    }
    this.counts.rounds++;
    // pvestatd: used = MemTotal - MemAvailable; the domain's mem_free is its "available".
    const total = hostStats.mem_available;
    const free = hostStats.mem_free;
    if (typeof total !== 'number' || typeof free !== 'number') return;
    const goal = hostGoalKiB(total, total - free, this.target);
    const vms: AutoBalloonVm[] = guests.map((g) => {
      const max = typeof g.stats.balloon_max === 'number' ? g.stats.balloon_max : 0;
      const cur = g.stats.balloon_cur;
      const unused = g.stats.mem_unused;
      return {
        id: g.id,
        balloonKiB: typeof cur === 'number' ? cur : null,
        minKiB: max > 0 ? pveMinKiB(max) : null,
        maxKiB: max,
        freeKiB: typeof unused === 'number' ? unused : null,
      };
    });
    const targets = autoBalloonRound(vms, goal);
    for (const [id, kib] of targets) {
      try {
        await this.hypervisor.setBalloon(id, kib);
        this.counts.balloonActions++;
      } catch (err) {
        this.counts.controllerErrors++;
        this.o.onError?.(`proxmox balloon ${id}`, err);
      }
    }
    this.trace?.write(
      `${JSON.stringify({
        ts: new Date().toISOString(),
        event: 'pve_round',
        total_kib: total,
        used_kib: total - free,
        goal_kib: goal,
        vms: Object.fromEntries(vms.map((v) => [v.id, { balloon: v.balloonKiB, min: v.minKiB, max: v.maxKiB, free: v.freeKiB }])),
        targets: Object.fromEntries(targets),
      })}\n`,
    );
  }

  markWindow(): void {
    this.atWindow = { ...this.counts };
  }

  stop(): Promise<ManagerReport> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<ManagerReport> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
    await this.hypervisor.close();
    if (this.trace) await new Promise<void>((r) => this.trace!.end(r));
    const a = this.atWindow ?? { rounds: 0, balloonActions: 0, controllerErrors: 0, driverErrors: 0 };
    const c = this.counts;
    // pvestatd has no guard, policy, KSM or PSI of its own: those counts stay empty.
    return {
      cycles: c.rounds - a.rounds,
      balloonActions: c.balloonActions - a.balloonActions,
      rollbacks: 0,
      vetoes: 0,
      policyErrors: 0,
      controllerErrors: c.controllerErrors - a.controllerErrors,
      driverErrors: c.driverErrors - a.driverErrors,
      ksmRunSeen: false,
      belowFloorLeft: 0,
      ksmRestoreError: null,
      guestPsiPeak: null,
      psiStops: 0,
      vmemActions: 0,
      vmemUnplugs: 0,
    };
  }
}
