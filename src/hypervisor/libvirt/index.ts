// The libvirt hypervisor driver: one connect-get-all-domain-stats call per collection, balloon
// targets through set-memory (live), lifecycle events, and a connection that heals itself:
// when libvirtd goes away the driver keeps answering with the last samples marked stale and
// reconnects with exponential backoff, re-registering its events.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { GuestSample, Hypervisor, HypervisorCapabilities, HypervisorConnection, LifecycleEvent, Props } from '../../types.js';
import { parseMemballoon } from './domain-xml.js';
import { LibvirtClient, type ClientOptions } from './client.js';
import { DomainNotFoundError, LibvirtConnectionError, LibvirtError, LibvirtProtocolError, LibvirtTimeoutError } from './errors.js';
import { lifecycleFromMsg, sampleFromStats, statsFromMeminfo, NO_GUEST_STATS } from './mapping.js';
import { agentReadFile, libvirtAgent } from './agent.js';
import { RECLAIM_TIMEOUT_MS, reclaimInGuest } from '../guest-reclaim.js';
import { LibvirtMemoryDevices } from './memory-devices.js';
import { libvirtCpuTune } from './cputune.js';
import { KsmSysfs } from '../../host/ksm-sysfs.js';
import { CgroupLimits } from '../../host/cgroup-limits.js';
import { AgentRetry } from '../guest-agent.js';
import { parsePsi } from '../../psi.js';
import { Affect, ErrorCode, EventId, ListFlags, StatsTypes, uuidToString, type DomainRef } from './protocol.js';

export { LibvirtClient } from './client.js';
export * from './errors.js';

export type LogFn = (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;

export interface LibvirtHypervisorOptions extends ClientOptions {
  /** Per-guest balloon floor in KiB, keyed by domain name or UUID. */
  balloonMin?: Record<string, number>;
  /** Floor for guests not in balloonMin. Default 0. */
  defaultBalloonMin?: number;
  /** Balloon statistics period set once on every newly seen guest, seconds. 0 = leave it. Default 2. */
  statsPeriodSec?: number;
  /** Reconnect backoff: first delay, cap, multiplier. Default 250 ms, 10 s, x2. */
  reconnectInitialMs?: number;
  reconnectMaxMs?: number;
  reconnectFactor?: number;
  /** Read /proc/meminfo through the qemu guest agent for guests without balloon stats. Default true. */
  agentFallback?: boolean;
  /** Read each guest's /proc/pressure/memory through its guest agent (psi_* guest fields). */
  guestPsi?: boolean;
  log?: LogFn;
  /** Where libvirtd keeps <name>.pid of its QEMU guests (props.pid, for KSM and cgroups).
   *  Default /run/libvirt/qemu for qemu:///system, none for other URIs; '' = none. */
  qemuPidDir?: string;
  /** How a client is made (tests inject one bound to a fake daemon). */
  clientFactory?: (opts: ClientOptions) => Promise<LibvirtClient>;
}

export interface LibvirtDriverStatus {
  connected: boolean;
  /** Why the last connection ended or the last attempt failed. */
  lastError: string | null;
  reconnectAttempt: number;
  reconnects: number;
  guestsKnown: number;
}

// The vcpu group costs libvirt a query per vCPU (it doubled the bulk call's time on the lab):
// it is asked once per newly seen guest and the count is kept.
const STATS_GROUPS = StatsTypes.STATE | StatsTypes.BALLOON;
const NO_AGENT_RETRY_MS = 60_000;

export class LibvirtHypervisor implements Hypervisor {
  readonly name = 'libvirt';
  readonly capabilities: HypervisorCapabilities = {
    memoryDevices: new LibvirtMemoryDevices((id, what, fn) => this.withDomain(id, what, fn)),
    cpuTune: libvirtCpuTune(this),
    // Its guests run on this host: the kernel's KSM and the guests' own memory cgroups.
    ksm: new KsmSysfs(),
    cgroupLimits: new CgroupLimits(),
    guestReclaim: {
      reclaim: (id, kib) => this.withDomain(id, 'reclaim not asked', (c, dom) => reclaimInGuest(libvirtAgent(c, dom, RECLAIM_TIMEOUT_MS / 1000), kib)),
    },
  };
  private client: LibvirtClient | null = null;
  private closedByUser = false;
  private connecting: Promise<void> | null = null;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private attempt = 0;
  private reconnects = 0;
  private lastError: string | null = null;
  private readonly last = new Map<string, GuestSample>();
  private readonly doms = new Map<string, DomainRef>();
  /** `${uuid}#${domain id}`: a restarted guest (new id) gets its period set again. */
  private readonly periodSet = new Set<string>();
  private readonly noAgentUntil = new Map<string, number>();
  private readonly psiRetry = new AgentRetry();
  /** `${uuid}#${domain id}` -> QEMU pid */
  private readonly pids = new Map<string, number>();
  /** `${uuid}#${domain id}` -> balloon facts from the domain XML */
  private readonly balloons = new Map<string, Props>();
  /** `${uuid}#${domain id}` -> vCPU count */
  private readonly vcpus = new Map<string, number>();
  private readonly listeners = new Set<(e: LifecycleEvent) => void>();
  private readonly log: LogFn;

  constructor(private readonly opts: LibvirtHypervisorOptions = {}) {
    this.log = opts.log ?? (() => undefined);
  }

  connection(): HypervisorConnection {
    return { connected: this.client?.isOpen ?? false, reconnects: this.reconnects };
  }

  status(): LibvirtDriverStatus {
    return {
      connected: this.client?.isOpen ?? false,
      lastError: this.lastError,
      reconnectAttempt: this.attempt,
      reconnects: this.reconnects,
      guestsKnown: this.last.size,
    };
  }

  /**
   * Connects now. On failure it rejects with a clear LibvirtConnectionError, and keeps trying in
   * the background (backoff) so that a later collect() finds libvirtd once it is up.
   */
  async connect(): Promise<void> {
    this.closedByUser = false;
    if (this.client?.isOpen) return;
    try {
      await this.establish();
    } catch (err) {
      this.lastError = (err as Error).message;
      this.scheduleReconnect();
      throw err;
    }
  }

  private establish(): Promise<void> {
    if (this.connecting) return this.connecting;
    this.connecting = (async () => {
      const make = this.opts.clientFactory ?? ((o: ClientOptions) => LibvirtClient.connect(o));
      const c = await make(this.opts);
      try {
        c.onLifecycle((msg) => this.deliver(lifecycleFromMsg(msg)));
        await c.registerEvent(EventId.LIFECYCLE, null);
      } catch (err) {
        c.destroy(err as Error);
        throw err;
      }
      if (this.closedByUser) {
        await c.close();
        return;
      }
      this.client = c;
      c.onClose((err) => this.onLost(c, err));
      this.attempt = 0;
    })().finally(() => {
      this.connecting = null;
    });
    return this.connecting;
  }

  private onLost(c: LibvirtClient, err: Error | null): void {
    if (c !== this.client) return;
    this.client = null;
    if (this.closedByUser) return;
    this.lastError = err?.message ?? 'connection closed';
    this.log('warn', 'libvirt connection lost; reconnecting', { error: this.lastError });
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.reconnectTimer || this.closedByUser) return;
    const initial = this.opts.reconnectInitialMs ?? 250;
    const max = this.opts.reconnectMaxMs ?? 10_000;
    const factor = this.opts.reconnectFactor ?? 2;
    const delay = Math.min(max, initial * factor ** this.attempt);
    this.attempt++;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (this.closedByUser || this.client) return;
      this.establish().then(
        () => {
          if (!this.client) return;
          this.reconnects++;
          this.log('info', 'libvirt connection re-established', { reconnects: this.reconnects });
        },
        (err: Error) => {
          this.lastError = err.message;
          this.log('warn', 'libvirt reconnect failed', {
            error: err.message,
            attempt: this.attempt,
            nextInMs: Math.min(max, initial * factor ** this.attempt),
          });
          this.scheduleReconnect();
        },
      );
    }, delay);
    this.reconnectTimer.unref();
  }

  async close(): Promise<void> {
    this.closedByUser = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    const c = this.client;
    this.client = null;
    await c?.close();
  }

  private staleAll(reason: string): GuestSample[] {
    return [...this.last.values()].map((s) => ({ ...s, stale: reason }));
  }

  private floorFor(name: string, uuid: string): number {
    const m = this.opts.balloonMin ?? {};
    return m[uuid] ?? m[name] ?? this.opts.defaultBalloonMin ?? 0;
  }

  async collect(): Promise<GuestSample[]> {
    const c = this.client;
    if (!c?.isOpen) {
      return this.staleAll(`libvirtd not connected (${this.lastError ?? 'connecting'}); last sample kept`);
    }
    let recs;
    try {
      recs = await c.getAllDomainStats(STATS_GROUPS, ListFlags.ACTIVE);
    } catch (err) {
      if (err instanceof LibvirtTimeoutError || err instanceof LibvirtProtocolError) {
        // A daemon that does not answer (or talks nonsense) is as good as gone: start over.
        c.destroy(err);
      }
      const reason = err instanceof LibvirtError ? `libvirtd error: ${err.message}` : `libvirt: ${(err as Error).message}`;
      return this.staleAll(reason);
    }
    await this.learnVcpus(
      c,
      recs.map((r) => r.dom),
    );
    const out: GuestSample[] = [];
    const seen = new Set<string>();
    await Promise.all(
      recs.map(async (rec) => {
        const uuid = uuidToString(rec.dom.uuid);
        this.doms.set(uuid, rec.dom);
        if (!(await this.ensurePeriod(c, rec.dom, uuid))) return; // vanished meanwhile
        const s = sampleFromStats(rec, this.floorFor(rec.dom.name, uuid));
        const vcpus = this.vcpus.get(`${uuid}#${rec.dom.id}`);
        if (vcpus !== undefined) s.stats.vcpu_count = vcpus;
        const pid = await this.qemuPid(rec.dom, uuid);
        if (pid !== null) s.props.pid = pid;
        Object.assign(s.props, await this.balloonProps(c, rec.dom, uuid));
        if (s.stale === NO_GUEST_STATS) await this.fillFromAgent(c, rec.dom, s);
        if (this.opts.guestPsi) await this.fillPsi(c, rec.dom, s);
        seen.add(uuid);
        out.push(s);
      }),
    );
    for (const id of [...this.last.keys()]) if (!seen.has(id)) this.forget(id);
    for (const s of out) this.last.set(s.id, s);
    out.sort((a, b) => a.name.localeCompare(b.name));
    return out;
  }

  /** The guest's QEMU pid from libvirtd's PID file (local qemu:///system only), cached per run. */
  private async qemuPid(dom: DomainRef, uuid: string): Promise<number | null> {
    const key = `${uuid}#${dom.id}`;
    const known = this.pids.get(key);
    if (known !== undefined) return known;
    const dir = this.opts.qemuPidDir ?? ((this.opts.uri ?? 'qemu:///system') === 'qemu:///system' ? '/run/libvirt/qemu' : '');
    if (!dir) return null;
    try {
      const pid = Number((await readFile(join(dir, `${dom.name}.pid`), 'utf8')).trim());
      if (!Number.isInteger(pid) || pid <= 0) return null;
      this.pids.set(key, pid);
      return pid;
    } catch {
      return null;
    }
  }

  /** The balloon device as the domain XML has it (model, free page reporting), read once per
   *  domain run; {} while it cannot be read (asked again next collection). */
  private async balloonProps(c: LibvirtClient, dom: DomainRef, uuid: string): Promise<Props> {
    const key = `${uuid}#${dom.id}`;
    const known = this.balloons.get(key);
    if (known) return known;
    try {
      const mb = parseMemballoon(await c.getXmlDesc(dom, 0));
      const props: Props = { balloon_model: mb.model || 'none', free_page_reporting: mb.freePageReporting ? 1 : 0 };
      this.balloons.set(key, props);
      return props;
    } catch (err) {
      // libvirtd said no (an old daemon, an ACL): not asked again for this domain run. A lost
      // connection is asked again next collection.
      if (err instanceof LibvirtError) this.balloons.set(key, {});
      return {};
    }
  }

  /** vCPU counts of guests not seen before, in one bulk call for just those guests. */
  private async learnVcpus(c: LibvirtClient, doms: DomainRef[]): Promise<void> {
    const fresh = doms.filter((d) => !this.vcpus.has(`${uuidToString(d.uuid)}#${d.id}`));
    if (fresh.length === 0) return;
    try {
      // With an explicit domain list libvirt takes no state-filter flags.
      for (const rec of await c.getAllDomainStats(StatsTypes.VCPU, 0, fresh)) {
        const n = rec.params.find((p) => p.field === 'vcpu.current')?.value;
        if (typeof n === 'number') this.vcpus.set(`${uuidToString(rec.dom.uuid)}#${rec.dom.id}`, n);
      }
    } catch (err) {
      // A guest that vanished meanwhile fails the whole call; the count is asked again next time.
      this.log('warn', 'cannot read vcpu counts', { error: (err as Error).message });
    }
  }

  private forget(uuid: string): void {
    this.last.delete(uuid);
    this.doms.delete(uuid);
    this.noAgentUntil.delete(uuid);
    this.psiRetry.forget(uuid);
    for (const k of this.periodSet) if (k.startsWith(uuid + '#')) this.periodSet.delete(k);
    for (const k of this.vcpus.keys()) if (k.startsWith(uuid + '#')) this.vcpus.delete(k);
    for (const k of this.pids.keys()) if (k.startsWith(uuid + '#')) this.pids.delete(k);
    for (const k of this.balloons.keys()) if (k.startsWith(uuid + '#')) this.balloons.delete(k);
  }

  /** Sets the stats period once per newly seen guest. False when the guest vanished. */
  private async ensurePeriod(c: LibvirtClient, dom: DomainRef, uuid: string): Promise<boolean> {
    // A read-only connection may not change domains: the period stays as the domain has it.
    const period = this.opts.readOnly ? 0 : (this.opts.statsPeriodSec ?? 2);
    const key = `${uuid}#${dom.id}`;
    if (period <= 0 || this.periodSet.has(key)) return true;
    try {
      await c.setMemoryStatsPeriod(dom, period, Affect.LIVE);
      this.periodSet.add(key);
      this.log('info', 'balloon stats period set', { guest: dom.name, seconds: period });
    } catch (err) {
      if (err instanceof DomainNotFoundError) return false;
      // E.g. no balloon device: remembered, so it is not retried every cycle.
      this.periodSet.add(key);
      this.log('warn', 'cannot set balloon stats period', { guest: dom.name, error: (err as Error).message });
    }
    return true;
  }

  private async fillFromAgent(c: LibvirtClient, dom: DomainRef, s: GuestSample): Promise<void> {
    if (this.opts.agentFallback === false) return;
    const until = this.noAgentUntil.get(s.id);
    if (until !== undefined && Date.now() < until) return;
    try {
      const st = statsFromMeminfo(await agentReadFile(c, dom, '/proc/meminfo', 2));
      s.stats.mem_unused = st.mem_unused ?? null;
      s.stats.mem_available = st.mem_available ?? null;
      s.stats.mem_free = st.mem_free ?? null;
      s.props.stats_source = 'guest-agent';
      delete s.stale;
      this.noAgentUntil.delete(s.id);
    } catch (err) {
      this.noAgentUntil.set(s.id, Date.now() + NO_AGENT_RETRY_MS);
      s.stale = `${NO_GUEST_STATS}; guest agent unavailable: ${(err as Error).message}`;
    }
  }

  /** The guest's memory stall from its own /proc/pressure/memory, through the agent; after a
   *  failure the guest is left alone for a while (AgentRetry). */
  private async fillPsi(c: LibvirtClient, dom: DomainRef, s: GuestSample): Promise<void> {
    if (!this.psiRetry.due(s.id)) return;
    try {
      const psi = parsePsi(await agentReadFile(c, dom, '/proc/pressure/memory', 2, 4096));
      if (psi.psi_some_avg10 === null) throw new Error('no "some avg10" in /proc/pressure/memory');
      Object.assign(s.stats, psi);
      this.psiRetry.ok(s.id);
    } catch (err) {
      const first = !this.psiRetry.failing(s.id);
      const wait = this.psiRetry.failed(s.id);
      if (first) this.log('info', 'no guest PSI', { guest: dom.name, error: (err as Error).message, retry_s: wait / 1000 });
    }
  }

  async setBalloon(id: string, targetKiB: number): Promise<void> {
    if (!Number.isFinite(targetKiB) || targetKiB <= 0) throw new RangeError(`balloon target must be a positive KiB value, got ${targetKiB}`);
    await this.withDomain(id, 'balloon not set', (c, dom) => c.setMemoryFlags(dom, Math.round(targetKiB), Affect.LIVE));
  }

  /**
   * Run `fn` with the connection and the guest's domain: how a control module speaks the
   * libvirt procedures it owns (src/controls/cputune). Rejects with LibvirtConnectionError
   * while libvirtd is away and DomainNotFoundError when the guest is gone.
   */
  async withDomain<T>(id: string, what: string, fn: (client: LibvirtClient, dom: DomainRef) => Promise<T>): Promise<T> {
    const c = this.client;
    if (!c?.isOpen) throw new LibvirtConnectionError(`not connected to libvirtd (${this.lastError ?? 'connecting'}); ${id}: ${what}`);
    let dom = this.doms.get(id);
    try {
      dom ??= await c.lookupByUuid(id);
      return await fn(c, dom);
    } catch (err) {
      if (err instanceof DomainNotFoundError) this.forget(id);
      throw err;
    }
  }

  onEvent(listener: (e: LifecycleEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private deliver(e: LifecycleEvent): void {
    if (e.kind === 'destroyed' || e.kind === 'stopped' || e.kind === 'crashed') this.forget(e.id);
    for (const l of this.listeners) {
      try {
        l(e);
      } catch (err) {
        this.log('error', 'lifecycle listener threw', { error: (err as Error).message });
      }
    }
  }

  /** The connected client (for tools and tests), or null while disconnected. */
  get rawClient(): LibvirtClient | null {
    return this.client;
  }
}

export { ErrorCode };
