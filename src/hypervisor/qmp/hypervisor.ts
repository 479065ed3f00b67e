// The QMP driver: guests are QEMU processes reached through their QMP sockets (a configured
// list, or every socket in a directory), no libvirt needed.
import { readdir, stat } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import type { GuestSample, Hypervisor, HypervisorCapabilities, HypervisorConnection, LifecycleEvent } from '../../types.js';
import { readProcessRss } from '../../host/process.js';
import { withMomDefaults } from '../mom-defaults.js';
import { QmpClient, QmpCommandError, type QmpEvent } from './client.js';
import { guestStatsToMom, staleReason, type GuestStatsReply } from './stats.js';
import { GuestAgentClient } from './agent.js';
import { AgentRetry, readGuestFile } from '../guest-agent.js';
import { parsePsi } from '../../psi.js';
import { verifiedQemuPid } from './peer.js';

export type QmpLogFn = (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
import { QmpMemoryDevices } from './memory-devices.js';
import { cgroupCpuTune, cgroupV2Mounted } from '../../host/cgroup-cpu.js';

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

export class QmpHypervisor implements Hypervisor {
  readonly name = 'qmp';
  readonly capabilities: HypervisorCapabilities = {
    memoryDevices: new QmpMemoryDevices((id, command, args) => this.execute(id, command, args)),
    // Without libvirt a guest's CPU share is its QEMU's cgroup v2 cpu.max (not offered on v1).
    cpuTune: cgroupV2Mounted() ? cgroupCpuTune((id) => [...this.conns.values()].find((c) => c.id === id)?.info ?? undefined) : undefined,
  };
  private readonly conns = new Map<string, GuestConn>();
  private reconnects = 0;

  /** Connected when every guest socket is open, except guests that shut down (their socket goes with them). */
  connection(): HypervisorConnection {
    let connected = true;
    for (const c of this.conns.values()) if (!c.client.connected && !c.shutdownSeen) connected = false;
    return { connected, reconnects: this.reconnects };
  }
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
  }

  async connect(): Promise<void> {
    this.closed = false;
    await this.refreshSockets();
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

  private guestName(c: GuestConn): string {
    return c.id;
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
      maxKiB: Math.floor((mem['base-memory'] + (mem['plugged-memory'] ?? 0)) / 1024),
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
    const results = await Promise.all([...this.conns.values()].map((c) => this.sampleOne(c)));
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
      c.lastActualKiB = Math.floor(balloon.actual / 1024);
      let stats: GuestSample['stats'] = {};
      let stale: string | null = null;
      if (info.balloonPath) {
        const reply = await c.client.execute<GuestStatsReply>('qom-get', { path: info.balloonPath, property: 'guest-stats' });
        const m = guestStatsToMom(reply);
        stats = m.stats;
        stale = staleReason(m.lastUpdate, m.stats);
      } else stale = 'the guest has no virtio-balloon device';
      stats.balloon_cur = c.lastActualKiB;
      stats.balloon_max = info.maxKiB;
      stats.balloon_min = c.cfg.balloonMinKiB ?? this.opts.balloonMinKiB ?? 0;
      stats.rss = info.pid === null ? null : await readProcessRss(this.opts.root ?? '/', info.pid);
      stats.vcpu_count = info.vcpus;
      withMomDefaults(stats);
      if (this.opts.guestPsi && c.agent) await this.fillPsi(c, stats);
      const sample: GuestSample = { id: c.id, name: c.id, props: this.props(c), stats };
      if (stale) sample.stale = stale;
      return sample;
    } catch (err) {
      if (err instanceof QmpCommandError && err.errorClass === 'DeviceNotActive') {
        return this.staleSample(c, 'the balloon device is not active yet (guest driver not loaded)');
      }
      return this.staleSample(c, `QMP: ${(err as Error).message}`);
    }
  }

  /** The guest's memory stall from its own /proc/pressure/memory, through its agent. */
  private async fillPsi(c: GuestConn, stats: GuestSample['stats']): Promise<void> {
    if (!c.psiRetry.due('psi')) return;
    const agent = c.agent!;
    try {
      const psi = parsePsi(await readGuestFile((cmd, args) => agent.execute(cmd, args), '/proc/pressure/memory', 4096));
      if (psi.psi_some_avg10 === null) throw new Error('no "some avg10" in /proc/pressure/memory');
      Object.assign(stats, psi);
      c.psiRetry.ok('psi');
    } catch {
      c.psiRetry.failed('psi');
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
    return p;
  }

  private staleSample(c: GuestConn, reason: string): GuestSample {
    const name = this.guestName(c);
    return {
      id: name,
      name,
      props: this.props(c),
      stats: { balloon_cur: c.lastActualKiB, balloon_max: c.info?.maxKiB ?? null, balloon_min: c.cfg.balloonMinKiB ?? this.opts.balloonMinKiB ?? 0 },
      stale: reason,
    };
  }

  /** Only the id ballast gave the guest: never a name or path a QEMU could claim. */
  private connById(id: string): GuestConn {
    for (const c of this.conns.values()) if (c.id === id) return c;
    throw new Error(`QMP driver: no guest ${id}`);
  }

  async setBalloon(id: string, targetKiB: number): Promise<void> {
    if (!Number.isFinite(targetKiB) || targetKiB <= 0) throw new Error(`QMP balloon target for ${id} must be a positive KiB count, not ${targetKiB}`);
    const c = this.connById(id);
    await this.ensure(c);
    await c.client.execute('balloon', { value: Math.floor(targetKiB) * 1024 });
  }

  /** Runs any QMP command on a guest (tests and tools). */
  async execute<T = unknown>(id: string, command: string, args?: Record<string, unknown>): Promise<T> {
    const c = this.connById(id);
    await this.ensure(c);
    return c.client.execute<T>(command, args);
  }
}

/** A socket's path without its QMP-ish extension: `/run/x/web1.qmp` -> `/run/x/web1`. */
function socketStem(path: string): string {
  return path.replace(/\.(sock|qmp|socket)$/, '');
}
