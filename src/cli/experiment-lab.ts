// `ballast experiment lab-memknobs`: the memknobs experiment on real QEMU guests (the lab) in a
// memory domain: no manager / MOM's style / ballast, repeated, with the spread. Table or --json
// on stdout, progress on stderr. The experiment cleans up after itself, also on Ctrl-C.
import type { Command } from 'commander';
import { ALL_CONFIGS, DEFAULT_SCALE, type ConfigName, CONFIGS, type LabScale } from '../experiments/lab-memknobs/plan.js';
import { parseSwapPreset, PRESETS } from '../experiments/lab-memknobs/swap-device.js';
import { runLabExperiment, LabUnavailable } from '../experiments/lab-memknobs/experiment.js';
import { formatLabTable } from '../experiments/lab-memknobs/format.js';
import { parseVia } from '../experiments/lab-memknobs/via.js';
import { formatDensityTable, runDensityExperiment } from '../experiments/lab-density/experiment.js';

function int(v: string, what: string): number {
  if (!/^\d+$/.test(v.trim())) throw new Error(`${what} must be a whole number, got "${v}"`);
  return Number(v);
}

function seconds(v: string, what: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(s|m|min)?$/.exec(v.trim());
  if (!m) throw new Error(`${what} must be a time like 240, 240s or 4m, got "${v}"`);
  return Number(m[1]) * (m[2] === 'm' || m[2] === 'min' ? 60 : 1);
}

function fraction(v: string, what: string): number {
  const m = /^(\d+)\/(\d+)$/.exec(v.trim());
  const n = m ? Number(m[1]) / Number(m[2]) : Number(v);
  if (!Number.isFinite(n)) throw new Error(`${what} must be a number like 0.667 or 2/3, got "${v}"`);
  return n;
}

/** undefined: the default cap; "off": none; else a positive number of CPUs. */
function cpuPerGuest(v: string | undefined): number | null | undefined {
  if (v === undefined) return undefined;
  if (v.trim() === 'off') return null;
  const n = Number(v);
  if (!(n > 0 && n <= 8)) throw new Error(`--cpu-per-guest must be a number of CPUs in (0, 8] or "off", got "${v}"`);
  return n;
}

function thpMode(v: string): 'host' | 'off' {
  if (v !== 'host' && v !== 'off') throw new Error(`--thp must be host or off, got "${v}"`);
  return v;
}

/** The guests and how they run, the same for every lab experiment (before its own options). */
function guestOptions(cmd: Command, durationS: number, thp: 'host' | 'off' = 'host'): void {
  cmd
    .option('--guests <n>', 'number of guests (1-8)', String(DEFAULT_SCALE.guests))
    .option('--mem <MiB>', 'memory per guest, MiB (128-512)', String(DEFAULT_SCALE.memMiB))
    .option('--duration <time>', 'measured time per run (e.g. 240, 4m)', String(durationS))
    .option('--period <time>', 'workload cycle per guest (default 30 s x max(guests, 4))')
    .option(
      '--warmup <time>',
      'time the guests (and the manager) run before the measured window, so that it measures the memory domain full rather than filling (default: one period)',
    )
    .option('--ramp-steps <n>', 'steps (one every ~4 s) from the base to the peak working set: fewer = guests grow faster', String(DEFAULT_SCALE.rampSteps))
    .option(
      '--cache <MiB>',
      'page cache each guest holds: it reads a disk of this size (random data) once when its workload starts, as a service reads its files (0: none)',
      '0',
    )
    .option('--qemu-overhead <MiB>', "QEMU's own memory per TCG guest counted in the domain's size", String(DEFAULT_SCALE.qemuOverheadMiB))
    .option(
      '--cpu-per-guest <n|off>',
      "CPUs each guest may use (a CFS cap, so that a guest waiting for memory loses its work rather than handing its CPU to the others); default 80% of the host's CPUs split among the guests, at most 1",
    )
    .option(
      '--thp <host|off>',
      "transparent huge pages for the guests' RAM: the host's setting, or off (a TCG guest touches huge-page-backed RAM ~2.5x faster, so throughput varies with what the host happened to back)",
      thp,
    );
}

/** How the guests run, and MOM's checkout for the momd row (both lab experiments). */
function managerOptions(cmd: Command): void {
  cmd
    .option(
      '--via <qmp|libvirt>',
      "how the guests run: qmp (QEMU with a QMP socket, ballast's manager in this process) or libvirt (a libvirtd of each run's own; ballast and momd each a process of its own, its CPU time and memory in the table; proxmox's rule through ballast's libvirt driver); default qmp, libvirt with momd",
    )
    .option(
      '--mom <path>',
      "a checkout of oVirt MOM (git clone https://github.com/oVirt/mom; never part of ballast) for the momd row: MOM's own daemon with its doc/balloon.rules and doc/ksm.rules through libvirt, using Debian's /usr/bin/python3 with python3-libvirt (apt-get install -y python3-libvirt)",
    )
    .option(
      '--vdsm <path>',
      "with --mom: a checkout of oVirt vdsm (git clone https://github.com/oVirt/vdsm; never part of ballast) whose mom.d the momd row runs instead of MOM's doc/ rules, as vdsm loads it for a cluster with ballooning and KSM on (00-defines, 02-balloon, 03-ksm, and 01-parameters as vdsm sets it over MOM's RPC: balloonEnabled, ksmEnabled and ksmMergeAcrossNodes True; not 04-cputune and 05-iotune, whose inputs come from vdsm's own interface)",
    );
}

function configList(v: string): ConfigName[] {
  const out = v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const c of out) if (!(ALL_CONFIGS as readonly string[]).includes(c)) throw new Error(`--configs: unknown "${c}" (${ALL_CONFIGS.join(', ')})`);
  if (!out.length) throw new Error(`--configs: name at least one of ${ALL_CONFIGS.join(', ')}`);
  return out as ConfigName[];
}

/** The options every lab experiment has: the guests, how they run, their swap, the output. */
interface GuestCliOptions {
  guests: string;
  mem: string;
  duration: string;
  period?: string;
  warmup?: string;
  rampSteps: string;
  cache: string;
  qemuOverhead: string;
  configs: string;
  swapDir: string;
  swap: string;
  cpuPerGuest?: string;
  thp: string;
  via?: string;
  mom?: string;
  vdsm?: string;
  json?: boolean;
}

export interface LabCliOptions extends GuestCliOptions {
  limitRatio: string;
  repeat: string;
  statsInterval: string;
  policyInterval: string;
  trace?: string;
}

/** The guests' scale from the shared options, at a domain limit ratio. */
function scaleFrom(o: GuestCliOptions, limitRatio: number): LabScale {
  const guests = int(o.guests, '--guests');
  const periodS = o.period ? seconds(o.period, '--period') : 30 * Math.max(guests, 4);
  return {
    guests,
    memMiB: int(o.mem, '--mem'),
    durationS: seconds(o.duration, '--duration'),
    warmupS: o.warmup ? seconds(o.warmup, '--warmup') : periodS,
    limitRatio,
    periodS,
    qemuOverheadMiB: int(o.qemuOverhead, '--qemu-overhead'),
    rampSteps: int(o.rampSteps, '--ramp-steps'),
    cacheMiB: int(o.cache, '--cache'),
  };
}

/** Options of the simulated experiments that lab-memknobs shares by name. */
const SHARED = ['guests', 'duration', 'json'] as const;

/**
 * `experiment` itself has --guests, --duration and --json (the simulated experiments'), and
 * commander lets a parent take its options from anywhere on the line, so
 * `ballast experiment lab-memknobs --guests 2` hands --guests to the parent. Take those values
 * from the parent when they came from the command line, and refuse the parent's other options
 * rather than silently running with defaults.
 */
export function withParentOptions<T extends object>(own: T, cmd: Command): T {
  const parent = cmd.parent;
  if (!parent) return own;
  const out = { ...own } as Record<string, unknown>;
  const parentOpts = parent.opts() as Record<string, unknown>;
  for (const key of Object.keys(parentOpts)) {
    if (parent.getOptionValueSource(key) !== 'cli') continue;
    if ((SHARED as readonly string[]).includes(key)) {
      if (cmd.getOptionValueSource(key) === 'cli' && (own as Record<string, unknown>)[key] !== parentOpts[key]) {
        throw new Error(`--${key} given twice with different values`);
      }
      out[key] = parentOpts[key];
    } else {
      const flag = parent.options.find((opt) => opt.attributeName() === key)?.long ?? key;
      throw new Error(`${flag} is an option of the simulated experiments, not of ${cmd.name()} (see ballast experiment ${cmd.name()} --help)`);
    }
  }
  return out as T;
}

export function addLabExperiment(experiment: Command): void {
  const cmd = experiment
    .command('lab-memknobs')
    .description(
      "measure on real QEMU guests (TCG) in a memory domain whether the policies help: no manager, MOM's style, ballast, Proxmox VE's auto-ballooning (proxmox), with free page reporting (+fpr) or virtio-mem devices (+vmem) (needs root and the lab)",
    );
  guestOptions(cmd, DEFAULT_SCALE.durationS);
  managerOptions(cmd);
  cmd
    .option('--limit-ratio <r>', "domain limit as a share of the guests' memory + QEMU overhead (e.g. 0.667 or 2/3)", '2/3')
    .option('--repeat <k>', 'repetitions of the three runs', '1')
    .option('--configs <list>', `runs to make, comma-separated, of ${ALL_CONFIGS.join(', ')}`, CONFIGS.join(','))
    .option('--stats-interval <s>', "manager's statistics interval, seconds", '2')
    .option('--policy-interval <s>', "manager's policy interval, seconds", '4')
    .option('--swap-dir <dir>', 'where to put a temporary swap file when the host has no swap', '/var/tmp')
    .option(
      '--swap <preset>',
      `what swapping costs: host (the host's swap as it is) or a throttled loop device: ${Object.values(PRESETS)
        .map((p) => `${p.name} (${p.readIops} IO/s)`)
        .join(', ')}`,
      'host',
    )
    .option('--trace <dir>', "keep each run's engine decisions (JSON lines), counter samples and guest consoles in this directory")
    .option('--json', 'print the whole result as JSON on stdout')
    .action(async (own: LabCliOptions, self: Command) => {
      const o = withParentOptions(own, self);
      try {
        const result = await runLabExperiment({
          scale: scaleFrom(o, fraction(o.limitRatio, '--limit-ratio')),
          repeat: int(o.repeat, '--repeat'),
          configs: configList(o.configs),
          statsIntervalS: seconds(o.statsInterval, '--stats-interval'),
          policyIntervalS: seconds(o.policyInterval, '--policy-interval'),
          swapDir: o.swapDir,
          swapPreset: parseSwapPreset(o.swap),
          cpuPerGuest: cpuPerGuest(o.cpuPerGuest),
          thp: thpMode(o.thp),
          via: parseVia(o.via),
          mom: o.mom,
          vdsm: o.vdsm,
          traceDir: o.trace,
        });
        process.stdout.write((o.json ? JSON.stringify(result) : formatLabTable(result)) + '\n');
      } catch (e) {
        if (e instanceof LabUnavailable) throw new Error(`lab-memknobs cannot run here: ${e.message}`);
        throw e;
      }
    });
}

interface DensityCliOptions extends GuestCliOptions {
  tolerance: string;
  steps: string;
  confirm: string;
  baselineRuns: string;
  minRatio: string;
}

export function addLabDensity(experiment: Command): void {
  const cmd = experiment
    .command('lab-density')
    .description(
      'find, per manager, the smallest memory domain in which real QEMU guests keep their throughput with no OOM kill (bisection on the limit; needs root and the lab)',
    );
  // Off by default here: the search's criterion is throughput, which huge pages move more than memory pressure.
  guestOptions(cmd, 150, 'off');
  managerOptions(cmd);
  cmd
    .option('--configs <list>', `managers to search for, comma-separated, of ${ALL_CONFIGS.join(', ')}`, CONFIGS.join(','))
    .option('--tolerance <f>', "largest loss of the guests' throughput (pages/s) that still passes, as a fraction", '0.05')
    .option('--steps <n>', 'bisection steps per manager', '4')
    .option('--confirm <n>', 'confirmation runs at the limit found', '1')
    .option('--baseline-runs <n>', 'unconstrained runs whose median is the baseline', '2')
    .option('--min-ratio <r>', "the search's lower bound, as a share of what the guests could hold", '0.4')
    .option('--swap <preset>', 'what swapping costs (see lab-memknobs --help)', 'hdd')
    .option('--swap-dir <dir>', 'where the swap file goes', '/var/tmp')
    .option('--json', 'print the whole result as JSON on stdout')
    .action(async (own: DensityCliOptions, self: Command) => {
      const o = withParentOptions(own, self);
      try {
        const result = await runDensityExperiment({
          scale: scaleFrom(o, 1),
          configs: configList(o.configs),
          tolerance: fraction(o.tolerance, '--tolerance'),
          steps: int(o.steps, '--steps'),
          confirm: int(o.confirm, '--confirm'),
          baselineRuns: int(o.baselineRuns, '--baseline-runs'),
          minRatio: fraction(o.minRatio, '--min-ratio'),
          swapPreset: parseSwapPreset(o.swap),
          swapDir: o.swapDir,
          cpuPerGuest: cpuPerGuest(o.cpuPerGuest),
          thp: thpMode(o.thp),
          via: parseVia(o.via),
          mom: o.mom,
          vdsm: o.vdsm,
        });
        process.stdout.write((o.json ? JSON.stringify(result) : formatDensityTable(result)) + '\n');
      } catch (e) {
        if (e instanceof LabUnavailable) throw new Error(`lab-density cannot run here: ${e.message}`);
        throw e;
      }
    });
}
