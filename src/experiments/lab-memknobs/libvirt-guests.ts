// The run's guests under libvirt (`--via libvirt`, and always for `momd`, which speaks only
// libvirt): the same kernel, initramfs, kernel command line, workload, balloon (with free
// page reporting and statistics period as configured), page-cache disk and virtio-mem device
// as the QMP guests, run by a private libvirtd of the run's own.
//
// Private, because a manager on a libvirtd manages every domain on it: momd balloons whatever
// it lists, and the lab's shared qemu:///system may hold other tests' guests. The daemon is an
// unprivileged session daemon (the lab's pod daemon: its own socket, its own state, started
// and stopped by its PID); its QEMUs run as the pod account.
//
// Each QEMU is created paused, moved into its guest's cgroup of the memory domain (and the
// swap throttle's and CPU cap's cgroups), and only then resumed, so the guest's memory is
// charged to the domain as the QMP guests' is. What QEMU wrote before (the kernel and
// initramfs copied into guest RAM at reset) moves with it on cgroup v1, where the guest's
// cgroup gets move_charge_at_immigrate; on v2 those few MiB stay where the daemon runs.
import { copyFileSync, existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ensureLabBuilt } from '../../lab/build.js';
import { domainXml, findEmulator, waitGuestReady, type VirtioMemOptions } from '../../lab/guests.js';
import { PodLibvirtd } from '../../lab/pod-libvirtd.js';
import { killPid, pidAlive, readPidFile, waitFor } from '../../lab/proc.js';
import { writeRandomFile } from '../../lab/qemu.js';
import { RUN_DIR } from '../../lab/paths.js';

export interface LibvirtRunGuestOptions {
  name: string;
  memMiB: number;
  workload: string;
  delayS: number;
  statsPeriodS: number;
  memCgroup: string;
  moreCgroups: string[];
  freePageReporting: boolean;
  guestAgent: boolean;
  cacheDiskMiB?: number;
  virtioMem?: VirtioMemOptions;
}

export interface LibvirtRunGuest {
  name: string;
  pid: number;
  consoleLog: string;
}

/** v1: set on a guest's cgroup, the charges of a process moved into it move along. */
const MOVE_CHARGE = 'memory.move_charge_at_immigrate';

export class RunLibvirtd {
  readonly guests: LibvirtRunGuest[] = [];

  private constructor(
    private readonly daemon: PodLibvirtd,
    readonly home: string,
  ) {}

  /** The connection URI for clients that reach the socket through libvirt's library (virsh,
   *  momd's libvirt-hypervisor-uri): it carries the socket in it. */
  get uri(): string {
    return this.daemon.uri;
  }
  /** The URI ballast's own libvirt client names on `socket` (CONNECT_OPEN). The daemon opens
   *  the URI a client names: the transport URI above would make it connect to itself, and a
   *  daemon holding such a connection ignores SIGTERM. */
  get openUri(): string {
    return 'qemu:///session';
  }
  get socket(): string {
    return this.daemon.bindSocket;
  }
  /** Where the daemon keeps its QEMUs' <name>.pid files. */
  get pidDir(): string {
    return join(this.home, 'run', 'libvirt', 'qemu', 'run');
  }
  get daemonPid(): number | null {
    return this.daemon.daemonPid;
  }

  /** Starts the run's daemon. `tag` keeps concurrent runs' directories apart; the path must
   *  stay short (a unix socket address holds 108 bytes). */
  static async start(tag: string): Promise<RunLibvirtd> {
    const home = join(RUN_DIR, `lv-${tag}`);
    if (existsSync(home)) rmSync(home, { recursive: true, force: true });
    const build = await ensureLabBuilt();
    const daemon = await PodLibvirtd.create({ root: join(home, 'n'), uid: 'x', home });
    // The pod account may not read the checkout: its own copies of the image.
    copyFileSync(build.kernel, join(home, 'vmlinuz'));
    copyFileSync(build.initrd, join(home, 'initramfs.cpio.gz'));
    return new RunLibvirtd(daemon, home);
  }

  /** Boots one guest, paused until its QEMU is in its cgroups, and resumes it (not waiting
   *  for it to be ready: waitReady). */
  async startGuest(o: LibvirtRunGuestOptions): Promise<LibvirtRunGuest> {
    const kernel = join(this.home, 'vmlinuz');
    const initrd = join(this.home, 'initramfs.cpio.gz');
    const consoleLog = join(this.home, 'home', `${o.name}.console`);
    rmSync(consoleLog, { force: true });
    const disk = o.cacheDiskMiB ? join(this.home, `${o.name}.disk`) : undefined;
    if (disk) writeRandomFile(disk, o.cacheDiskMiB!);
    const xml = domainXml({
      name: o.name,
      memMiB: o.memMiB,
      kernel,
      initrd,
      workload: o.workload,
      delayS: o.delayS,
      reportS: 2,
      meminfoS: 2,
      guestAgent: o.guestAgent,
      cacheS: disk ? 0 : undefined,
      virtioMem: o.virtioMem,
      consolePath: consoleLog,
      statsPeriodS: o.statsPeriodS,
      freePageReporting: o.freePageReporting,
      disk,
      emulator: await findEmulator(),
    });
    const xmlPath = join(this.home, `${o.name}.xml`);
    writeFileSync(xmlPath, xml);
    await this.daemon.virsh(['create', '--paused', xmlPath]);
    const pidFile = join(this.pidDir, `${o.name}.pid`);
    let pid: number | null = null;
    await waitFor(`${o.name}'s QEMU PID file`, 30_000, () => (pid = readPidFile(pidFile)) !== null && pidAlive(pid));
    const guest: LibvirtRunGuest = { name: o.name, pid: pid!, consoleLog };
    this.guests.push(guest);
    try {
      writeFileSync(join(o.memCgroup, MOVE_CHARGE), '3');
    } catch {
      /* v2 (no such file), or a kernel that dropped it: charges stay behind */
    }
    for (const dir of [o.memCgroup, ...o.moreCgroups]) writeFileSync(join(dir, 'cgroup.procs'), String(guest.pid));
    await this.daemon.virsh(['resume', o.name]);
    return guest;
  }

  /** Waits until the guest's balloon driver is bound (and, without a delay, its workload runs). */
  async waitReady(g: LibvirtRunGuest, o: Pick<LibvirtRunGuestOptions, 'workload' | 'delayS'>, timeoutMs: number): Promise<void> {
    await waitGuestReady(g.consoleLog, { timeoutMs, needWorkload: o.workload !== '' && !o.delayS });
  }

  /** Destroys the guests and stops the daemon (by its PID), removing its directories. */
  async stop(): Promise<void> {
    for (const g of this.guests) {
      if (this.daemon.daemonPid) await this.daemon.destroyGuest(g.name).catch(() => undefined);
      if (pidAlive(g.pid)) await killPid(g.pid, 5_000);
    }
    await this.daemon.remove();
  }

  /** Without the event loop (the process is exiting): SIGKILL the QEMUs and the daemon. */
  killNow(): void {
    for (const pid of [...this.guests.map((g) => g.pid), this.daemon.daemonPid]) {
      if (pid)
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* gone */
        }
    }
  }
}
