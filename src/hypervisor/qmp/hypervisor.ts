// The QMP driver: guests are QEMU processes reached through their QMP sockets (a configured
// list, or every socket in a directory), no libvirt needed.
import { readdir, stat } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import type { GuestSample, Hypervisor, HypervisorCapabilities, HypervisorConnection, LifecycleEvent } from '../../types.js';
import { pidAlive, readProcessRss } from '../../host/process.js';
import { withMomDefaults } from '../mom-defaults.js';
import { QmpClient, QmpCommandError, type QmpEvent } from './client.js';
import { guestStatsToMom, staleReason, type GuestStatsReply } from './stats.js';
import { GuestAgentClient } from './agent.js';
import { AgentRetry, readGuestFile } from '../guest-agent.js';
import { GuestReclaimUnsupported, RECLAIM_TIMEOUT_MS, type ReclaimOutcome, reclaimInGuest } from '../guest-reclaim.js';
import { parsePsi } from '../../psi.js';
import { verifiedQemuPid } from './peer.js';
import { QmpBusyError, QmpHoldExceededError, qmpSession, type SessionLimits } from './session.js';
import { readPveConfig, type PveVmConfig } from './pve-config.js';

export type QmpLogFn = (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
import { QmpMemoryDevices } from './memory-devices.js';
import { cgroupCpuTune, cgroupV2Mounted } from '../../host/cgroup-cpu.js';
import { KsmSysfs } from '../../host/ksm-sysfs.js';
import { CgroupLimits } from '../../host/cgroup-limits.js';

export interface QmpGuestConfig {
  socket: string;
  /** Name (and id) of the guest; default: the socket's file name without .sock/.qmp/.socket.
   *  Never what QEMU says (`query-name`): a guest must not choose whose balloon it is. */
  name?: string;
  /** The guest's balloon floor (balloon_min), KiB. */
  balloonMinKiB?: number;
  /** The guest agent's socket (QEMU's virtserialport org.qemu.guest_agent.0), if it has one. */
  agentSocket?: string;
}

export interface QmpHypervisorOptions {
  sockets?: (string | QmpGuestConfig)[];
  /** Every unix socket in this directory is a guest's QMP socket (scanned at each collect),
   *  except `<stem>.qga`: the guest agent of the guest whose QMP socket has that stem. */
  socketDir?: string;
  /** Read each guest's /proc/pressure/memory through its guest agent (psi_* guest fields). */
  guestPsi?: boolean;
  /** guest-stats-polling-interval set on each balloon, seconds. */
  statsPeriodS?: number;
  balloonMinKiB?: number;
  /** Root for /proc lookups (the QEMU process's RSS and PID). */
  root?: string;
  timeoutMs?: number;
  /** How long a guest agent may take to answer (default 2 s: a collection waits for it). */
  agentTimeoutMs?: number;
  /** First delay before reconnecting a socket that failed; doubles up to 30 s. */
  retryMs?: number;
  /** Where the driver reports what an operator should know (a guest id collision, a QEMU PID it
   *  does not trust): once per guest, not each collection. */
  log?: QmpLogFn;
  /** 'persistent' (default): one connection per guest, kept open (QEMU's events as they come).
   *  'shared': for sockets other tools open too (Proxmox VE): a short connection per collection
   *  and per action, never held longer than `holdMs` (docs/qmp.md, "Shared sockets"). */
  mode?: 'persistent' | 'shared';
  /** shared mode: the most a connection holds a socket, ms, from QEMU's greeting to our close
   *  (the batch is aborted then); also how long it waits for the greeting. Default 300. */
  holdMs?: number;
  /** Proxmox VE: the directory of the VMs' `<vmid>.conf` (/etc/pve/qemu-server), read at each
   *  collection for each VM's name and floor; only `<vmid>.qmp` sockets in `socketDir` are
   *  guests. Needs mode 'shared'. */
  pveConfigDir?: string;
}

interface GuestInfo {
  /** What QEMU calls itself (`query-name`): shown, never used to find the guest. */
  qemuName: string | null;
  pid: number | null;
  /** Why the PID QEMU's vCPU threads point at was not taken. */
  pidRefused: string | null;
  balloonPath: string | null;
  /** The balloon's free-page-reporting property (null: unknown). */
  freePageReporting: boolean | null;
  maxKiB: number | null;
  vcpus: number | null;
}

class GuestConn {
  client: QmpClient;
  info: GuestInfo | null = null;
  /** Set when the guest's own name was taken by another socket's guest: that socket. */
  collidesWith: string | null = null;
  /** The PID refusal already logged, so that a reconnect with the same one is not logged again. */
  pidRefusalLogged: string | null = null;
  everConnected = false;
  shutdownSeen = false;
  retryAt = 0;
  retryDelay: number;
  lastError: string | null = null;
  lastActualKiB: number | null = null;
  /** shared mode: the socket file's identity when `info` was learnt; a new QEMU binds a new one. */
  incarnation: string | null = null;
  /** shared mode: query-memory-devices as this collection's session read it. */
  memDevices: { seq: number; reply: unknown } | null = null;
  /** Proxmox VE: the VM's config as last read well, why the last read failed, and what was logged. */
  pve: PveVmConfig | null = null;
  pveError: string | null = null;
  pveLogged: string | null = null;
  agent: GuestAgentClient | null;
  private readonly agentTimeoutMs: number;
  /** When to read the guest's PSI again after a failure. */
  readonly psiRetry = new AgentRetry();
  constructor(
    readonly cfg: QmpGuestConfig,
    /** The guest's id and name, from ballast's own map of sockets. */
    readonly id: string,
    opts: QmpHypervisorOptions,
  ) {
    this.client = new QmpClient(cfg.socket, { timeoutMs: opts.timeoutMs ?? 10000, connectTimeoutMs: opts.timeoutMs ?? 5000 });
    this.retryDelay = opts.retryMs ?? 1000;
    this.agentTimeoutMs = opts.agentTimeoutMs ?? 2000;
    this.agent = cfg.agentSocket ? new GuestAgentClient(cfg.agentSocket, this.agentTimeoutMs) : null;
  }

  /** The guest's agent socket appeared, went or moved (QEMU creates it beside the QMP socket,
   *  not necessarily at the same moment): the QMP connection stays as it is. */
  setAgent(path: string | undefined): void {
    if (path === this.cfg.agentSocket) return;
    this.agent?.close();
    this.cfg.agentSocket = path;
    this.agent = path ? new GuestAgentClient(path, this.agentTimeoutMs) : null;
    this.psiRetry.forget('psi');
  }
}

const AGENT_SUFFIX = '.qga';

interface QomEntry {
  name: string;
  type: string;
}

/** balloon_max in the balloon's own coordinate: QEMU's balloon works on boot memory only
 *  (`query-balloon`'s actual never counts hotplugged DIMMs or virtio-mem blocks), so its maximum
 *  is the base memory; counting plugged memory too made a virtio-mem guest look ballooned by
 *  its device's size, and policies deflated it for nothing. */
function balloonMaxKiB(mem: { 'base-memory': number }): number {
  return Math.floor(mem['base-memory'] / 1024);
}

export class QmpHypervisor implements Hypervisor {
  readonly name = 'qmp';
  readonly capabilities: HypervisorCapabilities = {
    memoryDevices: new QmpMemoryDevices((id, command, args) => this.execute(id, command, args)),
    // Without libvirt a guest's CPU share is its QEMU's cgroup v2 cpu.max (not offered on v1).
    cpuTune: cgroupV2Mounted() ? cgroupCpuTune((id) => [...this.conns.values()].find((c) => c.id === id)?.info ?? undefined) : undefined,
    // Its QEMUs run on this host: the kernel's KSM and each QEMU's own memory cgroup.
    ksm: new KsmSysfs(),
    cgroupLimits: new CgroupLimits(),
    guestReclaim: { reclaim: (id, kib) => this.reclaimThroughAgent(id, kib) },
  };
  private readonly conns = new Map<string, GuestConn>();
  private reconnects = 0;

  /** Connected when every guest socket is open, except guests that shut down (their socket goes
   *  with them); in shared mode, when no guest's last session failed for another reason than a
   *  busy socket. */
  connection(): HypervisorConnection {
    let connected = true;
    for (const c of this.conns.values()) {
      if (this.shared ? c.lastError !== null : !c.client.connected && !c.shutdownSeen) connected = false;
    }
    return { connected, reconnects: this.reconnects };
  }
  private readonly shared: boolean;
  private readonly limits: SessionLimits;
  /** Collections so far: a session's memory devices answer only this collection's questions. */
  private collectSeq = 0;
  private readonly sessions = { sessions: 0, busy: 0, aborted: 0, maxHeldMs: 0, maxWaitedMs: 0 };
  private readonly listeners = new Set<(e: LifecycleEvent) => void>();
  private readonly qmpListeners = new Set<(guest: string, e: QmpEvent) => void>();
  private closed = false;

  constructor(private readonly opts: QmpHypervisorOptions) {
    if (!opts.sockets?.length && !opts.socketDir) throw new Error('QMP driver: configure sockets or a socketDir');
    for (const s of opts.sockets ?? []) {
      // A name with a slash could equal another guest's socket path, the id a collision falls back to.
      if (typeof s !== 'string' && s.name !== undefined && (s.name === '' || s.name.includes('/'))) {
        throw new Error(`QMP driver: guest name ${JSON.stringify(s.name)} for ${s.socket} must be non-empty and hold no "/"`);
      }
    }
    this.shared = opts.mode === 'shared';
    const holdMs = opts.holdMs ?? 300;
    if (!Number.isFinite(holdMs) || holdMs <= 0) throw new Error(`QMP driver: hold time must be a positive number of ms, not ${holdMs}`);
    this.limits = { waitMs: holdMs, holdMs };
    if (opts.pveConfigDir && !this.shared) {
      throw new Error(
        'QMP driver: Proxmox VE\'s own tools open the same QMP sockets: reading its VM configs needs the shared mode (hypervisor.qmp_mode = "shared")',
      );
    }
  }

  /** shared mode: sessions run, how many found the socket busy or were cut at the hold cap, and
   *  the longest hold and greeting wait seen (ms). */
  sessionStats(): { sessions: number; busy: number; aborted: number; maxHeldMs: number; maxWaitedMs: number } {
    return { ...this.sessions };
  }

  async connect(): Promise<void> {
    this.closed = false;
    await this.refreshSockets();
    // Shared sockets are opened only for a collection's or an action's moment.
    if (this.shared) return;
    await Promise.all([...this.conns.values()].map((c) => this.ensure(c).catch(() => {})));
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const c of this.conns.values()) {
      c.client.close();
      c.agent?.close();
    }
    this.conns.clear();
  }

  onEvent(listener: (e: LifecycleEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Raw QMP events of every guest (BALLOON_CHANGE, SHUTDOWN, ...). */
  onQmpEvent(listener: (guest: string, e: QmpEvent) => void): () => void {
    this.qmpListeners.add(listener);
    return () => this.qmpListeners.delete(listener);
  }

  private emit(e: LifecycleEvent): void {
    for (const l of this.listeners) l(e);
  }

  private async socketsInDir(dir: string): Promise<string[]> {
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (err) {
      // Not "no guests": a directory that is missing or unreadable is a configuration problem,
      // and saying nothing would look like an idle host.
      const code = (err as NodeJS.ErrnoException).code ?? '';
      const why =
        code === 'ENOENT' ? 'does not exist' : code === 'ENOTDIR' ? 'is not a directory' : code === 'EACCES' ? 'is not readable' : (err as Error).message;
      throw new Error(`QMP socket directory ${dir} ${why} (hypervisor.qmp_dir): no guest can be found until it does`);
    }
    const out: string[] = [];
    for (const n of names.sort()) {
      const p = join(dir, n);
      try {
        if ((await stat(p)).isSocket()) out.push(p);
      } catch {
        // vanished between readdir and stat
      }
    }
    return out;
  }

  private async refreshSockets(): Promise<void> {
    const cfgs = new Map<string, QmpGuestConfig>();
    for (const s of this.opts.sockets ?? []) {
      const c = typeof s === 'string' ? { socket: s } : s;
      cfgs.set(resolve(c.socket), { ...c, socket: resolve(c.socket), ...(c.agentSocket ? { agentSocket: resolve(c.agentSocket) } : {}) });
    }
    if (this.opts.socketDir) {
      const all = await this.socketsInDir(this.opts.socketDir);
      const agents = new Set(all.filter((p) => p.endsWith(AGENT_SUFFIX)));
      for (const p of all) {
        if (agents.has(p) || cfgs.has(p)) continue;
        // Proxmox VE's directory also holds each VM's VNC, serial and storage-daemon sockets:
        // connecting to a serial console's socket would take it from its user.
        if (this.opts.pveConfigDir && !PVE_QMP.test(basename(p))) continue;
        const agent = `${socketStem(p)}${AGENT_SUFFIX}`;
        cfgs.set(p, agents.has(agent) ? { socket: p, agentSocket: agent } : { socket: p });
      }
    }
    for (const [path, c] of this.conns) {
      const cfg = cfgs.get(path);
      if (cfg) c.setAgent(cfg.agentSocket);
      else {
        c.client.close();
        c.agent?.close();
        this.conns.delete(path);
        if (this.shared && c.everConnected) this.emit({ kind: 'stopped', id: c.id, name: this.guestName(c), detail: `QMP socket ${path} gone` });
      }
    }
    for (const [path, cfg] of cfgs) if (!this.conns.has(path)) this.addConn(cfg);
  }

  /** The guest's id comes from its socket (or the configured name), never from QEMU. Two
   *  sockets that would share one (web.sock and web.qmp, or one file name in two directories)
   *  are kept apart: the later one is known by its socket path, and both are marked. */
  private addConn(cfg: QmpGuestConfig): void {
    const wanted = cfg.name ?? basename(socketStem(cfg.socket));
    const holder = [...this.conns.values()].find((o) => o.id === wanted);
    const c = new GuestConn(cfg, holder ? cfg.socket : wanted, this.opts);
    if (holder) {
      c.collidesWith = holder.cfg.socket;
      holder.collidesWith ??= cfg.socket;
      this.opts.log?.('warn', 'QMP guest name collision: the later socket is known by its path', {
        name: wanted,
        socket: cfg.socket,
        id: c.id,
        other_socket: holder.cfg.socket,
      });
    }
    this.conns.set(cfg.socket, c);
  }

  /** The id, or the VM's name in its Proxmox VE config (the operator's file, not QEMU's word). */
  private guestName(c: GuestConn): string {
    return c.pve?.name ?? c.id;
  }

  /** Connects (with backoff after failures) and learns the guest's fixed facts once per connection. */
  private async ensure(c: GuestConn): Promise<void> {
    if (c.client.connected && c.info) return;
    if (Date.now() < c.retryAt) throw new Error(c.lastError ?? 'waiting to reconnect');
    try {
      if (!c.client.connected) {
        c.client.removeAllListeners();
        await c.client.connect();
        c.client.on('event', (e: QmpEvent) => this.onQmpEvent_(c, e));
        c.client.on('protocol-error', (err: Error) => {
          c.lastError = err.message;
        });
        c.client.on('close', () => this.onClose(c));
      }
      c.info = await this.learn(c);
      this.notePid(c, c.info);
      const first = !c.everConnected;
      c.everConnected = true;
      c.shutdownSeen = false;
      c.retryDelay = this.opts.retryMs ?? 1000;
      c.lastError = null;
      if (!first) this.reconnects++;
      if (first) this.emit({ kind: 'started', id: c.id, name: c.id, detail: `QMP ${c.cfg.socket}` });
    } catch (err) {
      c.lastError = (err as Error).message;
      c.retryAt = Date.now() + c.retryDelay;
      c.retryDelay = Math.min(c.retryDelay * 2, 30000);
      c.client.close();
      throw err;
    }
  }

  private async learn(c: GuestConn): Promise<GuestInfo> {
    const q = c.client;
    const nameReply = await q.execute<{ name?: unknown }>('query-name');
    const qemuName = typeof nameReply?.name === 'string' ? nameReply.name.slice(0, 256) : null;
    const mem = await q.execute<{ 'base-memory': number; 'plugged-memory'?: number }>('query-memory-size-summary');
    const cpus = await q.execute<{ 'thread-id': number }[]>('query-cpus-fast');
    // A vCPU thread's thread group is the QEMU process: its PID without any configuration, once
    // the kernel confirms that process holds this socket (the PID gets cgroup limits and cpu.max).
    const peer = await verifiedQemuPid(this.opts.root ?? '/', c.cfg.socket, Array.isArray(cpus) ? cpus.map((x) => Number(x?.['thread-id'])) : []);
    const balloonPath = await this.findBalloon(c);
    let freePageReporting: boolean | null = null;
    if (balloonPath) {
      await q.execute('qom-set', { path: balloonPath, property: 'guest-stats-polling-interval', value: this.opts.statsPeriodS ?? 5 });
      // QEMU 5.1+ has the property; an older one does not, and then it is unknown.
      freePageReporting = await q.execute<boolean>('qom-get', { path: balloonPath, property: 'free-page-reporting' }).then(
        (v) => v === true,
        () => null,
      );
    }
    return {
      qemuName,
      pid: peer.pid,
      pidRefused: peer.pid === null ? peer.reason : null,
      balloonPath,
      freePageReporting,
      maxKiB: balloonMaxKiB(mem),
      vcpus: Array.isArray(cpus) ? cpus.length : null,
    };
  }

  private notePid(c: GuestConn, info: GuestInfo): void {
    if (info.pidRefused === null || info.pidRefused === c.pidRefusalLogged) return;
    c.pidRefusalLogged = info.pidRefused;
    this.opts.log?.('warn', 'QEMU PID not trusted: no RSS, cgroup limits or cpu.max for this guest', {
      guest: c.id,
      socket: c.cfg.socket,
      reason: info.pidRefused,
    });
  }

  /** The QOM path of the guest's virtio-balloon device (with or without an id). */
  private async findBalloon(c: GuestConn): Promise<string | null> {
    for (const parent of ['/machine/peripheral', '/machine/peripheral-anon']) {
      let items: QomEntry[];
      try {
        items = await c.client.execute<QomEntry[]>('qom-list', { path: parent });
      } catch (err) {
        if (err instanceof QmpCommandError) continue;
        throw err;
      }
      const b = items.find((i) => /^child<virtio-balloon/.test(i.type));
      if (b) return `${parent}/${b.name}`;
    }
    return null;
  }

  private onQmpEvent_(c: GuestConn, e: QmpEvent): void {
    const name = this.guestName(c);
    if (e.event === 'BALLOON_CHANGE' && typeof e.data.actual === 'number') c.lastActualKiB = Math.floor(e.data.actual / 1024);
    if (e.event === 'SHUTDOWN') {
      c.shutdownSeen = true;
      this.emit({ kind: 'stopped', id: name, name, detail: String(e.data.reason ?? 'shutdown') });
    }
    for (const l of this.qmpListeners) l(name, e);
  }

  private onClose(c: GuestConn): void {
    if (this.closed) return;
    c.info = null;
    if (!c.shutdownSeen) {
      const name = this.guestName(c);
      this.emit({ kind: 'destroyed', id: name, name, detail: 'QMP connection closed without SHUTDOWN (QEMU killed?)' });
    }
  }

  async collect(): Promise<GuestSample[]> {
    await this.refreshSockets();
    this.collectSeq++;
    const results = await Promise.all([...this.conns.values()].map((c) => (this.shared ? this.sampleShared(c) : this.sampleOne(c))));
    return results.filter((s): s is GuestSample => s !== null);
  }

  private async sampleOne(c: GuestConn): Promise<GuestSample | null> {
    try {
      await this.ensure(c);
    } catch (err) {
      // Never reached, or the process is gone (refused / no socket): not a running guest.
      const code = (err as { code?: string }).code;
      if (!c.everConnected || code === 'ECONNREFUSED' || code === 'ENOENT') return null;
      return this.staleSample(c, `QMP: ${(err as Error).message}`);
    }
    const info = c.info!;
    try {
      const balloon = await c.client.execute<{ actual: number }>('query-balloon');
      const reply = info.balloonPath ? await c.client.execute<GuestStatsReply>('qom-get', { path: info.balloonPath, property: 'guest-stats' }) : null;
      return await this.finishSample(c, info, balloon, reply);
    } catch (err) {
      if (err instanceof QmpCommandError && err.errorClass === 'DeviceNotActive') {
        return this.staleSample(c, 'the balloon device is not active yet (guest driver not loaded)');
      }
      return this.staleSample(c, `QMP: ${(err as Error).message}`);
    }
  }

  /** A sample from query-balloon's and guest-stats' replies (both modes). */
  private async finishSample(c: GuestConn, info: GuestInfo, balloon: unknown, reply: GuestStatsReply | null): Promise<GuestSample> {
    const actual = (balloon as { actual?: unknown } | null)?.actual;
    if (typeof actual !== 'number' || !Number.isSafeInteger(actual) || actual < 0) {
      throw new Error(`query-balloon answered without a valid "actual": ${JSON.stringify(balloon)?.slice(0, 100)}`);
    }
    c.lastActualKiB = Math.floor(actual / 1024);
    let stats: GuestSample['stats'] = {};
    let stale: string | null = null;
    if (reply !== null) {
      const m = guestStatsToMom(reply);
      stats = m.stats;
      stale = staleReason(m.lastUpdate, m.stats);
    } else stale = 'the guest has no virtio-balloon device';
    stats.balloon_cur = c.lastActualKiB;
    stats.balloon_max = info.maxKiB;
    stats.balloon_min = this.floorKiB(c);
    stats.rss = info.pid === null ? null : await readProcessRss(this.opts.root ?? '/', info.pid);
    stats.vcpu_count = info.vcpus;
    withMomDefaults(stats);
    if (this.opts.guestPsi && c.agent) await this.fillPsi(c, stats);
    const name = this.guestName(c);
    const sample: GuestSample = { id: c.id, name, props: this.props(c), stats };
    // Without its Proxmox VE config the VM's floor is unknown: nothing is taken from it.
    if (this.opts.pveConfigDir && !c.pve) stale = `Proxmox VE config: ${c.pveError ?? 'not read yet'}`;
    if (stale) sample.stale = stale;
    return sample;
  }

  /** balloon_min: the VM's Proxmox VE minimum (`balloon`, else `memory`), else the configured one. */
  private floorKiB(c: GuestConn): number {
    if (this.opts.pveConfigDir) {
      if (c.pve) return (c.pve.balloonMiB || c.pve.memoryMiB) * 1024;
      // Config not readable: its whole memory, so that nothing is taken.
      return c.info?.maxKiB ?? c.lastActualKiB ?? 0;
    }
    return c.cfg.balloonMinKiB ?? this.opts.balloonMinKiB ?? 0;
  }

  /** Proxmox VE: reads the VM's config again (it changes under us: qm set, the GUI). A config
   *  that cannot be read keeps the last good one and is logged once per distinct error. */
  private async readPve(c: GuestConn): Promise<void> {
    const vmid = basename(socketStem(c.cfg.socket));
    try {
      c.pve = await readPveConfig(this.opts.pveConfigDir!, vmid);
      c.pveError = null;
      c.pveLogged = null;
    } catch (err) {
      c.pveError = (err as Error).message;
      if (c.pveLogged !== c.pveError) {
        c.pveLogged = c.pveError;
        this.opts.log?.(
          'warn',
          c.pve ? 'Proxmox VE config unreadable: its last good values stay' : 'Proxmox VE config unreadable: nothing is taken from this VM',
          {
            guest: c.id,
            error: c.pveError,
          },
        );
      }
      return;
    }
    const p = c.pve;
    const off = p.balloonMiB === 0 ? 'balloon: 0' : null;
    const pvestatd = p.balloonMiB !== null && p.balloonMiB > 0 && p.balloonMiB < p.memoryMiB && p.shares !== 0;
    const note = off ?? (pvestatd ? 'pvestatd' : null);
    if (note !== null && c.pveLogged !== note) {
      c.pveLogged = note;
      if (off) this.opts.log?.('info', 'Proxmox VE VM has ballooning off (balloon: 0): ballast leaves it alone', { guest: c.id, name: p.name });
      else
        this.opts.log?.('warn', 'pvestatd balloons this VM too (balloon below memory, shares not 0): set shares: 0 to hand it to ballast (docs/proxmox.md)', {
          guest: c.id,
          name: p.name,
          shares: p.shares ?? 1000,
        });
    }
  }

  /** shared mode: one short session per collection (docs/qmp.md, "Shared sockets"). */
  private async sampleShared(c: GuestConn): Promise<GuestSample | null> {
    if (this.opts.pveConfigDir) {
      await this.readPve(c);
      // Ballooning off: never touched, not even asked.
      if (c.pve?.balloonMiB === 0) return null;
      // As pvestatd does: a migrating VM is left to the migration.
      if (c.pve?.lock === 'migrate') return this.staleSample(c, 'Proxmox VE lock: migrate (left alone while it migrates)');
    }
    const inc = await socketIdentity(c.cfg.socket);
    if (inc === null) return null;
    if (inc !== c.incarnation) {
      // A new QEMU on this path: learn its facts again.
      c.incarnation = inc;
      c.info = null;
    }
    const learning = c.info === null;
    let got: SharedBatch;
    try {
      got = await this.session(c, (q) => sharedBatch(q, c.info, this.opts.statsPeriodS ?? 5));
    } catch (err) {
      const code = (err as { code?: string }).code;
      const msg = (err as Error).message;
      // Shown even for a guest never reached yet: a QEMU too slow for the cap would otherwise
      // never appear, and nobody would know why.
      if (err instanceof QmpBusyError || err instanceof QmpHoldExceededError) {
        c.lastError = null;
        return this.staleSample(c, `QMP: ${msg}; retried at the next collection`);
      }
      if (code === 'ECONNREFUSED' || code === 'ENOENT') {
        // Refused: nobody listens, unless the QEMU we knew still lives (then: busy, try again).
        const pid = c.info?.pid ?? null;
        if (pid !== null && pidAlive(pid)) return this.staleSample(c, `QMP: ${msg}; retried at the next collection`);
        if (c.everConnected) {
          c.everConnected = false;
          c.info = null;
          this.emit({ kind: 'destroyed', id: c.id, name: this.guestName(c), detail: `QMP ${c.cfg.socket} refuses connections and its QEMU is gone` });
        }
        return null;
      }
      c.lastError = msg;
      return c.everConnected ? this.staleSample(c, `QMP: ${msg}`) : null;
    }
    c.lastError = null;
    try {
      if (learning) {
        const cpus = got.cpus ?? [];
        // Checked after the session: the kernel's word, and the socket is free again meanwhile.
        const peer = await verifiedQemuPid(this.opts.root ?? '/', c.cfg.socket, cpus);
        c.info = {
          qemuName: got.qemuName,
          pid: peer.pid,
          pidRefused: peer.pid === null ? peer.reason : null,
          balloonPath: got.balloonPath,
          freePageReporting: got.freePageReporting,
          maxKiB: got.maxKiB,
          vcpus: got.cpus === null ? null : cpus.length,
        };
        this.notePid(c, c.info);
      } else c.info!.maxKiB = got.maxKiB;
      if (got.memDevices !== undefined) c.memDevices = { seq: this.collectSeq, reply: got.memDevices };
      if (!c.everConnected) {
        c.everConnected = true;
        this.emit({ kind: 'started', id: c.id, name: this.guestName(c), detail: `QMP ${c.cfg.socket} (shared)` });
      }
      if (got.balloonError) return this.staleSample(c, got.balloonError);
      return await this.finishSample(c, c.info!, got.balloon, got.stats);
    } catch (err) {
      return this.staleSample(c, `QMP: ${(err as Error).message}`);
    }
  }

  /** A short session on the guest's socket, counted. */
  private async session<T>(c: GuestConn, batch: (q: QmpClient) => Promise<T>): Promise<T> {
    this.sessions.sessions++;
    try {
      const r = await qmpSession(c.cfg.socket, this.limits, batch);
      this.sessions.maxHeldMs = Math.max(this.sessions.maxHeldMs, r.heldMs);
      this.sessions.maxWaitedMs = Math.max(this.sessions.maxWaitedMs, r.waitedMs);
      return r.value;
    } catch (err) {
      if (err instanceof QmpBusyError) this.sessions.busy++;
      if (err instanceof QmpHoldExceededError) this.sessions.aborted++;
      throw err;
    }
  }

  /** The guest's memory stall from its own /proc/pressure/memory, through its agent. */
  private async fillPsi(c: GuestConn, stats: GuestSample['stats']): Promise<void> {
    if (!c.psiRetry.due('psi')) return;
    const agent = c.agent!;
    // Shared mode: the agent's socket is shared as well (Proxmox VE's `qm guest` opens it), so
    // it is held no longer than the QMP socket and closed after the read.
    const cap = this.shared ? setTimeout(() => agent.close(), this.limits.holdMs) : undefined;
    try {
      const psi = parsePsi(await readGuestFile((cmd, args) => agent.execute(cmd, args), '/proc/pressure/memory', 4096));
      if (psi.psi_some_avg10 === null) throw new Error('no "some avg10" in /proc/pressure/memory');
      Object.assign(stats, psi);
      c.psiRetry.ok('psi');
    } catch {
      c.psiRetry.failed('psi');
    } finally {
      clearTimeout(cap);
      if (this.shared) agent.close();
    }
  }

  private props(c: GuestConn): GuestSample['props'] {
    const p: GuestSample['props'] = { name: this.guestName(c), socket: c.cfg.socket };
    if (c.cfg.agentSocket) p.agent_socket = c.cfg.agentSocket;
    if (c.info?.qemuName != null) p.qemu_name = c.info.qemuName;
    if (c.collidesWith) p.name_collides_with = c.collidesWith;
    if (c.info?.pid != null) p.pid = c.info.pid;
    if (c.info?.pidRefused) p.pid_refused = c.info.pidRefused;
    if (c.info?.balloonPath) p.balloon_path = c.info.balloonPath;
    if (c.info && c.info.freePageReporting !== null) p.free_page_reporting = c.info.freePageReporting ? 1 : 0;
    if (this.opts.pveConfigDir) {
      p.vmid = c.id;
      if (c.pve) {
        p.pve_memory_mib = c.pve.memoryMiB;
        if (c.pve.balloonMiB !== null) p.pve_balloon_mib = c.pve.balloonMiB;
        if (c.pve.shares !== null) p.pve_shares = c.pve.shares;
        if (c.pve.lock !== null) p.pve_lock = c.pve.lock;
        // Whether pvestatd balloons this VM too (it skips VMs without a minimum and with shares 0).
        p.pvestatd_balloons = c.pve.balloonMiB !== null && c.pve.balloonMiB > 0 && c.pve.balloonMiB < c.pve.memoryMiB && c.pve.shares !== 0 ? 1 : 0;
      }
    }
    return p;
  }

  private staleSample(c: GuestConn, reason: string): GuestSample {
    return {
      id: c.id,
      name: this.guestName(c),
      props: this.props(c),
      stats: { balloon_cur: c.lastActualKiB, balloon_max: c.info?.maxKiB ?? null, balloon_min: this.floorKiB(c) },
      stale: reason,
    };
  }

  /** Only the id ballast gave the guest: never a name or path a QEMU could claim. */
  private connById(id: string): GuestConn {
    for (const c of this.conns.values()) if (c.id === id) return c;
    throw new Error(`QMP driver: no guest ${id}`);
  }

  /** A reclaim inside the guest through its agent socket (the reclaim control). */
  private async reclaimThroughAgent(id: string, kib: number): Promise<ReclaimOutcome> {
    const c = this.connById(id);
    const agent = c.agent;
    if (!agent) throw new GuestReclaimUnsupported(`guest ${this.guestName(c)} has no guest agent socket (${AGENT_SUFFIX} beside its QMP socket)`);
    try {
      return await reclaimInGuest((cmd, args) => agent.execute(cmd, args, RECLAIM_TIMEOUT_MS), kib);
    } finally {
      // Shared mode: the agent's socket is not held between uses (fillPsi).
      if (this.shared) agent.close();
    }
  }

  async setBalloon(id: string, targetKiB: number): Promise<void> {
    if (!Number.isFinite(targetKiB) || targetKiB <= 0) throw new Error(`QMP balloon target for ${id} must be a positive KiB count, not ${targetKiB}`);
    const c = this.connById(id);
    if (this.opts.pveConfigDir) {
      await this.readPve(c);
      if (!c.pve) throw new Error(`QMP driver: VM ${id}: its Proxmox VE config cannot be read (${c.pveError}): its balloon is left alone`);
      if (c.pve.balloonMiB === 0) throw new Error(`QMP driver: VM ${id} has ballooning off in its Proxmox VE config (balloon: 0): ballast never touches it`);
      if (c.pve.lock === 'migrate') throw new Error(`QMP driver: VM ${id} is migrating (Proxmox VE lock: migrate): its balloon is left alone`);
    }
    const value = Math.floor(targetKiB) * 1024;
    if (this.shared) {
      await this.session(c, (q) => q.execute('balloon', { value }));
      return;
    }
    await this.ensure(c);
    await c.client.execute('balloon', { value });
  }

  /** Runs any QMP command on a guest (tests and tools; the virtio-mem capability). In shared
   *  mode each call is a session of its own, except query-memory-devices, answered from this
   *  collection's session when it asked. */
  async execute<T = unknown>(id: string, command: string, args?: Record<string, unknown>): Promise<T> {
    const c = this.connById(id);
    if (this.shared) {
      if (command === 'query-memory-devices' && args === undefined && c.memDevices?.seq === this.collectSeq) return c.memDevices.reply as T;
      return this.session(c, (q) => q.execute<T>(command, args));
    }
    await this.ensure(c);
    return c.client.execute<T>(command, args);
  }
}

/** Proxmox VE's QMP socket of a VM: `<vmid>.qmp`. */
const PVE_QMP = /^\d+\.qmp$/;

/** The socket file's identity: a QEMU that starts again binds a new file on the same path. */
async function socketIdentity(path: string): Promise<string | null> {
  try {
    const st = await stat(path);
    return `${st.dev}:${st.ino}:${st.ctimeMs}`;
  } catch {
    return null;
  }
}

/** What one shared-mode session read. */
interface SharedBatch {
  balloon: unknown;
  /** Why the balloon could not be read (a guest without its driver), else null. */
  balloonError: string | null;
  stats: GuestStatsReply | null;
  maxKiB: number | null;
  /** undefined: not asked or QEMU has no such command. */
  memDevices?: unknown;
  qemuName: string | null;
  cpus: number[] | null;
  balloonPath: string | null;
  freePageReporting: boolean | null;
}

const settledValue = <T>(r: PromiseSettledResult<T>): T | undefined => (r.status === 'fulfilled' ? r.value : undefined);

/** A connection failure (or the hold cap) ends the whole batch; QEMU's error replies are per command. */
function rethrowConnection(results: PromiseSettledResult<unknown>[]): void {
  for (const r of results) if (r.status === 'rejected' && !(r.reason instanceof QmpCommandError)) throw r.reason;
}

/**
 * One collection's commands, sent together (QEMU answers them in order) so the socket is held
 * for about one round trip: query-balloon, the memory size, the memory devices, and guest-stats
 * when the balloon's path is known; a new QEMU's facts too (a second round trip for its
 * balloon's properties). The stats polling interval is set only when nobody set one: Proxmox
 * VE sets its own at VM start, and its GUI shows what that period gives.
 */
async function sharedBatch(q: QmpClient, info: GuestInfo | null, statsPeriodS: number): Promise<SharedBatch> {
  const none = Promise.resolve(undefined);
  const first = await Promise.allSettled([
    q.execute('query-balloon'),
    q.execute<{ 'base-memory': number; 'plugged-memory'?: number }>('query-memory-size-summary'),
    q.execute('query-memory-devices'),
    info?.balloonPath ? q.execute<GuestStatsReply>('qom-get', { path: info.balloonPath, property: 'guest-stats' }) : none,
    info ? none : q.execute<{ name?: unknown }>('query-name'),
    info ? none : q.execute<{ 'thread-id': number }[]>('query-cpus-fast'),
    info ? none : q.execute<QomEntry[]>('qom-list', { path: '/machine/peripheral' }),
    info ? none : q.execute<QomEntry[]>('qom-list', { path: '/machine/peripheral-anon' }),
  ]);
  rethrowConnection(first);
  const [balloonR, memR, devR, statsR, nameR, cpusR, perR, anonR] = first;
  const mem = settledValue(memR);
  if (!mem || typeof mem['base-memory'] !== 'number') throw new Error('query-memory-size-summary gave no base-memory');
  const out: SharedBatch = {
    balloon: settledValue(balloonR),
    balloonError: null,
    stats: (settledValue(statsR) as GuestStatsReply | undefined) ?? null,
    maxKiB: balloonMaxKiB(mem),
    qemuName: info?.qemuName ?? null,
    cpus: null,
    balloonPath: info?.balloonPath ?? null,
    freePageReporting: info?.freePageReporting ?? null,
  };
  if (devR.status === 'fulfilled') out.memDevices = devR.value;
  if (balloonR.status === 'rejected') {
    const e = balloonR.reason as QmpCommandError;
    out.balloonError = e.errorClass === 'DeviceNotActive' ? 'the balloon device is not active yet (guest driver not loaded)' : `QMP: ${e.message}`;
  }
  if (info) return out;
  const name = settledValue(nameR) as { name?: unknown } | undefined;
  out.qemuName = typeof name?.name === 'string' ? name.name.slice(0, 256) : null;
  const cpus = settledValue(cpusR);
  out.cpus = Array.isArray(cpus) ? cpus.map((x) => Number((x as { 'thread-id'?: unknown })?.['thread-id'])) : null;
  for (const [parent, r] of [
    ['/machine/peripheral', perR],
    ['/machine/peripheral-anon', anonR],
  ] as const) {
    const items = settledValue(r);
    const b = Array.isArray(items) ? (items as QomEntry[]).find((i) => typeof i?.type === 'string' && /^child<virtio-balloon/.test(i.type)) : undefined;
    if (b && typeof b.name === 'string') {
      out.balloonPath = `${parent}/${b.name}`;
      break;
    }
  }
  if (!out.balloonPath) return out;
  const path = out.balloonPath;
  const second = await Promise.allSettled([
    q.execute<GuestStatsReply>('qom-get', { path, property: 'guest-stats' }),
    q.execute('qom-get', { path, property: 'guest-stats-polling-interval' }),
    q.execute('qom-get', { path, property: 'free-page-reporting' }),
  ]);
  rethrowConnection(second);
  out.stats = (settledValue(second[0]) as GuestStatsReply | undefined) ?? null;
  const period = settledValue(second[1]);
  // QEMU 5.1+ has the property; an older one does not, and then it is unknown.
  out.freePageReporting = second[2].status === 'fulfilled' ? second[2].value === true : null;
  if (period === 0) await q.execute('qom-set', { path, property: 'guest-stats-polling-interval', value: statsPeriodS });
  return out;
}

/** A socket's path without its QMP-ish extension: `/run/x/web1.qmp` -> `/run/x/web1`. */
function socketStem(path: string): string {
  return path.replace(/\.(sock|qmp|socket)$/, '');
}
