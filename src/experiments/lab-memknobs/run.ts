// One run of the experiment: the guests boot inside a fresh memory domain with identical
// staggered workload schedules, the chosen manager (or none) runs for the measured window,
// then everything is stopped and the measurements are folded into a RunResult.
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startQemuGuest, stopQemuGuest, type QemuGuest } from '../../lab/qemu.js';
import { QEMU_DIR } from '../../lab/qemu.js';
import { GUEST_PREFIX } from '../../lab/paths.js';
import type { Cleanup } from './cleanup.js';
import { ConsoleTail } from './console-tail.js';
import { readCounters, readHugeSample, readKsmSample, summarizeKsm, type KsmSample } from './counters.js';
import { createDomain, removeDomain } from './domain.js';
import { RunManager, type ManagerReport } from './manager.js';
import type { LabManager } from './lab-manager.js';
import { ProxmoxManager } from './proxmox-manager.js';
import { guestReactions, summarizeReactions, type ReactionSummary } from './reaction.js';
import {
  hugePageShare,
  minGuestTotalKiB,
  oomKills,
  peaksReached,
  summarizeCounters,
  workloadPages,
  keptWorkloadPages,
  workloadTouchSeconds,
  workloadTrouble,
  type CounterSample,
  type CounterSummary,
  type HugeSample,
} from './metrics.js';
import { configParts, domainLimitMiB, planGuests, vmemLayout, type ConfigName, type LabScale } from './plan.js';
import { clearStaleKsm } from './setup.js';
import { throttleV2, type ThrottledSwap } from './swap-device.js';
import { createCpuCaps, removeCpuCaps, removeCpuCapsNow } from './cpu-cap.js';
import { ProcessLabManager, startLibvirtRun, type LibvirtRun } from './libvirt-run.js';
import type { ProcessManagerReport } from './process-manager.js';
import type { GuestsVia } from './via.js';

export interface RunOptions {
  config: ConfigName;
  scale: LabScale;
  repetition: number;
  statsIntervalS: number;
  policyIntervalS: number;
  cleanup: Cleanup;
  say: (m: string) => void;
  /** Keep the engine's decisions and the guests' consoles of each run here. */
  traceDir?: string;
  /** Seconds between progress lines. */
  progressEveryS?: number;
  /** The experiment's throttled swap device, when a --swap preset is used. */
  swapDevice?: ThrottledSwap | null;
  /** CPUs each guest may use (a CFS cap); null: no cap, the guests share the host's CPUs. */
  cpuPerGuest?: number | null;
  /** Transparent huge pages for the QEMUs' RAM: the host's setting, or off. */
  thp?: 'host' | 'off';
  /** QEMU with QMP (default), or libvirt guests with the manager as a process (via.ts). */
  via?: GuestsVia;
  /** A MOM checkout, for the momd row. */
  mom?: string;
  /** A vdsm checkout: the momd row runs its mom.d. */
  vdsm?: string;
}

export interface GuestResult {
  name: string;
  pagesPerS: number;
  /** Pages per second written by workload processes the OOM killer did not take. */
  keptPagesPerS: number;
  /** Seconds of the window the workload spent touching its working set (schedule progress). */
  touchS: number;
  /** Finished ramps: the workload reached its peak working set. */
  peaks: number;
  oomKills: number;
  workloadExits: number;
  allocFailed: number;
  /** Smallest MemTotal the guest reported (its balloon at the deepest), MiB. */
  minMemMiB: number | null;
}

export interface RunResult {
  config: ConfigName;
  repetition: number;
  /** Sum over the guests of the pages their workloads wrote per second of the window. */
  throughput: number;
  /** The same, counting only the work of processes that were not OOM-killed (work kept). */
  keptThroughput: number;
  /** Seconds the guests spent in their touch steps, summed: work time, whatever the touch rate. */
  touchS: number;
  /** Peaks reached, summed over the guests (a work unit that only completes with room). */
  peaks: number;
  oomKills: number;
  /** Swap traffic over the window, pages: host /proc/vmstat (only the domain swaps here). */
  swapIn: number;
  swapOut: number;
  swapSource: string;
  /** Seconds of the window in which the domain was at its limit (reclaim ran). */
  pressureS: number;
  counters: CounterSummary;
  /** Share of the QEMUs' RSS in host huge pages over the window (AnonHugePages / Rss of
   *  smaps_rollup, sampled every HUGE_SAMPLE_S), and the mean RSS they had, MiB; null: unread. */
  hugeShare: number | null;
  /** KSM on the host over the window (null: no KSM): the share of samples it was scanning in,
   *  and the mean memory it saved. The rows without a manager run with it stopped. */
  ksm?: { runShare: number; savedMiB: number } | null;
  qemuRssMiB: number | null;
  guests: GuestResult[];
  manager: ManagerReport | null;
  /** Libvirt rows: the manager ran as a process of its own; what it cost over the window
   *  (CPU s, RSS) and, for momd, the MOM commit. */
  managerProcess?: ProcessManagerReport | null;
  /** Managed rows: how long a guest that starts a ramp with memory ballooned away waits for
   *  it to come back (reaction.ts); null without a manager. */
  reaction?: ReactionSummary | null;
  windowS: number;
  bootS: number;
}

/** Seconds between huge-page samples: smaps_rollup walks each QEMU's page tables. */
const HUGE_SAMPLE_S = 5;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const mib = (kib: number | null) => (kib === null ? '?' : String(Math.round(kib / 1024)));

function qemuPidFromRecord(name: string): number | null {
  try {
    const rec = JSON.parse(readFileSync(join(QEMU_DIR, `${name}.json`), 'utf8')) as { pid?: number };
    return typeof rec.pid === 'number' ? rec.pid : null;
  } catch {
    return null;
  }
}

/** A process manager's cost over the window, for the run's last progress line. */
function processSummary(p: ProcessManagerReport | null | undefined): string {
  if (!p) return '';
  const u = p.usage;
  return `; ${p.manager} (PID ${p.pid}${p.momCommit ? `, MOM ${p.momCommit.slice(0, 12)}` : ''}${p.vdsmCommit ? ` with vdsm ${p.vdsmCommit.slice(0, 12)}'s mom.d` : ''}${p.reclaimActions ? `, ${p.reclaimActions} reclaims inside guests` : ''}) used ${u.cpuS ?? '?'} CPU s, RSS ${u.rssMeanMiB ?? '?'} MiB mean / ${u.rssPeakMiB ?? '?'} MiB peak, ${p.errors} error lines${p.exitedEarly ? `, EXITED before the run ended (its log: ${p.log ?? 'keep it with --trace'})` : ''}`;
}

export async function runOnce(o: RunOptions): Promise<RunResult> {
  const { scale, config, say, cleanup } = o;
  const tag = `[${config} #${o.repetition}]`;
  const plans = planGuests(scale);
  const limitKiB = domainLimitMiB(scale) * 1024;
  const cgName = `ballast-lab-experiment-${process.pid}-${config}-${o.repetition}`;
  clearStaleKsm(say);
  const domain = await createDomain(cgName, limitKiB, scale.guests);
  const parts = configParts(config);
  // virtio-mem rows: the same memory per guest, half of it in the device.
  const vmem = parts.vmem ? vmemLayout(scale.memMiB) : null;
  const undoDomain = cleanup.add({
    what: `cgroup ${domain.dir}`,
    run: async () => {
      const left = await removeDomain(domain);
      if (left.length) throw new Error(`could not remove ${left.join('; ')}`);
    },
    runSync: () => {
      for (const d of [...domain.guestDirs, domain.dir]) {
        try {
          rmSync(d, { recursive: false });
        } catch {
          /* busy or gone */
        }
      }
    },
  });
  // After the domain's undo step: a failure here still removes the domain.
  const caps = o.cpuPerGuest ? createCpuCaps(cgName, o.cpuPerGuest, domain) : null;
  const undoCaps = caps
    ? cleanup.add({
        what: `cpu caps of ${cgName}`,
        run: async () => {
          const left = await removeCpuCaps(caps);
          if (left.length) throw new Error(`could not remove ${left.join('; ')}`);
        },
        runSync: () => removeCpuCapsNow(caps),
      })
    : null;
  const sockDir = mkdtempSync(join(tmpdir(), 'ballast-exp-'));
  const names = plans.map((p) => `${GUEST_PREFIX}x${process.pid}-${p.index + 1}`);
  const undoGuests = cleanup.add({
    what: `guests ${names.join(', ')}`,
    run: async () => {
      for (const n of names) await stopQemuGuest(n);
      rmSync(sockDir, { recursive: true, force: true });
    },
    runSync: () => {
      for (const n of names) {
        const pid = qemuPidFromRecord(n);
        if (pid)
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            /* gone */
          }
      }
    },
  });

  let undoManager: (() => Promise<void>) | null = null;
  let lv: LibvirtRun | null = null;
  try {
    // v2: the swap device's limits go on the domain itself (v1: the QEMUs join the blkio cgroup).
    if (o.swapDevice && domain.version === 2) throttleV2(domain.dir, join(domain.dir, '..'), o.swapDevice);
    const blkio = o.swapDevice?.blkioDir ? [o.swapDevice.blkioDir] : [];
    say(
      `${tag} domain ${domain.dir}: limit ${domainLimitMiB(scale)} MiB for ${scale.guests} x ${scale.memMiB} MiB guests${vmem ? ` (${vmem.baseMiB} MiB base + ${vmem.device.maxMiB} MiB virtio-mem each)` : ''}; booting them`,
    );
    const t0 = Date.now();
    lv =
      o.via === 'libvirt'
        ? await startLibvirtRun({
            // Two letters of each part of the row's name: QEMU's monitor socket path under the
            // run's libvirtd must stay within a unix socket's 108 bytes.
            tag: `${process.pid}${config
              .split('+')
              .map((p) => p.slice(0, 2))
              .join('')}${o.repetition}`,
            names,
            plans,
            memMiB: vmem ? vmem.baseMiB : scale.memMiB,
            ...(vmem ? { virtioMem: vmem.device } : {}),
            statsIntervalS: o.statsIntervalS,
            parts,
            guestDirs: domain.guestDirs,
            moreCgroups: plans.map((_, i) => [...blkio, ...(caps?.dirs[i] ? [caps.dirs[i]] : [])]),
            cacheMiB: scale.cacheMiB,
            cleanup,
            bootTimeoutMs: 240_000,
          })
        : null;
    const qemuGuests: QemuGuest[] = lv
      ? []
      : await Promise.all(
          plans.map((p, i) =>
            startQemuGuest({
              name: names[i]!,
              memMiB: vmem ? vmem.baseMiB : scale.memMiB,
              ...(vmem ? { virtioMem: vmem.device } : {}),
              qmpSocket: join(sockDir, `g${i + 1}.qmp`),
              workload: p.workload,
              delayS: p.delayS,
              reportS: 2,
              meminfoS: 2,
              // The agent is a guest process with memory of its own: only where the manager reads it.
              guestAgent: parts.psi || parts.reclaim,
              memCgroup: domain.guestDirs[i],
              moreCgroups: [...blkio, ...(caps?.dirs[i] ? [caps.dirs[i]] : [])],
              freePageReporting: parts.fpr,
              ...(scale.cacheMiB ? { cacheDiskMiB: scale.cacheMiB, cacheS: 0 } : {}),
              thp: o.thp,
              bootTimeoutMs: 240_000,
            }),
          ),
        );
    const guests: { pid: number; consoleLog: string }[] = lv ? lv.guests : qemuGuests;
    const bootS = (Date.now() - t0) / 1000;
    let manager: LabManager | null = null;
    let processManager: ProcessLabManager | null = null;
    const tails = guests.map((g) => new ConsoleTail(g.consoleLog));
    for (const t of tails) t.poll();

    if (parts.manager !== 'none') {
      const traceFile = o.traceDir ? join(o.traceDir, `${config}-${o.repetition}-manager.jsonl`) : undefined;
      const onError = (task: string, err: unknown) => say(`${tag} manager ${task} error: ${(err as Error).message}`);
      const m: LabManager =
        parts.manager === 'proxmox'
          ? new ProxmoxManager({
              guests: lv ? { libvirt: { uri: lv.daemon.openUri, socket: lv.daemon.socket } } : { qmpSockets: qemuGuests.map((g) => ({ socket: g.qmpSocket })) },
              domainDir: domain.dir,
              traceFile,
              onError,
            })
          : lv
            ? (processManager = new ProcessLabManager({
                parts,
                run: lv,
                domainDir: domain.dir,
                statsIntervalS: o.statsIntervalS,
                policyIntervalS: o.policyIntervalS,
                mom: o.mom,
                vdsm: o.vdsm,
                traceDir: o.traceDir,
                tag: `${config}-${o.repetition}`,
                cleanup,
              }))
            : new RunManager({
                config: parts.manager as 'mom' | 'ballast',
                guestPsi: parts.psi,
                vmem: parts.vmem,
                reclaim: parts.reclaim,
                qmpSockets: qemuGuests.map((g) => ({
                  socket: g.qmpSocket,
                  ...((parts.psi || parts.reclaim) && g.qgaSocket ? { agentSocket: g.qgaSocket } : {}),
                })),
                domainDir: domain.dir,
                guestPids: guests.map((g) => g.pid),
                statsIntervalS: o.statsIntervalS,
                policyIntervalS: o.policyIntervalS,
                traceFile,
                onError,
              });
      manager = m;
      undoManager = cleanup.add({ what: `${config} manager (KSM knobs restored)`, run: async () => void (await m.stop()) });
      await m.start();
    }
    const warmupS = scale.warmupS ?? 0;
    say(
      `${tag} ${guests.length} guests up in ${bootS.toFixed(0)} s; ${warmupS > 0 ? `warming up ${warmupS} s, then ` : ''}measuring ${scale.durationS} s${manager ? ` with the ${config} manager` : ' without a manager'}`,
    );
    // The warm-up: everything runs as in the window, nothing is counted. The consoles are
    // read on the way so that every line keeps the time it arrived.
    const warmEnd = Date.now() / 1000 + warmupS;
    for (let now = Date.now() / 1000; now < warmEnd; now = Date.now() / 1000) {
      await sleep(Math.min(1000, (warmEnd - now) * 1000));
      for (const t of tails) t.poll(Date.now() / 1000);
    }
    manager?.markWindow();

    const from = Date.now() / 1000;
    const to = from + scale.durationS;
    const samples: CounterSample[] = [readCounters(domain.dir, domain.version, from)];
    const pids = guests.map((g) => g.pid);
    const huge: HugeSample[] = [];
    const ksm: KsmSample[] = [];
    let nextHuge = from;
    const every = o.progressEveryS ?? 30;
    let nextProgress = from + every;
    let lastPages = 0;
    let lastAt = from;
    for (;;) {
      const now = Date.now() / 1000;
      if (now >= to) break;
      await sleep(Math.min(1000, (to - now) * 1000));
      const at = Date.now() / 1000;
      for (const t of tails) t.poll(at);
      samples.push(readCounters(domain.dir, domain.version, at));
      if (at >= nextHuge) {
        nextHuge += HUGE_SAMPLE_S;
        const h = readHugeSample(pids, at);
        if (h) huge.push(h);
        const k = readKsmSample();
        if (k) ksm.push(k);
      }
      if (at >= nextProgress) {
        nextProgress += every;
        const all = tails.flatMap((t) => t.lines);
        const pages = workloadPages(all, from, at + 1);
        const sizes = tails.map((t) => {
          const m = t.lines.filter((l) => l.line.kind === 'meminfo').at(-1);
          return m ? mib(Number(m.line.fields.total_kib)) : '?';
        });
        const c = samples.at(-1)!;
        const share = hugePageShare(huge.slice(-1));
        say(
          `${tag} ${Math.round(at - from)}/${scale.durationS} s: ${((pages - lastPages) / (at - lastAt) / 1e6).toFixed(2)} Mpages/s, domain ${mib(c.usageKiB)}/${mib(limitKiB)} MiB, swap ${mib(c.swapKiB)} MiB, guests ${sizes.join('/')} MiB, QEMU RSS in huge pages ${share === null ? '?' : `${Math.round(share * 100)}%`}, OOM kills ${oomKills(all, from, at + 1)}`,
        );
        lastPages = pages;
        lastAt = at;
      }
    }
    const end = Date.now() / 1000;
    for (const t of tails) t.poll(end);
    samples.push(readCounters(domain.dir, domain.version, end));
    const managerReport = manager ? await manager.stop() : null;
    await undoManager?.(); // stop() is idempotent: this only drops the undo step

    if (o.traceDir) {
      guests.forEach((g, i) => {
        copyFileSync(g.consoleLog, join(o.traceDir!, `${config}-${o.repetition}-g${i + 1}.console`));
      });
      writeFileSync(join(o.traceDir, `${config}-${o.repetition}-counters.jsonl`), samples.map((c) => JSON.stringify(c)).join('\n') + '\n');
      writeFileSync(join(o.traceDir, `${config}-${o.repetition}-huge.jsonl`), huge.map((h) => JSON.stringify(h)).join('\n') + '\n');
    }
    const windowS = end - from;
    const guestResults: GuestResult[] = tails.map((t, i) => {
      const trouble = workloadTrouble(t.lines, from, end + 1);
      const minKiB = minGuestTotalKiB(t.lines, from, end + 1);
      return {
        name: names[i]!,
        pagesPerS: Math.round(workloadPages(t.lines, from, end + 1) / windowS),
        keptPagesPerS: Math.round(keptWorkloadPages(t.lines, from, end + 1) / windowS),
        touchS: Math.round(workloadTouchSeconds(t.lines, from, end + 1) * 10) / 10,
        peaks: peaksReached(t.lines, from, end + 1, plans[i]!.peakMiB * 1024),
        oomKills: oomKills(t.lines, from, end + 1),
        workloadExits: trouble.exits,
        allocFailed: trouble.allocFailed,
        minMemMiB: minKiB === null ? null : Math.round(minKiB / 1024),
      };
    });
    const counters = summarizeCounters(samples);
    const hugeShare = hugePageShare(huge);
    const result: RunResult = {
      config,
      repetition: o.repetition,
      throughput: guestResults.reduce((s, g) => s + g.pagesPerS, 0),
      keptThroughput: guestResults.reduce((s, g) => s + g.keptPagesPerS, 0),
      touchS: Math.round(guestResults.reduce((s, g) => s + g.touchS, 0) * 10) / 10,
      peaks: guestResults.reduce((s, g) => s + g.peaks, 0),
      oomKills: guestResults.reduce((s, g) => s + g.oomKills, 0),
      swapIn: counters.domainSwapIn ?? counters.hostSwapIn,
      swapOut: counters.domainSwapOut ?? counters.hostSwapOut,
      swapSource: counters.domainSwapOut !== null ? 'cgroup memory.stat pswpin/pswpout' : 'host /proc/vmstat pswpin/pswpout',
      pressureS: counters.pressureS,
      counters,
      hugeShare: hugeShare === null ? null : Math.round(hugeShare * 1000) / 1000,
      ksm: summarizeKsm(ksm),
      qemuRssMiB: huge.length ? Math.round(huge.reduce((s, h) => s + h.rssKiB, 0) / huge.length / 1024) : null,
      guests: guestResults,
      manager: managerReport,
      managerProcess: processManager?.report ?? null,
      reaction: manager ? summarizeReactions(tails.map((t) => guestReactions(t.lines, from, end + 1))) : null,
      windowS: Math.round(windowS * 10) / 10,
      bootS: Math.round(bootS * 10) / 10,
    };
    say(
      `${tag} done: ${(result.throughput / 1e6).toFixed(2)} Mpages/s, swap in/out ${result.swapIn}/${result.swapOut} pages, OOM kills ${result.oomKills}, ${result.pressureS} s at the limit${result.counters.psiSomeS === null ? '' : `, host stalled ${result.counters.psiSomeS} s on memory${result.counters.psiIoSomeS === null ? '' : ` and ${result.counters.psiIoSomeS} s on I/O`}`}${hugeShare === null ? '' : `, ${Math.round(hugeShare * 100)}% of QEMU RSS in huge pages`}${result.ksm?.runShare ? `, KSM scanning ${Math.round(result.ksm.runShare * 100)}% of the window (saved ${result.ksm.savedMiB} MiB)` : ''}${managerReport ? `, ${managerReport.balloonActions} balloon actions${parts.vmem ? `, ${managerReport.vmemActions} virtio-mem actions (${managerReport.vmemUnplugs} unplugs)` : ''}, ${managerReport.rollbacks} rollbacks${Number.isNaN(managerReport.belowFloorLeft) ? '' : `, ${managerReport.belowFloorLeft} guest-cycles left below the floor`}` : ''}${processSummary(result.managerProcess)}`,
    );
    return result;
  } finally {
    if (undoManager) await undoManager().catch((e) => say(`${tag} stopping the manager: ${(e as Error).message}`));
    await lv?.stop().catch((e) => say(`${tag} stopping the libvirt guests: ${(e as Error).message}`));
    await undoGuests().catch((e) => say(`${tag} stopping guests: ${(e as Error).message}`));
    await undoCaps?.().catch((e) => say(`${tag} ${(e as Error).message}`));
    await undoDomain().catch((e) => say(`${tag} ${(e as Error).message}`));
  }
}
