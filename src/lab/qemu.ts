// Lab guests run directly by QEMU (no libvirt), each with a QMP socket, for ballast's QMP
// driver. Every guest leaves a record in /run/ballast-lab/qemu/<name>.json so it can be found
// and stopped by its PID from any process (tests, `ballast lab down`).
import { spawn } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { ensureLabBuilt } from './build.js';
import { checkMemMiB, checkVirtioMem, DEFAULT_MEM_MIB, DEFAULT_WORKLOAD, findEmulator, guestCmdline, waitGuestReady, type VirtioMemOptions } from './guests.js';
import { GUEST_PREFIX, RUN_DIR } from './paths.js';
import { killPid, pidAlive, pidComm, waitFor } from './proc.js';

export const QEMU_DIR = join(RUN_DIR, 'qemu');

export interface QemuGuestOptions {
  name: string;
  memMiB?: number;
  /** Where QEMU listens for QMP; default /run/ballast-lab/qemu/<name>.qmp. */
  qmpSocket?: string;
  workload?: string;
  delayS?: number;
  reportS?: number;
  meminfoS?: number;
  /** Add a virtio-serial guest agent channel on a unix socket (when the image has the agent). */
  guestAgent?: boolean;
  /** A cgroup directory (v1 or v2) whose cgroup.procs receives QEMU's PID right after spawn,
   *  before the guest has touched its memory, so all of it is charged there. */
  memCgroup?: string;
  /** More cgroup directories (other v1 hierarchies, e.g. a blkio cgroup that throttles the
   *  experiment's swap device) that receive QEMU's PID right after spawn. */
  moreCgroups?: string[];
  /** virtio-balloon free page reporting (Linux 5.7+ guests hand freed pages back). */
  freePageReporting?: boolean;
  /** A disk of this size (a file of random data, read-only to the guest) that the guest reads into its
   *  page cache (see cacheS); 0 or undefined: no disk. */
  cacheDiskMiB?: number;
  /** When the guest reads its disk: guestCmdline's cacheS. Default 0 (once) with a disk. */
  cacheS?: number;
  /** Wait until the balloon driver is bound (and the workload reports). Default true. */
  wait?: boolean;
  bootTimeoutMs?: number;
  /** Transparent huge pages for QEMU's RAM: 'host' (the host's setting; QEMU madvises its RAM
   *  as huge pages) or 'off' (prctl PR_SET_THP_DISABLE before exec, as a host that wants
   *  ballooning to return memory at once would do; see docs/host.md). Default 'host'. */
  thp?: 'host' | 'off';
  /** A virtio-mem device `vmem0` (QOM path /machine/peripheral/vmem0) beside the base memory. */
  virtioMem?: VirtioMemOptions;
}

// PR_SET_THP_DISABLE (linux/prctl.h) survives execve, so a tiny wrapper can set it for QEMU.
const PR_SET_THP_DISABLE = 41;
const THP_OFF_WRAPPER = `import ctypes,os,sys
libc=ctypes.CDLL(None,use_errno=True)
if libc.prctl(${PR_SET_THP_DISABLE},1,0,0,0)!=0: sys.exit('prctl(PR_SET_THP_DISABLE): '+os.strerror(ctypes.get_errno()))
os.execv(sys.argv[1],sys.argv[1:])`;

/** The command that starts QEMU with `args`, with THP disabled for it when asked. */
export function qemuCommand(emulator: string, args: string[], thp: 'host' | 'off' = 'host'): [string, string[]] {
  return thp === 'off' ? ['python3', ['-c', THP_OFF_WRAPPER, emulator, ...args]] : [emulator, args];
}

export interface QemuGuest {
  name: string;
  pid: number;
  memMiB: number;
  qmpSocket: string;
  consoleLog: string;
  /** QEMU's own stdout/stderr. */
  qemuLog: string;
  qgaSocket: string | null;
  /** ms from spawn to the first workload line (or readiness without workload); null if not waited. */
  bootMs: number | null;
}

const recordPath = (name: string) => join(QEMU_DIR, `${name}.json`);
const diskPath = (name: string) => join(QEMU_DIR, `${name}.disk`);

/** A file of fresh random data, MiB long. Not zeros: the host's KSM would merge a cache of
 *  zero pages (a manager that runs KSM would then look better than one that does not), which
 *  the pages of real files never allow. */
export function writeRandomFile(path: string, mib: number): void {
  const fd = openSync(path, 'w');
  try {
    const chunk = Buffer.allocUnsafe(1024 * 1024);
    for (let i = 0; i < mib; i++) writeSync(fd, randomFillSync(chunk));
  } finally {
    closeSync(fd);
  }
}

/** QEMU's argument list for a lab guest (pure). */
export function qemuArgs(o: {
  name: string;
  memMiB: number;
  kernel: string;
  initrd: string;
  cmdline: string;
  qmpSocket: string;
  consoleLog: string;
  qgaSocket: string | null;
  freePageReporting?: boolean;
  /** A raw disk image the guest sees as /dev/vda. */
  disk?: string;
  virtioMem?: VirtioMemOptions;
}): string[] {
  const vm = o.virtioMem ? checkVirtioMem(o.virtioMem) : null;
  const mem = checkMemMiB(o.memMiB);
  const args = [
    '-name',
    o.name,
    '-accel',
    'tcg',
    '-machine',
    'pc',
    '-m',
    // maxmem leaves guest-physical room above the base RAM for the device.
    vm ? `size=${mem}M,maxmem=${mem + vm.maxMiB}M` : String(mem),
    '-smp',
    '1',
    '-nodefaults',
    '-no-user-config',
    '-display',
    'none',
    '-serial',
    `file:${o.consoleLog}`,
    '-kernel',
    o.kernel,
    '-initrd',
    o.initrd,
    '-append',
    o.cmdline,
    // id=balloon0: the device is /machine/peripheral/balloon0 for qom-set/qom-get of stats.
    '-device',
    `virtio-balloon-pci,id=balloon0${o.freePageReporting ? ',free-page-reporting=on' : ''}`,
    '-qmp',
    `unix:${o.qmpSocket},server=on,wait=off`,
  ];
  if (vm) {
    args.push(
      '-object',
      `memory-backend-ram,id=vmem0mem,size=${vm.maxMiB}M`,
      '-device',
      `virtio-mem-pci,id=vmem0,memdev=vmem0mem,requested-size=${vm.requestedMiB}M,block-size=${vm.blockMiB}M`,
    );
  }
  if (o.disk) {
    // cache=none: the host's page cache stays out of it, the guest's is what is measured.
    args.push('-drive', `file=${o.disk},if=none,id=disk0,format=raw,cache=none,readonly=on`, '-device', 'virtio-blk-pci,drive=disk0');
  }
  if (o.qgaSocket) {
    args.push(
      '-chardev',
      `socket,id=qga0,path=${o.qgaSocket},server=on,wait=off`,
      '-device',
      'virtio-serial-pci,id=vserial0',
      '-device',
      'virtserialport,chardev=qga0,name=org.qemu.guest_agent.0',
    );
  }
  return args;
}

/** True when PID is still the QEMU of this guest (not a recycled PID). */
function isQemu(pid: number, name?: string): boolean {
  const comm = pidComm(pid);
  if (!pidAlive(pid) || comm === null || !comm.startsWith('qemu-system')) return false;
  if (!name) return true;
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(name);
  } catch {
    return false;
  }
}

/** Starts a QEMU guest with a QMP socket; returns once QMP listens (and, by default, the guest is ready). */
export async function startQemuGuest(o: QemuGuestOptions): Promise<QemuGuest> {
  const name = o.name.startsWith(GUEST_PREFIX) ? o.name : GUEST_PREFIX + o.name;
  const memMiB = checkMemMiB(o.memMiB ?? DEFAULT_MEM_MIB);
  const build = await ensureLabBuilt();
  const emulator = await findEmulator();
  mkdirSync(QEMU_DIR, { recursive: true });
  const old = readRecord(name);
  if (old && isQemu(old.pid, old.name)) throw new Error(`QEMU guest ${name} already runs (PID ${old.pid}); stop it first`);
  const qmpSocket = o.qmpSocket ?? join(QEMU_DIR, `${name}.qmp`);
  const consoleLog = join(QEMU_DIR, `${name}.console`);
  const qemuLog = join(QEMU_DIR, `${name}.log`);
  const withAgent = (o.guestAgent ?? true) && build.manifest.guestAgent;
  const qgaSocket = withAgent ? join(QEMU_DIR, `${name}.qga`) : null;
  for (const f of [qmpSocket, consoleLog, qgaSocket]) if (f) rmSync(f, { force: true });
  const workload = o.workload ?? DEFAULT_WORKLOAD;
  const disk = o.cacheDiskMiB ? diskPath(name) : undefined;
  if (disk) {
    writeRandomFile(disk, o.cacheDiskMiB!);
  }
  const cmdline = guestCmdline({
    name,
    workload,
    delayS: o.delayS,
    reportS: o.reportS,
    meminfoS: o.meminfoS,
    guestAgent: withAgent,
    cacheS: disk ? (o.cacheS ?? 0) : undefined,
    virtioMem: o.virtioMem,
  });
  const args = qemuArgs({
    name,
    memMiB,
    kernel: build.kernel,
    initrd: build.initrd,
    cmdline,
    qmpSocket,
    consoleLog,
    qgaSocket,
    freePageReporting: o.freePageReporting,
    disk,
    virtioMem: o.virtioMem,
  });

  const logFd = openSync(qemuLog, 'w');
  const t0 = Date.now();
  // Detached: the guest outlives the process that started it (`ballast lab up` exits).
  const [cmd, argv] = qemuCommand(emulator, args, o.thp);
  const child = spawn(cmd, argv, { detached: true, stdio: ['ignore', logFd, logFd] });
  closeSync(logFd);
  const pid = await new Promise<number>((resolve, reject) => {
    child.once('spawn', () => resolve(child.pid!));
    child.once('error', (e) => reject(new Error(`cannot start ${emulator}: ${e.message}`)));
  });
  child.unref();
  const guest: QemuGuest = { name, pid, memMiB, qmpSocket, consoleLog, qemuLog, qgaSocket, bootMs: null };
  writeFileSync(recordPath(name), JSON.stringify({ ...guest, startedAt: new Date().toISOString() }, null, 2) + '\n');
  try {
    for (const dir of [o.memCgroup, ...(o.moreCgroups ?? [])]) if (dir) writeFileSync(join(dir, 'cgroup.procs'), String(pid));
    await waitFor(`QMP socket ${qmpSocket}`, 30_000, () => {
      if (!pidAlive(pid)) throw new Error(`QEMU exited: ${readTail(qemuLog)}`);
      return existsSync(qmpSocket);
    });
    if (o.wait ?? true) {
      await waitGuestReady(consoleLog, { timeoutMs: o.bootTimeoutMs ?? 180_000, needWorkload: workload !== '' && !o.delayS });
      guest.bootMs = Date.now() - t0;
    }
  } catch (e) {
    await stopQemuGuest(guest);
    throw e;
  }
  return guest;
}

function readTail(path: string): string {
  try {
    return readFileSync(path, 'utf8').trim().split('\n').slice(-5).join('\n');
  } catch {
    return '(no log)';
  }
}

function readRecord(name: string): QemuGuest | null {
  try {
    return JSON.parse(readFileSync(recordPath(name), 'utf8')) as QemuGuest;
  } catch {
    return null;
  }
}

/** Lab QEMU guests with a record; `running` tells whether their PID is still a QEMU. */
export function listQemuGuests(): (QemuGuest & { running: boolean })[] {
  if (!existsSync(QEMU_DIR)) return [];
  return readdirSync(QEMU_DIR)
    .filter((f) => f.endsWith('.json'))
    .map((f) => readRecord(f.slice(0, -5)))
    .filter((g): g is QemuGuest => g !== null)
    .map((g) => ({ ...g, running: isQemu(g.pid, g.name) }));
}

/** Stops a lab QEMU guest by its PID (SIGTERM, then SIGKILL) and removes its sockets and record. */
export async function stopQemuGuest(g: QemuGuest | string): Promise<boolean> {
  const rec = typeof g === 'string' ? readRecord(g.startsWith(GUEST_PREFIX) ? g : GUEST_PREFIX + g) : g;
  if (!rec) return false;
  let stopped = false;
  if (isQemu(rec.pid, rec.name)) {
    await killPid(rec.pid, 5_000);
    stopped = true;
  }
  for (const f of [rec.qmpSocket, rec.qgaSocket, recordPath(rec.name), diskPath(rec.name)]) if (f) rmSync(f, { force: true });
  return stopped;
}

export async function stopAllQemuGuests(): Promise<string[]> {
  const out: string[] = [];
  for (const g of listQemuGuests()) if (await stopQemuGuest(g)) out.push(g.name);
  return out;
}
