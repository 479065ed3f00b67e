// The lab-memknobs experiment's fixed inputs, as pure functions: each guest's workload
// schedule (the same in every run, so runs differ only in the manager), the stagger of the
// guests' peaks, and the memory domain's limit. Memory in MiB here: these become kernel
// command line arguments and a cgroup limit, both set once.

export type ConfigName =
  | 'none'
  | 'mom'
  | 'ballast'
  | 'none+fpr'
  | 'ballast+fpr'
  | 'mom+psi'
  | 'ballast+psi'
  | 'ballast+vmem'
  | 'ballast+vmem+fpr'
  | 'ballast+reclaim+fpr'
  | 'proxmox'
  | 'proxmox+fpr'
  | 'momd';
/** The runs made unless --configs names others. */
export const CONFIGS: readonly ConfigName[] = ['none', 'mom', 'ballast'];
export const ALL_CONFIGS: readonly ConfigName[] = [
  'none',
  'mom',
  'ballast',
  'none+fpr',
  'ballast+fpr',
  'mom+psi',
  'ballast+psi',
  'ballast+vmem',
  'ballast+vmem+fpr',
  'ballast+reclaim+fpr',
  'proxmox',
  'proxmox+fpr',
  'momd',
];
export const CONFIG_TITLES: Record<ConfigName, string> = {
  none: 'no manager',
  mom: "MOM's style (balloon + KSM policies, basic guards only)",
  ballast: 'ballast (default policy + safeguards)',
  'none+fpr': "no manager + free page reporting (KubeVirt's default): guests hand freed pages back through virtio-balloon",
  'ballast+fpr': 'ballast, and guests hand freed pages back (free page reporting)',
  'mom+psi':
    "MOM's style plus one safeguard: no inflation while a guest's own memory stall (PSI, read through its guest agent) is above 10%, and a rollback above 20%",
  'ballast+psi': "ballast, with the guests' own memory stall (PSI, through their guest agents) in its safeguards",
  'ballast+vmem':
    "ballast (default policy, then vmem.policy); each guest's memory is 128 MiB of base and a virtio-mem device for the rest in whole 128 MiB guest memory blocks (2 MiB device blocks, plugged at boot, onlined movable) that unplugs free blocks under host pressure",
  'ballast+vmem+fpr': 'ballast+vmem, and guests hand freed pages back (free page reporting)',
  'ballast+reclaim+fpr':
    "ballast+fpr with [reclaim] on (the default policy's reclaim rules carried out): under host pressure each guest reclaims its own page cache a step a cycle (memory.reclaim through its guest agent), and free page reporting hands it back in whole blocks",
  proxmox:
    "Proxmox VE's automatic ballooning (pvestatd's rule every 10 s: domain usage aimed at 80%, balloon minimum half of each guest, at most 100 MiB per guest per round)",
  'proxmox+fpr': "Proxmox VE's automatic ballooning, and guests hand freed pages back (free page reporting)",
  momd: "oVirt MOM's own daemon (momd from the --mom checkout; its commit is in the JSON) with MOM's doc/balloon.rules + doc/ksm.rules, through libvirt, the memory domain as its host",
};

export interface ConfigParts {
  manager: 'none' | 'mom' | 'ballast' | 'proxmox' | 'momd';
  /** The guests report freed pages (virtio-balloon free page reporting). */
  fpr: boolean;
  /** The manager reads the guests' PSI through their guest agents. */
  psi: boolean;
  /** Half of each guest's memory is a virtio-mem device, and the manager runs vmem.policy. */
  vmem: boolean;
  /** The guests run their agent, and the manager has [reclaim] on. */
  reclaim: boolean;
}

/** Which manager a run has and what it adds: free page reporting in the guests, guest PSI
 *  through their agents, virtio-mem devices and the policy that resizes them, reclaim inside
 *  the guests through their agents (pure). */
export function configParts(c: ConfigName): ConfigParts {
  const [manager, ...extras] = c.split('+') as [ConfigParts['manager'], ...string[]];
  return { manager, fpr: extras.includes('fpr'), psi: extras.includes('psi'), vmem: extras.includes('vmem'), reclaim: extras.includes('reclaim') };
}

/** The least base memory a lab guest boots with (src/lab/guests.ts MIN_MEM_MIB). */
const VMEM_BASE_MIN_MIB = 128;
/** Block of the lab's virtio-mem devices: a host huge page, QEMU's smallest on x86 with THP. */
export const VMEM_BLOCK_MIB = 2;
/** Linux adds hotplugged memory in memory blocks of 128 MiB on x86-64: a guest uses only the
 *  whole blocks of the device's range. Measured: a 192 MiB device plugged 128 MiB, and its
 *  size stayed below the request for good. */
export const GUEST_MEMORY_BLOCK_MIB = 128;

/**
 * How a virtio-mem row splits a guest's memory: the device holds the most whole 128 MiB guest
 * memory blocks that leave the base at least 128 MiB (at --mem 384: 128 MiB base + 256 MiB
 * device), so the guest has the same memory as in the other rows (measured: MemTotal 349 MiB
 * against 344 MiB for a plain 384 MiB guest) and as much of it as possible can go back in
 * blocks. Plugged in full at boot: every row starts with the same memory.
 */
export function vmemLayout(memMiB: number): { baseMiB: number; device: { maxMiB: number; requestedMiB: number; blockMiB: number } } {
  const deviceMiB = Math.floor((memMiB - VMEM_BASE_MIN_MIB) / GUEST_MEMORY_BLOCK_MIB) * GUEST_MEMORY_BLOCK_MIB;
  if (!(deviceMiB >= GUEST_MEMORY_BLOCK_MIB))
    throw new Error(
      `virtio-mem rows need ${VMEM_BASE_MIN_MIB} MiB of base memory and a device of at least one ${GUEST_MEMORY_BLOCK_MIB} MiB guest memory block: --mem must be at least ${VMEM_BASE_MIN_MIB + GUEST_MEMORY_BLOCK_MIB} MiB, got ${memMiB}`,
    );
  return { baseMiB: memMiB - deviceMiB, device: { maxMiB: deviceMiB, requestedMiB: deviceMiB, blockMiB: VMEM_BLOCK_MIB } };
}

/** Refuses, before anything is set up, configurations the scale cannot run. */
export function checkConfigs(scale: LabScale, configs: readonly ConfigName[]): void {
  if (configs.some((c) => configParts(c).vmem)) vmemLayout(scale.memMiB);
}

export interface LabScale {
  guests: number;
  memMiB: number;
  /** Measured seconds per run (after every guest is up and the warm-up). */
  durationS: number;
  /** Seconds the guests (and the manager) run before the measured window opens, so that it
   *  measures the domain full, as it stays, rather than the guests' first cycle, in which
   *  the domain is still filling (0 or absent: measure from boot). */
  warmupS?: number;
  /** Domain limit as a share of what the guests may hold (their memory + QEMU's own). */
  limitRatio: number;
  /** Length of one workload cycle; guests are staggered by periodS / guests. */
  periodS: number;
  /** What one TCG QEMU holds besides guest RAM (translation cache, heap, libraries), MiB. */
  qemuOverheadMiB: number;
  /** Steps from the base to the peak working set (one every ~4 s): how fast guests grow. */
  rampSteps: number;
  /** Page cache each guest holds besides its workload, MiB: it reads a disk of this size
   *  (random data) once, when its workload starts, and keeps it open; 0 or absent: none. A
   *  service's files read at start and not again: memory only a manager that knows cache
   *  from use can take back, as neither the guest (no pressure) nor free page reporting
   *  (not free) hands it back. */
  cacheMiB?: number;
}

export const DEFAULT_SCALE: LabScale = {
  guests: 4,
  memMiB: 384,
  durationS: 240,
  limitRatio: 2 / 3,
  periodS: 120,
  // Measured here: an idle 384 MiB lab guest's QEMU held 224 MiB, of which 128 MiB guest RAM
  // (the rest: ~50 MiB TCG translation cache, heap, thread stacks, libraries).
  qemuOverheadMiB: 96,
  rampSteps: 12,
};

export interface GuestPlan {
  index: number;
  /** The workload schedule (lab/workload.c grammar). */
  workload: string;
  /** Seconds the guest's init waits before starting the workload: the stagger. */
  delayS: number;
  /** Working sets the schedule moves between, MiB. */
  baseMiB: number;
  peakMiB: number;
}

/**
 * One guest's cycle: a small working set touched briefly, a ramp in `rampSteps` steps (one
 * every 4 s) to a peak of 65% of the guest, the peak touched, the working set shrunk back
 * (freed inside the guest, but still held by QEMU until a balloon takes it), then idle until
 * the period ends. The ramp's pace decides whether a balloon manager can follow a growing
 * guest: its reaction time (statistics age + policy interval) times the growth rate must stay
 * under the floor's headroom, or the guest hits its balloon and OOM-kills.
 *
 * The schedule is a clock (lab/workload.c's "@" steps): each touch ends at a set time in the
 * cycle and each cycle starts `periodS` after the last, as a service's demand arrives whether
 * or not it is ready. A guest stalled on memory (an alloc waiting for swap-ins) loses the
 * touch time its stall overran instead of carrying the delay into its idle time, where no one
 * would notice it: the work an operator loses to swapping is what the experiment measures.
 */
export function guestWorkload(
  memMiB: number,
  periodS: number,
  rampSteps = DEFAULT_SCALE.rampSteps,
): { spec: string; baseMiB: number; peakMiB: number; activeS: number; restS: number } {
  const base = Math.max(16, Math.round(memMiB / 6));
  const peak = Math.round(memMiB * 0.65);
  const steps: string[] = [`alloc:${base}`, 'touch@2'];
  let t = 2;
  for (let k = 1; k <= rampSteps; k++) {
    steps.push(`alloc:${Math.round(base + ((peak - base) * k) / rampSteps)}`);
    // The last step goes straight into the peak's touch: one touch at the peak per cycle.
    if (k < rampSteps) {
      steps.push(`touch@${t + 1}`, `idle@${t + 4}`);
      t += 4;
    }
  }
  steps.push(`touch@${t + 8}`, `alloc:${base}`, `touch@${t + 10}`);
  t += 10;
  steps.push(`loop@${periodS}`);
  return { spec: steps.join(','), baseMiB: base, peakMiB: peak, activeS: t, restS: periodS - t };
}

export function planGuests(scale: LabScale): GuestPlan[] {
  const w = guestWorkload(scale.memMiB, scale.periodS, scale.rampSteps);
  return Array.from({ length: scale.guests }, (_, i) => ({
    index: i,
    workload: w.spec,
    delayS: Math.round((i * scale.periodS) / scale.guests),
    baseMiB: w.baseMiB,
    peakMiB: w.peakMiB,
  }));
}

/** The domain's memory limit: limitRatio of what the guests could hold at most. */
export function domainLimitMiB(scale: LabScale): number {
  return Math.round(scale.limitRatio * scale.guests * (scale.memMiB + scale.qemuOverheadMiB));
}

/** Swap to offer the domain: everything it could push out, plus a margin. */
export function swapSizeMiB(scale: LabScale): number {
  const most = scale.guests * (scale.memMiB + scale.qemuOverheadMiB) - domainLimitMiB(scale);
  return Math.max(256, Math.ceil((most + 256) / 64) * 64);
}

export function checkScale(s: LabScale): LabScale {
  const bad = (m: string) => {
    throw new Error(m);
  };
  if (!Number.isInteger(s.guests) || s.guests < 1 || s.guests > 8) bad(`--guests must be 1..8, got ${s.guests}`);
  if (!Number.isInteger(s.memMiB) || s.memMiB < 128 || s.memMiB > 512) bad(`--mem must be 128..512 MiB, got ${s.memMiB}`);
  if (!(s.durationS >= 20) || !Number.isFinite(s.durationS)) bad(`--duration must be at least 20 s, got ${s.durationS}`);
  if (s.warmupS !== undefined && !(s.warmupS >= 0 && s.warmupS <= 1800)) bad(`--warmup must be 0..1800 s, got ${s.warmupS}`);
  if (!(s.limitRatio > 0.2 && s.limitRatio <= 1.5)) bad(`--limit-ratio must be in (0.2, 1.5], got ${s.limitRatio}`);
  if (!Number.isInteger(s.rampSteps) || s.rampSteps < 1 || s.rampSteps > 40) bad(`--ramp-steps must be 1..40, got ${s.rampSteps}`);
  const active = guestWorkload(s.memMiB, s.periodS, s.rampSteps).activeS;
  if (!(Number.isInteger(s.periodS) && s.periodS >= active + 5))
    bad(
      `--period must be a whole number of seconds, at least ${active + 5} with ${s.rampSteps} ramp steps (the active part takes ${active} s), got ${s.periodS}`,
    );
  if (!(s.qemuOverheadMiB >= 0 && s.qemuOverheadMiB <= 1024)) bad(`--qemu-overhead must be 0..1024 MiB, got ${s.qemuOverheadMiB}`);
  const cacheMax = Math.floor(s.memMiB / 2);
  if (s.cacheMiB !== undefined && !(Number.isInteger(s.cacheMiB) && s.cacheMiB >= 0 && s.cacheMiB <= cacheMax))
    bad(`--cache must be a whole number of MiB, 0..${cacheMax} (half the guest's memory), got ${s.cacheMiB}`);
  return s;
}
