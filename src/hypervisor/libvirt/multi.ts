// Many libvirt daemons managed as one host: on a KubeVirt node every VM runs in its own pod
// with its own virtqemud, whose socket the host sees under the kubelet's pod directories. The
// sockets are found by a pattern (socket-glob.ts), scanned again at each collection; each has
// its own LibvirtHypervisor, so each keeps its own connection, backoff and stale samples, and
// this driver only fans out and prefixes guest ids with the socket's key (the pod's UID), as
// KubeVirt's domain UUIDs are not guaranteed unique across pods.
import { KsmSysfs } from '../../host/ksm-sysfs.js';
import { CgroupLimits } from '../../host/cgroup-limits.js';
import type { CpuTune, GuestSample, Hypervisor, HypervisorCapabilities, HypervisorConnection, LifecycleEvent, MemoryDevice } from '../../types.js';
import type { FailureKind } from '../../errors.js';
import { LibvirtHypervisor, type LibvirtHypervisorOptions, type LogFn } from './index.js';
import { compileSocketGlob, matchSockets, type SocketGlob } from './socket-glob.js';
import { socketClientFactory, type SocketClientState } from './socket-client.js';

export interface MultiLibvirtOptions extends Omit<LibvirtHypervisorOptions, 'socketPath' | 'clientFactory' | 'qemuPidDir'> {
  /** Absolute path pattern of the daemons' sockets (`*` and `?` within a segment). */
  socketGlob: string;
  /** The URI asked of each daemon first (default qemu:///system); the other of
   *  qemu:///system and qemu:///session next (a root virt-launcher serves the first, a
   *  non-root one only the second). */
  uri?: string;
  /** The URIs to ask, in order, instead. */
  uris?: string[];
  /** Least time between two scans of the pattern; 0 (default): at every collection. */
  rescanMs?: number;
  /** How long a collection waits for one daemon (and for a new socket's connection) before
   *  going on without it; its guests then come back stale with their last sample. Default 3 s. */
  memberWaitMs?: number;
  /** How a socket's driver is made (tests). */
  driverFactory?: (opts: LibvirtHypervisorOptions) => LibvirtHypervisor;
}

/** What the driver knows of one socket (API, tests). */
export interface SocketStatus {
  path: string;
  key: string;
  connected: boolean;
  /** The URI the daemon accepted, once it has. */
  uri: string | null;
  lastError: string | null;
  guests: number;
}

interface Member {
  path: string;
  key: string;
  driver: LibvirtHypervisor;
  client: SocketClientState;
  unsubscribe: () => void;
  /** The driver's collection still under way (a hung daemon's lasts until its call times out). */
  inFlight: Promise<GuestSample[]> | null;
  /** The last samples it gave, as seen outside. */
  last: GuestSample[];
}

/** A guest whose daemon's socket is not there (any more): the guest is gone with its pod. */
export class GuestSocketGoneError extends Error {
  override name = 'GuestSocketGoneError';
  readonly kind: FailureKind = 'gone';
}

export const DEFAULT_URIS = ['qemu:///system', 'qemu:///session'];

/** The URIs to open a daemon's socket with, in order: the given list, or the configured URI
 *  first and libvirt's others after it (a pod's daemon may be a session one). */
export function uriOrder(uri: string | undefined, uris?: readonly string[]): string[] {
  if (uris?.length) return [...uris];
  const first = uri ?? DEFAULT_URIS[0]!;
  return [first, ...DEFAULT_URIS.filter((u) => u !== first)];
}

/** The guest id seen outside: the socket's key, a colon, the domain's UUID. */
export function guestId(key: string, inner: string): string {
  return key === '' ? inner : `${key}:${inner}`;
}

export class MultiLibvirtHypervisor implements Hypervisor {
  readonly name = 'libvirt';
  readonly capabilities: HypervisorCapabilities;
  private readonly glob: SocketGlob;
  private readonly members = new Map<string, Member>();
  private readonly listeners = new Set<(e: LifecycleEvent) => void>();
  private readonly log: LogFn;
  private lastScan = Number.NEGATIVE_INFINITY;
  private scanning: Promise<void> | null = null;
  private scanError: string | null = null;
  private closed = false;
  /** Reconnects of sockets that are gone, so the total never goes down. */
  private pastReconnects = 0;

  constructor(private readonly opts: MultiLibvirtOptions) {
    this.glob = compileSocketGlob(opts.socketGlob);
    this.log = opts.log ?? (() => undefined);
    const memoryDevices = {
      list: (id: string): Promise<MemoryDevice[]> => this.route(id, (d, inner) => d.capabilities.memoryDevices!.list(inner)),
      resize: (id: string, dev: string, kib: number): Promise<void> => this.route(id, (d, inner) => d.capabilities.memoryDevices!.resize(inner, dev, kib)),
    };
    const cpuTune = {
      read: (id: string): Promise<CpuTune> => this.route(id, (d, inner) => d.capabilities.cpuTune!.read(inner)),
      write: (id: string, tune: Partial<CpuTune>): Promise<void> => this.route(id, (d, inner) => d.capabilities.cpuTune!.write(inner, tune)),
    };
    // One host under all the daemons: the kernel's KSM and the QEMUs' memory cgroups.
    this.capabilities = { memoryDevices, cpuTune, ksm: new KsmSysfs(), cgroupLimits: new CgroupLimits() };
  }

  /** Scans the pattern and connects to every socket found. Rejects only when the pattern's
   *  fixed directory cannot be read; a daemon that does not answer is retried by its driver. */
  async connect(): Promise<void> {
    this.closed = false;
    await this.rescan(true);
    if (this.scanError) throw new Error(this.scanError);
  }

  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.members.values()];
    this.members.clear();
    await Promise.all(all.map((m) => this.drop(m)));
  }

  connection(): HypervisorConnection {
    let connected = this.scanError === null;
    let reconnects = this.pastReconnects;
    for (const m of this.members.values()) {
      const c = m.driver.connection();
      connected &&= c.connected;
      reconnects += c.reconnects;
    }
    return { connected, reconnects };
  }

  sockets(): SocketStatus[] {
    return [...this.members.values()].map((m) => {
      const s = m.driver.status();
      return { path: m.path, key: m.key, connected: s.connected, uri: m.client.uri, lastError: s.lastError, guests: s.guestsKnown };
    });
  }

  async collect(): Promise<GuestSample[]> {
    await this.rescan(false);
    const per = await Promise.all([...this.members.values()].map((m) => this.collectMember(m)));
    const out = per.flat();
    out.sort((a, b) => a.name.localeCompare(b.name) || (a.id < b.id ? -1 : 1));
    return out;
  }

  setBalloon(id: string, targetKiB: number): Promise<void> {
    return this.route(id, (d, inner) => d.setBalloon(inner, targetKiB));
  }

  onEvent(listener: (e: LifecycleEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** One daemon's samples, or its last ones marked stale when it takes longer than the others
   *  may wait: a hung virtqemud holds a call until its timeout (30 s), and the other pods'
   *  guests must not wait for it. Its collection is not asked again while one is under way. */
  private async collectMember(m: Member): Promise<GuestSample[]> {
    m.inFlight ??= m.driver
      .collect()
      .then((samples) => {
        m.last = samples.map((s) => this.outward(m, s));
        return m.last;
      })
      .finally(() => {
        m.inFlight = null;
      });
    const ms = this.opts.memberWaitMs ?? 3000;
    const done = await within(m.inFlight, ms);
    if (done) return done;
    return m.last.map((s) => ({ ...s, stale: `libvirt daemon at ${m.path} did not answer within ${ms} ms; last sample kept` }));
  }

  private outward(m: Member, s: GuestSample): GuestSample {
    return { ...s, id: guestId(m.key, s.id), props: { ...s.props, socket: m.path, socket_key: m.key } };
  }

  /** Runs `fn` on the driver of the socket the id names, with the id that driver knows. */
  private async route<T>(id: string, fn: (d: LibvirtHypervisor, inner: string) => Promise<T>): Promise<T> {
    const cut = id.lastIndexOf(':');
    const key = cut === -1 ? '' : id.slice(0, cut);
    const m = [...this.members.values()].find((x) => x.key === key);
    if (!m) {
      // The socket went with its pod: the guest is gone, not unreachable.
      throw new GuestSocketGoneError(`no libvirt socket for guest ${id} (its daemon's socket is gone)`);
    }
    return fn(m.driver, cut === -1 ? id : id.slice(cut + 1));
  }

  private rescan(force: boolean): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (!force && Date.now() - this.lastScan < (this.opts.rescanMs ?? 0)) return Promise.resolve();
    // Concurrent callers (connect racing the first collection) share one scan.
    this.scanning ??= this.scan().finally(() => {
      this.scanning = null;
    });
    return this.scanning;
  }

  private async scan(): Promise<void> {
    this.lastScan = Date.now();
    let found;
    try {
      found = await matchSockets(this.glob);
    } catch (err) {
      // Known sockets stay as they are: a directory that cannot be read says nothing about them.
      const msg = (err as Error).message;
      if (msg !== this.scanError) this.log('error', 'libvirt socket scan failed', { error: msg });
      this.scanError = msg;
      return;
    }
    if (this.scanError) this.log('info', 'libvirt socket scan works again', { pattern: this.glob.pattern });
    this.scanError = null;
    if (this.closed) return;
    const now = new Set(found.map((f) => f.path));
    for (const m of [...this.members.values()]) {
      if (now.has(m.path)) continue;
      this.members.delete(m.path);
      this.log('info', 'libvirt socket gone; its guests are dropped', { socket: m.path, key: m.key });
      await this.drop(m);
    }
    const fresh: Member[] = [];
    for (const f of found) {
      if (this.members.has(f.path)) continue;
      const m = this.member(f.path, f.parts.join('/'));
      this.members.set(f.path, m);
      fresh.push(m);
      this.log('info', 'libvirt socket found', { socket: f.path, key: m.key });
    }
    // A daemon that does not answer yet is retried by its driver's backoff; its guests come
    // with a later collection.
    await Promise.all(
      fresh.map((m) =>
        within(
          m.driver.connect().catch(() => undefined),
          this.opts.memberWaitMs ?? 3000,
        ),
      ),
    );
  }

  private member(path: string, key: string): Member {
    const client: SocketClientState = { uri: null };
    const { socketGlob: _g, uri, uris, rescanMs: _r, driverFactory, log: _l, ...common } = this.opts;
    const order = uriOrder(uri, uris);
    const driverOpts: LibvirtHypervisorOptions = {
      ...common,
      socketPath: path,
      // A pod's daemon writes PIDs of its own PID namespace: not the host's, so none is given.
      qemuPidDir: '',
      clientFactory: socketClientFactory(path, order, client),
      log: (level, msg, fields) => this.log(level, msg, { socket: path, ...fields }),
    };
    const driver = driverFactory ? driverFactory(driverOpts) : new LibvirtHypervisor(driverOpts);
    const m: Member = { path, key, driver, client, unsubscribe: () => undefined, inFlight: null, last: [] };
    m.unsubscribe = driver.onEvent((e) => {
      const out = { ...e, id: guestId(key, e.id) };
      for (const l of this.listeners) {
        try {
          l(out);
        } catch (err) {
          this.log('error', 'lifecycle listener threw', { error: (err as Error).message });
        }
      }
    });
    return m;
  }

  private async drop(m: Member): Promise<void> {
    m.unsubscribe();
    this.pastReconnects += m.driver.connection().reconnects;
    try {
      await m.driver.close();
    } catch (err) {
      this.log('warn', 'closing a libvirt connection failed', { socket: m.path, error: (err as Error).message });
    }
  }
}

/** The promise's value, or null when it takes longer than `ms` (it goes on regardless). */
async function within<T>(p: Promise<T>, ms: number): Promise<T | null> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<null>((resolve) => {
    timer = setTimeout(() => resolve(null), ms);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}
