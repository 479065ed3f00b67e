// Lab guests under libvirtd: small TCG domains booting the lab kernel + initramfs directly,
// with a virtio memballoon (stats period set), the serial console in a file, and optionally
// the guest agent channel. The lab is tooling, so it drives libvirtd through virsh; the
// ballast driver itself never does.
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ensureLabBuilt, BALLOON_MODULES, type LabBuild } from './build.js';
import { ensureLibvirtd } from './libvirtd.js';
import { GUEST_PREFIX, LIBVIRT_URI, RUN_DIR } from './paths.js';
import { run, runOk, sleep } from './proc.js';
import { balloonReady, parseConsole, summarizeConsole, validateWorkloadSpec, type ConsoleLine, type ConsoleSummary } from './console.js';

export const GUESTS_DIR = join(RUN_DIR, 'guests');
export const DEFAULT_MEM_MIB = 256;
export const MIN_MEM_MIB = 128;
export const MAX_MEM_MIB = 512;
/** Touch 64 MiB for 5 s every 30 s: visible activity, little CPU on a shared 2-core host. */
export const DEFAULT_WORKLOAD = 'alloc:64,touch:5,idle:25,loop';

export interface GuestBootOptions {
  name: string;
  kernel: string;
  initrd: string;
  workload?: string;
  /** Seconds to wait before the workload starts (staggered schedules from one image). */
  delayS?: number;
  reportS?: number;
  meminfoS?: number;
  guestAgent?: boolean;
  /** Read the guest's disk into its page cache: S seconds after the workload starts and every
   *  S seconds (0: once, at once); undefined: never. Needs a disk (QEMU guests: cacheDiskMiB). */
  cacheS?: number;
  /** A virtio-mem device beside the base memory (the guest onlines what it plugs as movable). */
  virtioMem?: VirtioMemOptions;
}

/** A virtio-mem device, MiB: the most it can hold, what is plugged at boot (default all), the
 *  block (default 2: QEMU's smallest on x86 with THP, and a huge page of the host). */
export interface VirtioMemOptions {
  maxMiB: number;
  requestedMiB?: number;
  blockMiB?: number;
}

export const VMEM_MAX_MIB = 512;

/** The device with its defaults, or a clear error for sizes QEMU would refuse. */
export function checkVirtioMem(v: VirtioMemOptions): Required<VirtioMemOptions> {
  const block = v.blockMiB ?? 2;
  const requested = v.requestedMiB ?? v.maxMiB;
  if (!Number.isInteger(block) || block < 2 || (block & (block - 1)) !== 0)
    throw new Error(`virtio-mem block must be a power of two of at least 2 MiB, got ${block}`);
  if (!Number.isInteger(v.maxMiB) || v.maxMiB < block || v.maxMiB > VMEM_MAX_MIB || v.maxMiB % block !== 0) {
    throw new Error(`virtio-mem size must be a multiple of its ${block} MiB block from ${block} to ${VMEM_MAX_MIB} MiB, got ${v.maxMiB}`);
  }
  if (!Number.isInteger(requested) || requested < 0 || requested > v.maxMiB || requested % block !== 0) {
    throw new Error(`virtio-mem requested size must be a multiple of ${block} MiB from 0 to ${v.maxMiB}, got ${requested}`);
  }
  return { maxMiB: v.maxMiB, requestedMiB: requested, blockMiB: block };
}

/** The kernel command line of a lab guest: console on the first serial port, quiet kernel,
 *  ballast.* parameters for the init script. */
export function guestCmdline(o: Omit<GuestBootOptions, 'kernel' | 'initrd'>): string {
  if (!/^[A-Za-z0-9._-]+$/.test(o.name)) throw new Error(`bad guest name ${JSON.stringify(o.name)}: use letters, digits, . _ -`);
  const parts = ['console=ttyS0', 'loglevel=3', 'panic=-1', 'mitigations=off', `ballast.name=${o.name}`];
  const workload = validateWorkloadSpec(o.workload ?? '');
  if (workload) parts.push(`ballast.workload=${workload}`);
  if (o.delayS) parts.push(`ballast.delay=${Math.round(o.delayS)}`);
  if (o.reportS) parts.push(`ballast.report=${o.reportS}`);
  if (o.meminfoS) parts.push(`ballast.meminfo=${o.meminfoS}`);
  if (o.guestAgent === false) parts.push('ballast.qga=0');
  if (o.cacheS !== undefined) parts.push(`ballast.cache=${Math.max(0, Math.round(o.cacheS))}`);
  // Plugged memory onlined movable: only movable pages land there, so virtio-mem can unplug it.
  // The device sits above 4 GiB (QEMU's device memory), so the kernel would set aside a 64 MiB
  // bounce buffer (swiotlb) for 32-bit DMA out of the base memory; virtio devices without
  // VIRTIO_F_ACCESS_PLATFORM never use it. Measured: a 192 MiB guest had 90 MiB of MemTotal
  // with a device, 154 MiB without the buffer, as a plain guest of that size.
  if (o.virtioMem) parts.push('memhp_default_state=online_movable', 'swiotlb=noforce');
  return parts.join(' ');
}

const xmlEscape = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/'/g, '&apos;').replace(/"/g, '&quot;');

export function checkMemMiB(memMiB: number): number {
  if (!Number.isInteger(memMiB) || memMiB < MIN_MEM_MIB || memMiB > MAX_MEM_MIB) {
    throw new Error(`guest memory must be a whole number of MiB from ${MIN_MEM_MIB} to ${MAX_MEM_MIB}, got ${memMiB}`);
  }
  return memMiB;
}

export interface DomainXmlOptions extends GuestBootOptions {
  memMiB: number;
  consolePath: string;
  statsPeriodS: number;
  emulator: string;
  /** virtio-balloon free page reporting (QEMU 5.1+, Linux 5.7+ guests): freed guest pages go back to the host. */
  freePageReporting?: boolean;
  /** false: no balloon device at all (<memballoon model='none'/>), a guest ballast cannot balloon. */
  balloon?: boolean;
  /** A raw file the guest sees as a read-only /dev/vda, uncached on the host (cache='none':
   *  only the guest caches it), as the QMP guests' page-cache disk. */
  disk?: string;
}

/** Libvirt domain XML of a lab guest (type 'qemu': TCG, as KVM does not work on these hosts). */
export function domainXml(o: DomainXmlOptions): string {
  const kib = checkMemMiB(o.memMiB) * 1024;
  const e = xmlEscape;
  const vm = o.virtioMem ? checkVirtioMem(o.virtioMem) : null;
  // libvirt wants a memory slot, room for the device under maxMemory, and a NUMA cell for it.
  return `<domain type='qemu'>
  <name>${e(o.name)}</name>
${vm ? `  <maxMemory slots='1' unit='KiB'>${kib + vm.maxMiB * 1024}</maxMemory>\n` : ''}  <memory unit='KiB'>${kib}</memory>
  <currentMemory unit='KiB'>${kib}</currentMemory>
  <vcpu placement='static'>1</vcpu>
${vm ? `  <cpu><numa><cell id='0' cpus='0' memory='${kib}' unit='KiB'/></numa></cpu>\n` : ''}  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>${e(o.kernel)}</kernel>
    <initrd>${e(o.initrd)}</initrd>
    <cmdline>${e(guestCmdline(o))}</cmdline>
  </os>
  <features><acpi/></features>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>${e(o.emulator)}</emulator>
    <controller type='usb' model='none'/>
    <serial type='file'>
      <source path='${e(o.consolePath)}'/>
      <target port='0'/>
    </serial>
${vm ? virtioMemXml(vm) : ''}${o.disk ? diskXml(o.disk) : ''}${o.guestAgent ? agentChannelXml(agentSocketOf(o.consolePath)) : ''}${
  o.balloon === false
    ? "    <memballoon model='none'/>"
    : `    <memballoon model='virtio'${o.freePageReporting ? " freePageReporting='on'" : ''}>
      <stats period='${Math.max(1, Math.round(o.statsPeriodS))}'/>
    </memballoon>`
}
  </devices>
</domain>
`;
}

/** The guest agent's socket beside the guest's console file. libvirt's own choice, under its
 *  config directory, is too long for a unix socket (108 bytes) in the experiment's per-run
 *  libvirtds (/run/ballast-lab/lv-<pid><row>/config/libvirt/qemu/channel/target/domain-1-
 *  <name>/org.qemu.guest_agent.0), and the guest would not start. */
const agentSocketOf = (consolePath: string) => `${consolePath.replace(/\.console$/, '')}.qga`;

function agentChannelXml(socket: string): string {
  return `    <channel type='unix'>
      <source mode='bind' path='${xmlEscape(socket)}'/>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
    </channel>
`;
}

function diskXml(path: string): string {
  return `    <disk type='file' device='disk'>
      <driver name='qemu' type='raw' cache='none'/>
      <source file='${xmlEscape(path)}'/>
      <target dev='vda' bus='virtio'/>
      <readonly/>
    </disk>
`;
}

function virtioMemXml(v: Required<VirtioMemOptions>): string {
  return `    <memory model='virtio-mem'>
      <target>
        <size unit='KiB'>${v.maxMiB * 1024}</size>
        <node>0</node>
        <block unit='KiB'>${v.blockMiB * 1024}</block>
        <requested unit='KiB'>${v.requestedMiB * 1024}</requested>
      </target>
    </memory>
`;
}

const LIBVIRTD_GONE = /failed to connect to the hypervisor|Failed to connect socket|End of file while reading data|Cannot recv data|client socket is closed/i;

/**
 * Runs virsh on qemu:///system. While libvirtd is away (a test killed it to prove reconnection
 * and brings it back) the call is retried for up to `retryGoneMs`; other errors fail at once.
 */
export async function virsh(args: string[], timeoutMs = 60_000, retryGoneMs = 30_000): Promise<string> {
  const deadline = Date.now() + retryGoneMs;
  for (;;) {
    try {
      return await runOk('virsh', ['-q', '-c', LIBVIRT_URI, ...args], { timeoutMs });
    } catch (e) {
      if (!LIBVIRTD_GONE.test((e as Error).message) || Date.now() > deadline) throw e;
      await sleep(500);
    }
  }
}

export async function findEmulator(): Promise<string> {
  for (const p of ['/usr/bin/qemu-system-x86_64', '/usr/local/bin/qemu-system-x86_64']) if (existsSync(p)) return p;
  const r = await run('sh', ['-c', 'command -v qemu-system-x86_64']);
  if (r.code === 0 && r.stdout.trim()) return r.stdout.trim();
  throw new Error('qemu-system-x86_64 not found: run lab/install-deps.sh');
}

export const consolePathOf = (name: string) => join(GUESTS_DIR, `${name}.console`);

/** Names of the lab's domains (prefix ballast-lab-), running or not. */
export async function listLabGuests(): Promise<{ name: string; state: string }[]> {
  const out = await virsh(['list', '--all']);
  const guests: { name: string; state: string }[] = [];
  for (const line of out.split('\n')) {
    // " Id   Name   State" rows: id (or -), name, state (may contain a space: "shut off").
    const m = line.trim().match(/^(\S+)\s+(\S+)\s+(.+)$/);
    if (m?.[2].startsWith(GUEST_PREFIX)) guests.push({ name: m[2], state: m[3].trim() });
  }
  return guests;
}

export interface StartGuestsOptions {
  count: number;
  memMiB?: number;
  /** One schedule for all, one per guest, or a function of the guest's index (0-based). */
  workload?: string | string[] | ((i: number) => string);
  /** Seconds between the workload starts of consecutive guests (guest i waits i*staggerS). */
  staggerS?: number;
  statsPeriodS?: number;
  reportS?: number;
  meminfoS?: number;
  /** Include the guest agent channel (when the image has the agent). Default true. */
  guestAgent?: boolean;
  /** Turn on the balloon's free page reporting. Default off. */
  freePageReporting?: boolean;
  /** false: guests without a balloon device (then `wait` cannot wait for its driver: pass wait false). */
  balloon?: boolean;
  /** Wait until each guest's balloon driver is bound and (with a workload) it reports. Default true. */
  wait?: boolean;
  bootTimeoutMs?: number;
  /** Names (the ballast-lab- prefix is added when missing); default ballast-lab-[group-]1..count. */
  names?: string[];
  /** Keeps concurrent users apart: guests are named ballast-lab-<group>-N. */
  group?: string;
  /** Define persistent domains (virsh define + start) instead of transient ones (virsh create),
   *  e.g. to see defined/undefined lifecycle events. stopLabGuests undefines them. */
  persistent?: boolean;
  /** Give each guest a virtio-mem device (and movable hotplugged memory). */
  virtioMem?: VirtioMemOptions;
}

export interface LabGuest {
  name: string;
  memMiB: number;
  consolePath: string;
  workload: string;
  /** ms from `virsh create` until the workload's first line (or the ready line without workload). */
  bootMs: number | null;
}

/**
 * Starts `count` lab guests (transient domains ballast-lab-1..N), replacing lab domains of the
 * same names. Builds the image and starts libvirtd first when needed.
 */
export async function startLabGuests(o: StartGuestsOptions): Promise<LabGuest[]> {
  if (!Number.isInteger(o.count) || o.count < 1 || o.count > 8) throw new Error(`guest count must be 1 to 8, got ${o.count}`);
  const memMiB = checkMemMiB(o.memMiB ?? DEFAULT_MEM_MIB);
  const build = await ensureLabBuilt();
  await ensureLibvirtd();
  mkdirSync(GUESTS_DIR, { recursive: true });
  const emulator = await findEmulator();
  if (o.group !== undefined && !/^[a-z0-9]+$/.test(o.group)) throw new Error(`bad guest group ${JSON.stringify(o.group)}: use a-z and 0-9`);
  const names = (o.names ?? Array.from({ length: o.count }, (_, i) => (o.group ? `${o.group}-${i + 1}` : String(i + 1)))).map((n) =>
    n.startsWith(GUEST_PREFIX) ? n : GUEST_PREFIX + n,
  );
  if (names.length !== o.count) throw new Error(`names has ${names.length} entries for ${o.count} guests`);
  const existing = new Set((await listLabGuests()).map((g) => g.name));
  const guests: LabGuest[] = [];
  const started: number[] = [];
  for (let i = 0; i < o.count; i++) {
    const name = names[i];
    if (existing.has(name)) await removeGuest(name);
    const workload = workloadFor(o.workload, i);
    const consolePath = consolePathOf(name);
    rmSync(consolePath, { force: true });
    const xml = domainXml({
      name,
      memMiB,
      kernel: build.kernel,
      initrd: build.initrd,
      workload,
      delayS: (o.staggerS ?? 0) * i,
      reportS: o.reportS,
      meminfoS: o.meminfoS,
      guestAgent: (o.guestAgent ?? true) && build.manifest.guestAgent,
      consolePath,
      statsPeriodS: o.statsPeriodS ?? 2,
      freePageReporting: o.freePageReporting,
      balloon: o.balloon,
      virtioMem: o.virtioMem,
      emulator,
    });
    const xmlPath = join(GUESTS_DIR, `${name}.xml`);
    writeFileSync(xmlPath, xml);
    started.push(Date.now());
    if (o.persistent) {
      await virsh(['define', xmlPath]);
      await virsh(['start', name]);
    } else {
      await virsh(['create', xmlPath]);
    }
    guests.push({ name, memMiB, consolePath, workload, bootMs: null });
  }
  if (o.wait ?? true) {
    await Promise.all(
      guests.map(async (g, i) => {
        await waitGuestReady(g.name, { timeoutMs: o.bootTimeoutMs ?? 180_000, needWorkload: g.workload !== '' && !o.staggerS });
        g.bootMs = Date.now() - started[i];
      }),
    );
  }
  return guests;
}

function workloadFor(w: StartGuestsOptions['workload'], i: number): string {
  if (w === undefined) return DEFAULT_WORKLOAD;
  if (typeof w === 'string') return validateWorkloadSpec(w);
  if (Array.isArray(w)) return validateWorkloadSpec(w[i] ?? w[w.length - 1] ?? '');
  return validateWorkloadSpec(w(i));
}

async function removeGuest(name: string): Promise<void> {
  // destroy fails for a domain that is not running; undefine fails for a transient one: both fine.
  await run('virsh', ['-q', '-c', LIBVIRT_URI, 'destroy', name]);
  await run('virsh', ['-q', '-c', LIBVIRT_URI, 'undefine', name]);
}

/** Destroys (and undefines, if persistent) the lab's domains — all of them, or those of one
 *  group or of the given names; returns their names. */
export async function stopLabGuests(o: { group?: string; names?: string[] } = {}): Promise<string[]> {
  let guests = await listLabGuests();
  if (o.group) guests = guests.filter((g) => g.name.startsWith(`${GUEST_PREFIX}${o.group}-`));
  if (o.names) {
    const want = new Set(o.names.map((n) => (n.startsWith(GUEST_PREFIX) ? n : GUEST_PREFIX + n)));
    guests = guests.filter((g) => want.has(g.name));
  }
  for (const g of guests) await removeGuest(g.name);
  return guests.map((g) => g.name);
}

/** Parsed ballast lines of a guest's serial console (empty when it has written none yet). */
export function labGuestConsole(name: string): ConsoleLine[] {
  const full = name.startsWith(GUEST_PREFIX) || name.includes('/') ? name : GUEST_PREFIX + name;
  const path = full.includes('/') ? full : consolePathOf(full);
  try {
    return parseConsole(readFileSync(path, 'utf8'));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
}

export function labGuestSummary(name: string): ConsoleSummary {
  return summarizeConsole(labGuestConsole(name));
}

/** Waits until a guest's console shows its balloon driver bound and, if asked, the workload's first phase line. */
export async function waitGuestReady(nameOrConsolePath: string, o: { timeoutMs?: number; needWorkload?: boolean } = {}): Promise<ConsoleSummary> {
  const deadline = Date.now() + (o.timeoutMs ?? 180_000);
  for (;;) {
    const s = labGuestSummary(nameOrConsolePath);
    const failed = Object.entries(s.modules).filter(([, st]) => st === 'failed');
    if (failed.length) throw new Error(`${nameOrConsolePath}: module(s) failed to load: ${failed.map(([m]) => m).join(', ')}`);
    // "Reporting" = the workload printed its first phase line (an idle step prints no rates).
    if (balloonReady(s, BALLOON_MODULES) && s.ready && (!o.needWorkload || s.phases.length > 0)) return s;
    if (Date.now() > deadline) {
      throw new Error(
        `${nameOrConsolePath} not ready after ${o.timeoutMs ?? 180_000} ms (booted=${s.booted}, balloon=${s.balloonBound}, ready=${s.ready}, workload phases=${s.phases.length}, workload exits=${s.workloadExits})`,
      );
    }
    await sleep(250);
  }
}

export type { LabBuild };
