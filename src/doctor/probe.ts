// Asking the hypervisor about its guests, for the doctor: is it reachable, and per guest the
// facts guests.ts checks. Read-only on purpose: unlike the drivers, nothing here sets a stats
// period, so the doctor reports the guest as it is, not as ballast would leave it.
import type { Config } from '../config/schema.js';
import { LibvirtClient, type ClientOptions } from '../hypervisor/libvirt/client.js';
import { LibvirtConnectionError } from '../hypervisor/libvirt/errors.js';
import { ListFlags, StatsTypes, paramsToRecord, type DomainRef } from '../hypervisor/libvirt/protocol.js';
import { guestId, uriOrder } from '../hypervisor/libvirt/multi.js';
import { compileSocketGlob, matchSockets, type SocketMatch } from '../hypervisor/libvirt/socket-glob.js';
import { QmpClient } from '../hypervisor/qmp/client.js';
import { guestStatsToMom, staleReason, type GuestStatsReply } from '../hypervisor/qmp/stats.js';
import { guestPid, LIBVIRT_RUN_DIR } from '../host/guest-pid.js';
import { readThreadTgid } from '../host/process.js';
import { checkQmpDir } from './checks.js';
import { parseMemballoon, type GuestFacts } from './guests.js';
import { result, type CheckResult } from './types.js';

export interface Probe {
  /** The 'hypervisor' check. */
  check: CheckResult;
  /** The running guests; null when they could not be listed. */
  guests: GuestFacts[] | null;
  /** Per-guest problems found while probing (a QMP socket nobody answers on). */
  extra: CheckResult[];
}

export interface ProbeOptions {
  root: string;
  /** How long a connection or a call may take: a doctor must not hang on a wedged daemon. */
  timeoutMs: number;
  /** Tests point the libvirt probe at a fake daemon. */
  clientFactory?: (opts: ClientOptions) => Promise<LibvirtClient>;
}

function domainXml(c: LibvirtClient, dom: DomainRef): Promise<string> {
  // flags 0: the live definition, no secrets (VIR_DOMAIN_XML_SECURE needs a read-write connection).
  return c.getXmlDesc(dom, 0);
}

function libvirtVersion(v: bigint): string {
  const n = Number(v);
  return `${Math.floor(n / 1e6)}.${Math.floor(n / 1e3) % 1000}.${n % 1000}`;
}

function connectFix(err: unknown, socket: string): string {
  const code = err instanceof LibvirtConnectionError ? err.syscallCode : undefined;
  if (code === 'EACCES') return 'run ballast as root (or in the libvirt group), or set hypervisor.readonly = true with the read-only socket';
  if (code === 'ECONNREFUSED')
    return `a socket is at ${socket} but nothing listens: restart libvirtd (systemctl restart libvirtd, or virtqemud on modular daemons)`;
  return 'start libvirtd (systemctl start libvirtd, or virtqemud.socket on modular daemons), or point hypervisor.socket at its socket';
}

export async function probeLibvirt(cfg: Config['hypervisor'], opts: ProbeOptions): Promise<Probe> {
  const copts: ClientOptions = {
    socketPath: cfg.socket || undefined,
    uri: cfg.uri,
    readOnly: cfg.readonly,
    connectTimeoutMs: opts.timeoutMs,
    callTimeoutMs: opts.timeoutMs,
    keepaliveIntervalMs: 0,
  };
  const socket = cfg.socket || new LibvirtClient(copts).socketPath;
  let c: LibvirtClient;
  try {
    c = await (opts.clientFactory ? opts.clientFactory(copts) : LibvirtClient.connect(copts));
  } catch (err) {
    return { check: result('hypervisor', 'fail', `libvirt ${cfg.uri}: ${(err as Error).message}`, connectFix(err, socket)), guests: null, extra: [] };
  }
  try {
    const version = await c.getLibVersion().then(libvirtVersion, () => null);
    const reached = `libvirtd at ${c.socketPath} answers for ${cfg.uri}${version ? ` (libvirt ${version})` : ''}`;
    let recs;
    try {
      recs = await c.getAllDomainStats(StatsTypes.STATE | StatsTypes.BALLOON, ListFlags.ACTIVE);
    } catch (err) {
      return {
        check: result(
          'hypervisor',
          'fail',
          `${reached}, but listing the guests failed: ${(err as Error).message}`,
          "check libvirtd's log; a read-only connection may list guests, so this is libvirtd's own trouble",
        ),
        guests: null,
        extra: [],
      };
    }
    // Mirrors the driver: libvirtd's PID files are only this host's for qemu:///system.
    const runDir = cfg.uri === 'qemu:///system' ? LIBVIRT_RUN_DIR : null;
    const guests: GuestFacts[] = [];
    for (const rec of recs) {
      const p = paramsToRecord(rec.params);
      const xml = await domainXml(c, rec.dom).catch(() => null);
      const mb = xml === null ? null : parseMemballoon(xml);
      guests.push({
        name: rec.dom.name,
        balloon: mb?.model ?? null,
        statsPeriod: mb?.statsPeriod ?? null,
        statsArriving: p['balloon.unused'] !== undefined || p['balloon.available'] !== undefined,
        freePageReporting: mb?.freePageReporting ?? null,
        pid: runDir === null ? null : await guestPid({ name: rec.dom.name, props: {} }, { root: opts.root, libvirtRunDir: runDir }),
      });
    }
    guests.sort((a, b) => a.name.localeCompare(b.name));
    return { check: result('hypervisor', 'ok', reached), guests, extra: [] };
  } finally {
    await c.close();
  }
}

/**
 * Every libvirt daemon hypervisor.socket_glob names now (KubeVirt: one per pod), probed as
 * `ballast run` would reach it: the configured URI first, then libvirt's others (a pod's daemon
 * may be a session one). Guests are named `<what the wildcards matched>:<domain>`, as the
 * driver's ids are. A daemon that does not answer is its own failed check; the hypervisor check
 * fails only when none answers or the pattern is wrong.
 */
export async function probeLibvirtGlob(cfg: Config['hypervisor'], opts: ProbeOptions): Promise<Probe> {
  let found: SocketMatch[];
  try {
    found = await matchSockets(compileSocketGlob(cfg.socket_glob));
  } catch (err) {
    return {
      check: result(
        'hypervisor',
        'fail',
        `hypervisor.socket_glob: ${(err as Error).message}`,
        'fix the pattern, or mount the host directory it names into this container',
      ),
      guests: null,
      extra: [],
    };
  }
  if (found.length === 0) {
    return {
      check: result(
        'hypervisor',
        'warn',
        `no libvirt socket matches ${cfg.socket_glob} now`,
        'start a guest (on KubeVirt each VM pod brings its own daemon), or check the pattern',
      ),
      guests: [],
      extra: [],
    };
  }
  const uris = uriOrder(cfg.uri);
  const guests: GuestFacts[] = [];
  const extra: CheckResult[] = [];
  let answered = 0;
  for (const m of found) {
    const key = m.parts.join('/');
    let p: Probe | null = null;
    for (const uri of uris) {
      p = await probeLibvirt({ ...cfg, socket: m.path, socket_glob: '', uri }, opts);
      if (p.guests !== null) break;
    }
    if (p === null || p.guests === null) {
      extra.push({ ...(p?.check ?? result('hypervisor', 'fail', 'not probed')), id: `hypervisor:${key || m.path}` });
      continue;
    }
    answered++;
    for (const g of p.guests) guests.push({ ...g, name: guestId(key, g.name) });
  }
  // With others answering, ballast runs and manages their guests: one daemon down (a pod
  // being torn down, a hung one) makes it work less well, it does not block it.
  if (answered > 0) for (const e of extra) e.status = 'warn';
  const said = `${answered} of ${found.length} libvirt daemon(s) matching ${cfg.socket_glob} answer`;
  const check =
    answered === 0
      ? result('hypervisor', 'fail', said, "see each daemon's check below")
      : answered < found.length
        ? result('hypervisor', 'warn', said, 'see the daemons that did not answer below; ballast keeps retrying them')
        : result('hypervisor', 'ok', said);
  return { check, guests, extra };
}

interface QomEntry {
  name: string;
  type: string;
}

/** One QMP socket's guest. QEMU's monitor serves one client at a time: while `ballast run`
 *  holds it the doctor gets no greeting, and says so. */
async function qmpGuest(socket: string, opts: ProbeOptions): Promise<GuestFacts> {
  const q = new QmpClient(socket, { timeoutMs: opts.timeoutMs, connectTimeoutMs: opts.timeoutMs });
  await q.connect();
  try {
    const name = (await q.execute<{ name?: string }>('query-name')).name ?? socket.replace(/^.*\//, '').replace(/\.(sock|qmp|socket)$/, '');
    const cpus = await q.execute<{ 'thread-id': number }[]>('query-cpus-fast').catch(() => []);
    const pid = cpus.length > 0 ? await readThreadTgid(opts.root, cpus[0]!['thread-id']) : null;
    let path: string | null = null;
    for (const parent of ['/machine/peripheral', '/machine/peripheral-anon']) {
      const items = await q.execute<QomEntry[]>('qom-list', { path: parent }).catch(() => [] as QomEntry[]);
      const b = items.find((i) => /^child<virtio-balloon/.test(i.type));
      if (b) {
        path = `${parent}/${b.name}`;
        break;
      }
    }
    if (path === null) return { name, balloon: '', statsPeriod: null, statsArriving: false, freePageReporting: null, pid };
    const get = <T>(property: string) =>
      q.execute<T>('qom-get', { path, property }).then(
        (v) => v,
        () => null,
      );
    const period = await get<number>('guest-stats-polling-interval');
    const reply = await get<GuestStatsReply>('guest-stats');
    const m = reply ? guestStatsToMom(reply) : null;
    const fpr = await get<boolean>('free-page-reporting');
    return {
      name,
      balloon: 'virtio',
      statsPeriod: typeof period === 'number' ? period : null,
      statsArriving: m !== null && staleReason(m.lastUpdate, m.stats) === null,
      freePageReporting: typeof fpr === 'boolean' ? fpr : null,
      pid,
    };
  } finally {
    q.close();
  }
}

export async function probeQmp(cfg: Config['hypervisor'], opts: ProbeOptions): Promise<Probe> {
  const { check, sockets } = await checkQmpDir(cfg.qmp_dir);
  if (check.status === 'fail') return { check, guests: null, extra: [] };
  const guests: GuestFacts[] = [];
  const extra: CheckResult[] = [];
  for (const s of sockets) {
    try {
      guests.push(await qmpGuest(s, opts));
    } catch (err) {
      const file = s.replace(/^.*\//, '');
      extra.push(
        result(
          `guest:${file}:qmp`,
          'warn',
          `${s}: ${(err as Error).message}`,
          'a socket left by a QEMU that is gone can be removed; a QEMU busy with another QMP client (a running ballast) answers once that client leaves',
        ),
      );
    }
  }
  guests.sort((a, b) => a.name.localeCompare(b.name));
  return { check, guests, extra };
}
