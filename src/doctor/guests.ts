// Per-guest checks, from what a driver could learn about each guest (GuestFacts: libvirt's
// domain XML and bulk stats, or QEMU's QOM through QMP) so the checks themselves stay pure.
import { posix } from 'node:path';
import { CgroupLimits, limitFiles } from '../host/cgroup-limits.js';
import { notWritable, type WritableProbe } from './checks.js';
import { result, type CheckResult } from './types.js';

export { parseMemballoon, type Memballoon } from '../hypervisor/libvirt/domain-xml.js';

export interface GuestFacts {
  name: string;
  /** Balloon device model ('virtio', 'none'); '' when the guest has none; null when it could not be told. */
  balloon: string | null;
  /** Stats period set on the balloon, seconds (0: none); null when not visible. */
  statsPeriod: number | null;
  /** The guest's own memory statistics come through the balloon. */
  statsArriving: boolean;
  /** null when not visible. */
  freePageReporting: boolean | null;
  /** The QEMU process, for the cgroup check; null when not known. */
  pid: number | null;
}

const VIRTIO = /^virtio(-transitional|-non-transitional)?$/;

export interface GuestCheckContext {
  /** hypervisor.stats_period: what `ballast run` sets on each guest when it may. */
  statsPeriod: number;
  /** hypervisor.readonly: then ballast leaves the period as it finds it. */
  readOnly: boolean;
  driver: 'libvirt' | 'qmp';
}

/** Balloon present, guest statistics arriving, free page reporting on. */
export function guestChecks(g: GuestFacts, ctx: GuestCheckContext): CheckResult[] {
  const id = (what: string) => `guest:${g.name}:${what}`;
  const libvirt = ctx.driver === 'libvirt';
  const addBalloon = libvirt
    ? `add <memballoon model='virtio'><stats period='${ctx.statsPeriod}'/></memballoon> to the domain (virsh edit ${g.name}; takes effect at the next cold boot)`
    : 'start QEMU with -device virtio-balloon-pci';
  const present = g.balloon === null ? (g.statsArriving ? true : null) : VIRTIO.test(g.balloon);
  let balloon: CheckResult;
  if (present === null)
    balloon = result(id('balloon'), 'skip', 'cannot tell whether there is a balloon (the domain XML was not readable and no balloon statistics arrive)');
  else if (present) balloon = result(id('balloon'), 'ok', g.balloon ? `${g.balloon} balloon present` : 'balloon present (it reports statistics)');
  else {
    const what = g.balloon === '' || g.balloon === 'none' ? 'no balloon device' : `balloon model ${g.balloon}, not virtio`;
    balloon = result(id('balloon'), 'warn', `${what}: ballast cannot change this guest's memory (only cgroup limits reach it)`, addBalloon);
  }
  if (present === false) {
    const why = 'no virtio balloon';
    return [balloon, result(id('stats'), 'skip', why), result(id('free_page_reporting'), 'skip', why)];
  }
  return [balloon, statsCheck(g, ctx, id('stats')), fprCheck(g, ctx, id('free_page_reporting'))];
}

function statsCheck(g: GuestFacts, ctx: GuestCheckContext, id: string): CheckResult {
  if (g.statsArriving) return result(id, 'ok', `guest memory statistics arriving${g.statsPeriod ? ` (every ${g.statsPeriod} s)` : ''}`);
  const libvirt = ctx.driver === 'libvirt';
  if (g.statsPeriod === 0 || g.statsPeriod === null) {
    const unset = g.statsPeriod === 0 ? 'no balloon stats period set' : 'no guest memory statistics';
    const runSets = ctx.readOnly
      ? 'hypervisor.readonly = true, so ballast will not set it'
      : `\`ballast run\` sets it to ${ctx.statsPeriod} s when it first sees the guest`;
    const fix = libvirt
      ? `virsh dommemstat ${g.name} --period ${ctx.statsPeriod} --live --config, or <stats period='${ctx.statsPeriod}'/> inside <memballoon>`
      : `qom-set the balloon's guest-stats-polling-interval to ${ctx.statsPeriod}`;
    return result(id, 'warn', `${unset}, so no guest memory statistics arrive (${runSets})`, fix);
  }
  const fallback = libvirt ? '; until then ballast reads /proc/meminfo through the qemu guest agent if there is one' : '';
  return result(
    id,
    'warn',
    `stats period ${g.statsPeriod} s set but the guest sends no memory statistics (virtio_balloon driver not loaded, or still booting)${fallback}`,
    'load the virtio_balloon module in the guest (modprobe virtio_balloon)',
  );
}

function fprCheck(g: GuestFacts, ctx: GuestCheckContext, id: string): CheckResult {
  if (g.freePageReporting === null) return result(id, 'skip', 'not visible (domain XML not readable)');
  if (g.freePageReporting) return result(id, 'ok', 'free page reporting on');
  const fix =
    ctx.driver === 'libvirt'
      ? `<memballoon model='virtio' freePageReporting='on'> (libvirt 6.9+, QEMU 5.1+, guest Linux 5.7+; takes effect at the next cold boot)`
      : 'start QEMU with -device virtio-balloon-pci,free-page-reporting=on (QEMU 5.1+, guest Linux 5.7+)';
  return result(id, 'warn', 'free page reporting off: memory the guest frees stays with QEMU until a balloon target takes it', fix);
}

/** The guest's memory.high and memory.max (v1: the soft and hard limit files) exist and may be
 *  written: what host.cgroup_limits needs. */
export async function checkGuestCgroup(
  root: string,
  g: Pick<GuestFacts, 'name' | 'pid'>,
  libvirtRunDir?: string,
  writable: WritableProbe = notWritable,
): Promise<CheckResult> {
  const id = `guest:${g.name}:cgroup`;
  const limits = new CgroupLimits({ root, libvirtRunDir });
  let cg;
  try {
    cg = await limits.cgroupOf({ id: g.name, name: g.name, props: g.pid === null ? {} : { pid: g.pid }, stats: {} });
  } catch (err) {
    const msg = (err as Error).message;
    const fix = /no QEMU pid/.test(msg)
      ? `run the doctor on the guests' host as root: QEMU is found through libvirt's PID file (${libvirtRunDir ?? '/run/libvirt/qemu'}/NAME.pid, qemu:///system) or through QMP`
      : 'start each guest in a cgroup of its own (libvirt does: machine.slice/machine-qemu…scope), or set cgroup.enabled = false';
    return result(id, 'fail', msg, fix);
  }
  const files = limitFiles(cg.version);
  const bad: string[] = [];
  for (const f of [files.high, files.max]) {
    const why = await writable(posix.join(cg.dir, f));
    if (why !== null) bad.push(`${f} (${why})`);
  }
  if (bad.length === 0) return result(id, 'ok', `cgroup v${cg.version} ${cg.path}: ${files.high} and ${files.max} writable`);
  return result(
    id,
    'fail',
    `cgroup v${cg.version} ${cg.path}: cannot write ${bad.join(', ')}`,
    "run ballast as root, or delegate the guests' cgroups to its user; a read-only /sys/fs/cgroup (container) cannot work",
  );
}
