// Built-in scenarios (the seed paper's two experiments at any scale, a demo, a leak) and
// loading scenario files (JSON or TOML) with errors that name the bad key.
import { readFileSync } from 'node:fs';
import { extname } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { z } from 'zod';
import { Rng } from './rng.js';
import type { GuestSpec, ScenarioSpec } from './world.js';
import type { WorkloadSpec } from './workloads.js';
import type { ParamOverrides } from './params.js';

export interface ExperimentScale {
  guests: number;
  guestMiB: number;
  hostMiB: number;
  cpus: number;
  seed: number;
}

/** The seed's Memknobs setup: 32 guests of 2 GiB and 1 vCPU on a 48 GiB, 16-CPU host. */
export const memknobsDefaults: ExperimentScale = { guests: 32, guestMiB: 2048, hostMiB: 48 * 1024, cpus: 16, seed: 1 };
/** The seed's Cloudy setup: 32 guests of 1 GiB; 15,714 huge pages reserved on the 48 GiB
 *  host left about 16 GiB for them. */
export const cloudyDefaults: ExperimentScale = { guests: 32, guestMiB: 1024, hostMiB: 48 * 1024, cpus: 16, seed: 1 };

/** Host swap large enough to hold the whole overcommit (guests' memory plus overheads
 *  beyond host memory) plus 4 GiB: the seed's runs without a policy finished without the
 *  host killing guests, so its host swap held the overcommit. */
function swapForOvercommit(s: ExperimentScale, usableMiB: number): number {
  const over = s.guests * (s.guestMiB + 64) + 1024 - usableMiB;
  return Math.max(4096, Math.ceil(over) + 4096);
}

/** Memknobs: each guest runs the program again and again with a growing buffer, each in
 *  its own pattern (sizes, run lengths and phase drawn from the seed). The seed calibrated
 *  its patterns "to put the host under enough memory pressure to produce periodic swap
 *  activity"; here the largest buffer is 60-95% of guest memory and the smallest 15%. */
export function memknobsScenario(scale: Partial<ExperimentScale> = {}): ScenarioSpec {
  const s = { ...memknobsDefaults, ...scale };
  const rng = new Rng(s.seed);
  const guests: GuestSpec[] = [];
  for (let i = 0; i < s.guests; i++) {
    const steps = rng.int(4, 8);
    const lo = 0.15 * s.guestMiB;
    const hi = rng.range(0.6, 0.95) * s.guestMiB;
    const sizes = Array.from({ length: steps }, (_, k) => Math.round(lo + ((hi - lo) * k) / (steps - 1)));
    const runS = Math.round(rng.range(60, 180));
    const pauseS = Math.round(rng.range(5, 20));
    const offsetS = Math.round(rng.range(0, steps * (runS + pauseS)));
    guests.push({
      name: `vm${String(i + 1).padStart(2, '0')}`,
      memMiB: s.guestMiB,
      vcpus: 1,
      workload: { kind: 'memknobs', sizesMiB: sizes, runS, pauseS, offsetS },
    });
  }
  return {
    name: 'memknobs',
    description: `Memknobs: ${s.guests} guests x ${s.guestMiB} MiB on a ${s.hostMiB} MiB host, ${s.cpus} CPUs`,
    host: { memMiB: s.hostMiB, swapMiB: swapForOvercommit(s, s.hostMiB), cpus: s.cpus },
    guests,
    seed: s.seed,
  };
}

/** Cloudy: MediaWiki guests under a steady 16 requests/s each. The data set per wiki is
 *  sized so that a guest with its full memory serves from page cache almost entirely (the
 *  seed: the load "produces no resource bottleneck when the system is not overcommitted").
 *  The host keeps the seed's proportion of memory reserved (15,714 huge pages of 48 GiB). */
export function cloudyScenario(scale: Partial<ExperimentScale> = {}): ScenarioSpec {
  const s = { ...cloudyDefaults, ...scale };
  const reservedMiB = Math.round((15714 * 2 * s.hostMiB) / (48 * 1024));
  const usable = s.hostMiB - reservedMiB;
  const guests: GuestSpec[] = [];
  for (let i = 0; i < s.guests; i++) {
    guests.push({
      name: `wiki${String(i + 1).padStart(2, '0')}`,
      memMiB: s.guestMiB,
      vcpus: 1,
      // The wiki's data was loaded into the guest before the run: it starts in page cache.
      cacheMiB: Math.round(s.guestMiB * 0.625),
      workload: {
        kind: 'web',
        requestRate: 16,
        anonMiB: Math.round(s.guestMiB * 0.25),
        fileSetMiB: Math.round(s.guestMiB * 0.625),
      },
    });
  }
  return {
    name: 'cloudy',
    description: `Cloudy: ${s.guests} web guests x ${s.guestMiB} MiB, ${usable} MiB of a ${s.hostMiB} MiB host usable`,
    host: { memMiB: s.hostMiB, swapMiB: swapForOvercommit(s, usable), cpus: s.cpus, reservedMiB },
    guests,
    seed: s.seed,
  };
}

/** A small host under pressure within a few simulated minutes, with guests whose workloads
 *  change over time, one starting late and stopping, one leaking: what `ballast demo` shows. */
export function demoScenario(): ScenarioSpec {
  const knobs = (sizes: number[], offsetS: number): WorkloadSpec => ({
    kind: 'memknobs',
    sizesMiB: sizes,
    runS: 90,
    pauseS: 20,
    offsetS,
  });
  return {
    name: 'demo',
    description: 'Six guests of 2 GiB on a 6 GiB host: changing workloads, a late starter, a leak',
    host: { memMiB: 6144, swapMiB: 8192, cpus: 4 },
    guests: [
      {
        name: 'web1',
        memMiB: 2048,
        cacheMiB: 512,
        workload: { kind: 'web', requestRate: 16, anonMiB: 384, fileSetMiB: 1024 },
      },
      { name: 'batch1', memMiB: 2048, workload: knobs([700, 1000, 1400], 0) },
      { name: 'batch2', memMiB: 2048, workload: knobs([300, 700, 1200], 150) },
      {
        name: 'office',
        memMiB: 2048,
        workload: {
          kind: 'phases',
          repeat: true,
          phases: [
            { durationS: 300, workload: { kind: 'idle', anonMiB: 256 } },
            { durationS: 300, workload: { kind: 'memknobs', sizesMiB: [900], runS: 300 } },
          ],
        },
      },
      { name: 'leaky', memMiB: 2048, swapMiB: 1024, workload: { kind: 'leak', leakMiBPerMin: 60 } },
      { name: 'late', memMiB: 2048, startS: 300, stopS: 1800, workload: knobs([512, 1024], 0) },
    ],
    seed: 1,
  };
}

/** Four guests, one of them leaking 100 MiB a minute: the guest OOM path. */
export function leakScenario(): ScenarioSpec {
  return {
    name: 'leak',
    description: 'Four 1 GiB guests on a 3 GiB host; one leaks 100 MiB/min until its OOM killer fires',
    host: { memMiB: 3072, swapMiB: 2048, cpus: 2 },
    guests: [
      { name: 'idle1', memMiB: 1024, workload: { kind: 'idle' } },
      { name: 'idle2', memMiB: 1024, workload: { kind: 'idle', anonMiB: 200 } },
      { name: 'web', memMiB: 1024, workload: { kind: 'web', requestRate: 8, anonMiB: 200, fileSetMiB: 400 } },
      { name: 'leaky', memMiB: 1024, swapMiB: 512, workload: { kind: 'leak', leakMiBPerMin: 100 } },
    ],
    seed: 1,
  };
}

export const builtinScenarios: Record<string, () => ScenarioSpec> = {
  demo: demoScenario,
  memknobs: () => memknobsScenario(),
  cloudy: () => cloudyScenario(),
  leak: leakScenario,
};

// ---- files --------------------------------------------------------------------------

const pos = z.number().positive();
const nonneg = z.number().nonnegative();
const simpleWorkload = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('memknobs'),
    sizesMiB: z.array(nonneg).min(1),
    runS: pos,
    pauseS: nonneg.optional(),
    offsetS: nonneg.optional(),
    dupFraction: z.number().min(0).max(1).optional(),
  }),
  z.strictObject({
    kind: z.literal('web'),
    requestRate: nonneg,
    anonMiB: nonneg,
    hotFraction: z.number().min(0).max(1).optional(),
    fileSetMiB: nonneg,
    pagesPerRequest: nonneg.optional(),
    anonTouchesPerRequest: nonneg.optional(),
    cpuPerRequestS: nonneg.optional(),
    dupFraction: z.number().min(0).max(1).optional(),
    cacheDupFraction: z.number().min(0).max(1).optional(),
  }),
  z.strictObject({ kind: z.literal('idle'), anonMiB: nonneg.optional(), wsMiB: nonneg.optional() }),
  z.strictObject({
    kind: z.literal('leak'),
    baseMiB: nonneg.optional(),
    leakMiBPerMin: nonneg,
    wsMiB: nonneg.optional(),
  }),
]);
const workload = z.union([
  simpleWorkload,
  z.strictObject({
    kind: z.literal('phases'),
    phases: z.array(z.strictObject({ durationS: pos, workload: simpleWorkload })).min(1),
    repeat: z.boolean().optional(),
  }),
]);
const device = z.strictObject({ readLatencyS: pos, readIops: pos, writeKiBps: pos }).partial();
const guest = z.strictObject({
  name: z.string().min(1),
  /** In files only: expand into `count` guests named name-1 .. name-N. */
  count: z.number().int().positive().optional(),
  memMiB: pos,
  vcpus: z.number().int().positive().optional(),
  swapMiB: nonneg.optional(),
  balloonMiB: pos.optional(),
  balloonMinMiB: nonneg.optional(),
  cacheMiB: nonneg.optional(),
  startS: nonneg.optional(),
  stopS: nonneg.optional(),
  workload,
  /** The guest reports freed pages (virtio-balloon free page reporting); default: the
   *  guestsReportFreePages parameter. */
  freePageReporting: z.boolean().optional(),
  virtioMem: z
    .strictObject({
      maxMiB: pos,
      requestedMiB: nonneg.optional(),
      blockMiB: pos.optional(),
      plugMiBps: pos.optional(),
      unplugMiBps: pos.optional(),
    })
    .optional(),
});
const paramsSchema = z
  .strictObject({
    stepS: pos,
    touchCostS: pos,
    hostSwapDevice: device,
    guestDevice: device,
    balloonRateKiBps: pos,
    ksmCostPerPageS: nonneg,
    osSharedFraction: z.number().min(0).max(1),
    ksmDataSharers: z.number().min(1),
    hostOsKiB: nonneg,
    qemuOverheadKiB: nonneg,
    guestKernelKiB: pos,
    guestMinCacheKiB: nonneg,
    oomRestartS: nonneg,
    swapReadaheadPages: z.number().min(1),
    hostSeesGuestAccess: z.boolean(),
    reuseReadahead: z.boolean(),
    deviceLoadSmoothing: z.number().min(0).max(1),
    guestsReportFreePages: z.boolean(),
    fprDelayS: nonneg,
    fprUnreportedFraction: z.number().min(0).max(1),
  })
  .partial();

/** `key=value` overrides of model parameters (dotted keys reach into the devices:
 *  hostSwapDevice.readIops=20000), checked like a scenario's params section. */
export function parseParamOverrides(items: string[]): ParamOverrides {
  const raw: Record<string, unknown> = {};
  for (const item of items) {
    const m = /^([A-Za-z.]+)=(.+)$/.exec(item.trim());
    if (!m) throw new Error(`--param ${item}: expected key=value`);
    const value: unknown = m[2] === 'true' ? true : m[2] === 'false' ? false : Number(m[2]);
    if (typeof value === 'number' && !Number.isFinite(value)) throw new Error(`--param ${item}: value must be a number, true or false`);
    const path = m[1]!.split('.');
    let o = raw;
    for (const k of path.slice(0, -1)) o = (o[k] ??= {}) as Record<string, unknown>;
    o[path[path.length - 1]!] = value;
  }
  const r = paramsSchema.safeParse(raw);
  if (!r.success) throw new Error(`--param: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return r.data;
}

const scenarioSchema = z.strictObject({
  name: z.string().optional(),
  description: z.string().optional(),
  host: z.strictObject({
    memMiB: pos,
    swapMiB: nonneg,
    cpus: z.number().int().positive(),
    reservedMiB: nonneg.optional(),
    ksm: z
      .strictObject({
        run: z.number().int().min(0).max(2),
        pages_to_scan: nonneg,
        sleep_millisecs: nonneg,
        merge_across_nodes: z.number().int().min(0).max(1),
      })
      .partial()
      .optional(),
  }),
  guests: z.array(guest),
  seed: z.number().int().optional(),
  params: paramsSchema.optional(),
});

/** Check a parsed scenario object; throws an Error naming each bad key. */
export function parseScenario(raw: unknown, source = 'scenario'): ScenarioSpec {
  const r = scenarioSchema.safeParse(raw);
  if (!r.success) {
    const lines = r.error.issues.map((i) => `  ${i.path.join('.') || '(top)'}: ${i.message}`);
    throw new Error(`${source}: invalid scenario\n${lines.join('\n')}`);
  }
  const guests: GuestSpec[] = [];
  for (const g of r.data.guests) {
    const { count, ...rest } = g;
    if (count === undefined) guests.push(rest as GuestSpec);
    else for (let i = 1; i <= count; i++) guests.push({ ...(rest as GuestSpec), name: `${g.name}-${i}` });
  }
  const names = new Set<string>();
  for (const g of guests) {
    if (names.has(g.name)) throw new Error(`${source}: guest name ${g.name} appears twice`);
    names.add(g.name);
    if (g.stopS !== undefined && g.stopS <= (g.startS ?? 0)) throw new Error(`${source}: guest ${g.name}: stopS must be after startS`);
    if ((g.balloonMiB ?? 0) > g.memMiB) throw new Error(`${source}: guest ${g.name}: balloonMiB exceeds memMiB`);
    const vm = g.virtioMem;
    if (vm) {
      const block = vm.blockMiB ?? 2;
      const req = vm.requestedMiB ?? vm.maxMiB;
      if (vm.maxMiB % block !== 0 || req % block !== 0 || req > vm.maxMiB) {
        throw new Error(`${source}: guest ${g.name}: virtioMem maxMiB and requestedMiB must be multiples of blockMiB (${block}), requestedMiB at most maxMiB`);
      }
    }
  }
  return { ...(r.data as ScenarioSpec), guests };
}

/** A built-in scenario by name, or a JSON / TOML scenario file. */
export function loadScenario(nameOrFile: string): ScenarioSpec {
  const builtin = builtinScenarios[nameOrFile];
  if (builtin) return builtin();
  let text: string;
  try {
    text = readFileSync(nameOrFile, 'utf8');
  } catch (e) {
    const names = Object.keys(builtinScenarios).join(', ');
    throw new Error(`scenario ${nameOrFile}: not a built-in scenario (${names}) and not a readable file (${(e as Error).message})`);
  }
  let raw: unknown;
  try {
    raw = extname(nameOrFile).toLowerCase() === '.toml' ? parseToml(text) : JSON.parse(text);
  } catch (e) {
    throw new Error(`${nameOrFile}: cannot parse: ${(e as Error).message}`);
  }
  return parseScenario(raw, nameOrFile);
}
