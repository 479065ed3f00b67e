// The experiment's result as a table for people (the --json output is the result itself).
import type { Spread } from './metrics.js';
import type { LabExperimentResult } from './experiment.js';
import { CONFIG_TITLES } from './plan.js';

const num = (v: number) => (Math.abs(v) >= 100 ? Math.round(v).toLocaleString('en-US') : String(Math.round(v * 10) / 10));
const mp = (v: number) => (v / 1e6).toFixed(2);

/** "median (min–max)", or the single value when all runs agree; "-" when nothing was measured. */
export function fmtSpread(s: Spread | null, f: (v: number) => string = num): string {
  if (!s) return '-';
  if (s.min === s.max) return f(s.median);
  return `${f(s.median)} (${f(s.min)}–${f(s.max)})`;
}

function swapWhat(r: LabExperimentResult): string {
  const d = r.swap.device;
  if (d) {
    const m = d.measured ? `, measured ${d.measured.readIops} reads/s, ${d.measured.readLatencyMs} ms each` : '';
    return `preset ${r.swap.preset}: loop device ${d.loop} throttled to ${d.limits.readIops}/${d.limits.writeIops} IO/s read/write${m}`;
  }
  return r.swap.mode === 'file' ? 'a swap file added for the experiment' : "the host's";
}

/** A header and rows as aligned text: the first column left-aligned, the others right. */
export function formatColumns(cols: string[], rows: string[][]): string[] {
  const widths = cols.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [cols, ...rows].map(line);
}

const fmtRatio = (s: Spread | null) => fmtSpread(s, (v) => `${v.toFixed(2)}x`);

export function formatLabTable(r: LabExperimentResult): string {
  const s = r.scale;
  const processes = r.via === 'libvirt';
  const head = [
    `lab-memknobs: ${s.guests} x ${s.memMiB} MiB TCG guests in a cgroup v${r.cgroupVersion} memory domain limited to ${r.domainLimitMiB} MiB ` +
      `(${s.limitRatio.toFixed(2)} x (guest memory + ${s.qemuOverheadMiB} MiB QEMU overhead each)), swap ${r.swap.totalMiB} MiB (${swapWhat(r)})`,
    `${s.durationS} s measured per run${s.warmupS ? ` after ${s.warmupS} s of warm-up` : ''}, ${r.repeat} repetition(s); ${r.cpuPerGuest === null ? 'guests share the CPUs' : `each guest capped at ${r.cpuPerGuest} CPU`}${r.thp === 'off' ? ', no huge pages for guest RAM' : ''}; workload period ${s.periodS} s, ramp in ${s.rampSteps} steps, guests staggered by ${r.workload.delaysS.join('/')} s${s.cacheMiB ? `; each guest reads ${s.cacheMiB} MiB into its page cache once` : ''}; ` +
      `manager: stats every ${r.manager.statsIntervalS} s, policy every ${r.manager.policyIntervalS} s`,
    `cells: median (min–max) over repetitions; "vs none": ratio to the no-manager run of the same repetition; "kept": pages of workloads the OOM killer did not take; swap pages from ${r.swap.source}; "RSS in huge pages": AnonHugePages / Rss of the QEMUs over the window (THP ${r.thp === 'off' ? 'off for the QEMUs' : `as the host has it${r.hostThp ? `: enabled ${r.hostThp.enabled ?? '?'}, defrag ${r.hostThp.defrag ?? '?'}` : ''}`})`,
    `"reaction": managed rows, seconds from a guest starting a ramp while its balloon holds memory back to its memory growing back (median and largest over the guests' ramps in the window; "unanswered": ramps its memory did not come back for before the next one or the run's end)`,
    ...(r.via === 'libvirt'
      ? [
          `libvirt guests (each run's own libvirtd), ballast and momd each a process of its own (proxmox's rule runs in the experiment): "manager CPU s" its user + system CPU (with its reaped children's) over the window, "manager RSS MiB" its mean resident memory${r.mom ? `; momd ran MOM ${r.mom.commit} (${r.mom.checkout})${r.mom.vdsm ? ` with the mom.d of vdsm ${r.mom.vdsm.commit} (${r.mom.vdsm.checkout})` : ''}` : ''}`,
        ]
      : []),
    '',
  ];
  const cols = [
    'config',
    'throughput Mpages/s',
    'vs none',
    'kept Mpages/s',
    'vs none',
    'touch s',
    'vs none',
    'peaks',
    'OOM kills',
    'swap-in pages',
    'vs none',
    'swap-out pages',
    'vs none',
    'at limit s',
    'vs none',
    'balloon acts',
    'vmem acts',
    'RSS in huge pages',
    'host stall s',
    'host I/O stall s',
    'guest PSI peak %',
    'PSI stops',
    'reaction median s',
    'reaction max s',
    'ramps unanswered',
    // Only where the managers ran as processes of their own (libvirt rows).
    ...(processes ? ['manager CPU s', 'manager RSS MiB'] : []),
  ];
  const rows = r.summary.map((c) => [
    c.config,
    fmtSpread(c.throughput, mp),
    fmtRatio(c.throughputVsNone),
    fmtSpread(c.keptThroughput, mp),
    fmtRatio(c.keptThroughputVsNone),
    fmtSpread(c.touchS),
    fmtRatio(c.touchSVsNone),
    fmtSpread(c.peaks),
    fmtSpread(c.oomKills),
    fmtSpread(c.swapIn),
    fmtRatio(c.swapInVsNone),
    fmtSpread(c.swapOut),
    fmtRatio(c.swapOutVsNone),
    fmtSpread(c.pressureS),
    fmtRatio(c.pressureVsNone),
    fmtSpread(c.balloonActions),
    fmtSpread(c.vmemActions),
    fmtSpread(c.hugeShare, (v) => `${Math.round(v * 100)}%`),
    fmtSpread(c.hostStallS),
    fmtSpread(c.hostIoStallS ?? null),
    fmtSpread(c.guestPsiPeak),
    c.guestPsiPeak ? fmtSpread(c.psiStops) : '-',
    fmtSpread(c.reactionMedianS),
    fmtSpread(c.reactionMaxS),
    fmtSpread(c.reactionUnanswered),
    ...(processes ? [fmtSpread(c.managerCpuS ?? null), fmtSpread(c.managerRssMiB ?? null)] : []),
  ]);
  const legend = r.summary.map((c) => `  ${c.config}: ${CONFIG_TITLES[c.config]}`);
  return [...head, ...formatColumns(cols, rows), '', ...legend].join('\n');
}
