// A KubeVirt node in miniature for the lab: several libvirt daemons, each as a virt-launcher
// pod runs its own (KubeVirt's default non-root mode): an unprivileged daemon serving only
// qemu:///session, with its state under its own XDG directories, and its socket in a
// directory laid out as the kubelet lays out the pod's "libvirt-runtime" emptyDir:
//   <root>/pods/<pod UID>/volumes/kubernetes.io~empty-dir/libvirt-runtime/libvirt-sock
// Debian 12 has no virtqemud, so libvirtd stands in for it (same protocol, same session
// mode); the socket is libvirt-sock rather than virtqemud-sock. The daemon binds a short path
// ($XDG_RUNTIME_DIR/libvirt, a link to the emptyDir) because a pod directory path is longer
// than a socket address holds, as on a real node; clients see the long path.
// Each daemon is stopped and started by its PID, which this module spawned.
import { spawn } from 'node:child_process';
import { chownSync, copyFileSync, existsSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { domainXml, findEmulator, type DomainXmlOptions } from './guests.js';
import type { LabBuild } from './build.js';
import { killPid, pidAlive, pidComm, readPidFile, run, runOk, sleep, waitFor } from './proc.js';

/** The account the pods' daemons and their QEMUs run as (created when missing). */
export const POD_USER = 'ballast-lab-pod';

export interface PodDaemonOptions {
  /** The node's kubelet root for this run: pods live under <root>/pods. */
  root: string;
  /** The pod's UID (a UUID on a real node). */
  uid: string;
  /** A short private directory for the daemon's own state (XDG dirs, PID file, logs). */
  home: string;
}

export class PodLibvirtd {
  readonly socket: string;
  /** The path the daemon binds (through the link): short enough for a socket address. */
  readonly bindSocket: string;
  readonly uri: string;
  private pid: number | null = null;

  private constructor(
    readonly o: PodDaemonOptions,
    private readonly ids: { uid: number; gid: number },
  ) {
    const runtime = join(o.root, 'pods', o.uid, 'volumes', 'kubernetes.io~empty-dir', 'libvirt-runtime');
    this.socket = join(runtime, 'libvirt-sock');
    this.bindSocket = join(o.home, 'run', 'libvirt', 'libvirt-sock');
    this.uri = `qemu+unix:///session?socket=${this.bindSocket}`;
  }

  /** Lays out the pod's directories and starts its daemon; resolves once it answers. */
  static async create(o: PodDaemonOptions): Promise<PodLibvirtd> {
    const ids = await podUser();
    const d = new PodLibvirtd(o, ids);
    const runtime = join(o.root, 'pods', o.uid, 'volumes', 'kubernetes.io~empty-dir', 'libvirt-runtime');
    for (const dir of [runtime, join(o.home, 'run'), join(o.home, 'config', 'libvirt'), join(o.home, 'cache'), join(o.home, 'home')])
      mkdirSync(dir, { recursive: true });
    if (!existsSync(join(o.home, 'run', 'libvirt'))) symlinkSync(runtime, join(o.home, 'run', 'libvirt'));
    // QEMU's output to a file: there is no virtlogd in a pod's session daemon here.
    writeFileSync(join(o.home, 'config', 'libvirt', 'qemu.conf'), 'stdio_handler = "file"\n');
    for (const p of [
      o.home,
      join(o.home, 'run'),
      join(o.home, 'config'),
      join(o.home, 'config', 'libvirt'),
      join(o.home, 'config', 'libvirt', 'qemu.conf'),
      join(o.home, 'cache'),
      join(o.home, 'home'),
      runtime,
    ]) {
      chownSync(p, ids.uid, ids.gid);
    }
    await d.start();
    return d;
  }

  get daemonPid(): number | null {
    return this.pid !== null && pidAlive(this.pid) ? this.pid : null;
  }

  /** Starts the daemon (again); resolves once `virsh uri` gets an answer through it. */
  async start(): Promise<void> {
    if (this.daemonPid) throw new Error(`the daemon of pod ${this.o.uid} already runs (PID ${this.pid})`);
    const h = this.o.home;
    const env = {
      PATH: '/usr/sbin:/usr/bin:/sbin:/bin',
      HOME: join(h, 'home'),
      XDG_RUNTIME_DIR: join(h, 'run'),
      XDG_CONFIG_HOME: join(h, 'config'),
      XDG_CACHE_HOME: join(h, 'cache'),
    };
    const pidFile = join(h, 'libvirtd.pid');
    rmSync(pidFile, { force: true });
    // Not -d: the PID spawned is the daemon's own, so it is stopped by that PID.
    const child = spawn('libvirtd', ['-p', pidFile], { env, uid: this.ids.uid, gid: this.ids.gid, detached: true, stdio: ['ignore', 'ignore', 'ignore'] });
    child.unref();
    this.pid = child.pid ?? null;
    if (this.pid === null) throw new Error(`cannot start libvirtd for pod ${this.o.uid}`);
    await waitFor(`the daemon of pod ${this.o.uid} to answer`, 60_000, async () => {
      if (!pidAlive(this.pid!)) throw new Error(`libvirtd of pod ${this.o.uid} exited at start (PID ${this.pid})`);
      return (await run('virsh', ['-q', '-c', this.uri, 'uri'], { timeoutMs: 10_000 })).code === 0;
    });
    if (readPidFile(pidFile) !== this.pid) throw new Error(`libvirtd of pod ${this.o.uid}: PID file ${pidFile} does not hold PID ${this.pid}`);
  }

  /** Stops the daemon by its PID: SIGTERM (it removes its socket) or SIGKILL (the socket file
   *  stays, nothing answers on it). Its guests' QEMUs keep running either way. */
  async stop(signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<void> {
    const pid = this.daemonPid;
    if (!pid) return;
    process.kill(pid, signal);
    await waitFor(`libvirtd of pod ${this.o.uid} (PID ${pid}) to exit`, 30_000, () => !pidAlive(pid));
    this.pid = null;
  }

  virsh(args: string[]): Promise<string> {
    return runOk('virsh', ['-q', '-c', this.uri, ...args], { timeoutMs: 60_000 });
  }

  /** Boots a transient lab guest on this daemon; returns its console path. The image is copied
   *  into the pod's directory: the pod's account may not read the checkout. */
  async startGuest(build: LabBuild, o: Pick<DomainXmlOptions, 'name' | 'memMiB' | 'statsPeriodS' | 'workload' | 'meminfoS'>): Promise<string> {
    const h = this.o.home;
    const kernel = join(h, 'vmlinuz');
    const initrd = join(h, 'initramfs.cpio.gz');
    if (!existsSync(kernel)) copyFileSync(build.kernel, kernel);
    if (!existsSync(initrd)) copyFileSync(build.initrd, initrd);
    const consolePath = join(h, 'home', `${o.name}.console`);
    rmSync(consolePath, { force: true });
    const xml = domainXml({ ...o, kernel, initrd, consolePath, emulator: await findEmulator(), guestAgent: false });
    const xmlPath = join(h, `${o.name}.xml`);
    writeFileSync(xmlPath, xml);
    await this.virsh(['create', xmlPath]);
    return consolePath;
  }

  /** Destroys the guest: through the daemon when it runs, else by the PID in the daemon's
   *  state (a test that failed while the daemon was stopped must not leave QEMU behind). */
  async destroyGuest(name: string): Promise<void> {
    if (this.daemonPid) {
      await run('virsh', ['-q', '-c', this.uri, 'destroy', name], { timeoutMs: 30_000 });
      return;
    }
    const pid = readPidFile(join(this.o.home, 'run', 'libvirt', 'qemu', 'run', `${name}.pid`));
    if (pid !== null && pidComm(pid)?.startsWith('qemu-system')) await killPid(pid);
  }

  /** Stops the daemon and removes the pod's and the daemon's directories. */
  async remove(): Promise<void> {
    await this.stop();
    // A daemon killed mid-start can leave its socket behind for a moment.
    await sleep(50);
    rmSync(join(this.o.root, 'pods', this.o.uid), { recursive: true, force: true });
    rmSync(this.o.home, { recursive: true, force: true });
  }
}

async function podUser(): Promise<{ uid: number; gid: number }> {
  if ((await run('getent', ['group', POD_USER])).code !== 0) await runOk('groupadd', ['--system', POD_USER]);
  if ((await run('getent', ['passwd', POD_USER])).code !== 0) {
    await runOk('useradd', ['--system', '--no-create-home', '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin', '-g', POD_USER, POD_USER]);
  }
  const [, , uid, gid] = (await runOk('getent', ['passwd', POD_USER])).trim().split(':');
  return { uid: Number(uid), gid: Number(gid) };
}
