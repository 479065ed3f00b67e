// Prometheus metrics of a running daemon, read from the DaemonPort when scraped: host and
// guest memory (bytes: ballast's samples are KiB), balloons, KSM, the loop's counters and a
// histogram of cycle durations. Names follow Prometheus' conventions and sit beside
// node_exporter's (node_memory_*) and KubeVirt's (kubevirt_vmi_memory_*): base units,
// `_total` counters, guests labelled by name and uuid. A guest that is gone loses its series
// at the next scrape, because every guest gauge is rebuilt from the port's current guests.
import { finite } from '../../numbers.js';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Stats } from '../../types.js';
import type { DaemonPort, GuestState } from '../port.js';
import { HttpError, type Handler } from '../http/server.js';
import { ByteWriter, encodeLabelSets, labelSet, writeFamily } from './exposition.js';

const KiB = 1024;
const PAGE = 4096;

type Scale = number;
/** [metric suffix, stat, scale, help] of the host gauges. */
const HOST_GAUGES: [string, string, Scale, string][] = [
  ['memory_total_bytes', 'mem_available', KiB, "Host (or memory domain) memory, MOM's mem_available."],
  ['memory_free_bytes', 'mem_free', KiB, "Free memory including reclaimable page cache (MOM's mem_free)."],
  ['memory_unused_bytes', 'mem_unused', KiB, 'Memory not used at all (MemFree).'],
  ['memory_anon_bytes', 'anon_pages', KiB, 'Anonymous memory in use (AnonPages).'],
  ['swap_total_bytes', 'swap_total', KiB, 'Swap space.'],
  ['swap_used_bytes', 'swap_usage', KiB, 'Swap space in use.'],
  ['swap_in_pages', 'swap_in', 1, 'Pages swapped in during the last collection interval.'],
  ['swap_out_pages', 'swap_out', 1, 'Pages swapped out during the last collection interval.'],
  ['ksm_run', 'ksm_run', 1, 'KSM run mode (0 stopped, 1 running, 2 unmerge).'],
  ['ksm_pages_to_scan', 'ksm_pages_to_scan', 1, 'Pages ksmd scans per wake-up.'],
  ['ksm_sleep_seconds', 'ksm_sleep_millisecs', 1 / 1000, 'Time ksmd sleeps between scans.'],
  ['ksm_pages_shared', 'ksm_pages_shared', 1, 'Shared KSM pages in use.'],
  ['ksm_pages_sharing', 'ksm_pages_sharing', 1, 'Sites sharing KSM pages (how many pages are saved).'],
  ['ksm_saved_bytes', 'ksm_pages_sharing', PAGE, 'Memory KSM saves (pages_sharing x 4 KiB).'],
  ['ksmd_cpu_ratio', 'ksmd_cpu_usage', 1 / 100, 'Share of one CPU ksmd used over the last interval.'],
  ['memory_pressure_some_avg10_ratio', 'psi_some_avg10', 1 / 100, 'PSI memory "some" stall, 10 s average.'],
  ['memory_pressure_full_avg10_ratio', 'psi_full_avg10', 1 / 100, 'PSI memory "full" stall, 10 s average.'],
  ['io_pressure_some_avg10_ratio', 'psi_io_some_avg10', 1 / 100, 'PSI I/O "some" stall, 10 s average.'],
  ['swap_in_io_wait_seconds', 'swap_in_io_wait_ms', 1 / 1000, "I/O stall per page swapped in, over the daemon's life: how slow the swap is."],
  ['swap_rotational', 'swap_rotational', 1, '1 when the swap used first is on a rotational device.'],
];

const GUEST_GAUGES: [string, string, Scale, string][] = [
  ['balloon_current_bytes', 'balloon_cur', KiB, "The guest's memory as the balloon leaves it (balloon_cur)."],
  ['balloon_max_bytes', 'balloon_max', KiB, "The guest's memory with the balloon empty (balloon_max)."],
  ['balloon_min_bytes', 'balloon_min', KiB, 'The configured balloon floor (balloon_min).'],
  ['memory_unused_bytes', 'mem_unused', KiB, 'Memory the guest does not use at all.'],
  ['memory_available_bytes', 'mem_available', KiB, 'Memory the guest sees (MemTotal through the balloon).'],
  ['memory_usable_bytes', 'mem_usable', KiB, 'Memory the guest could give without swapping (free + reclaimable cache).'],
  ['memory_free_bytes', 'mem_free', KiB, 'Free memory in the guest including its page cache.'],
  ['memory_resident_bytes', 'rss', KiB, "Resident memory of the guest's QEMU process on the host."],
  ['vcpus', 'vcpu_count', 1, 'Virtual CPUs.'],
  ['memory_pressure_some_avg10_ratio', 'psi_some_avg10', 1 / 100, 'PSI memory "some" stall inside the guest, 10 s average (hypervisor.guest_psi).'],
  ['memory_pressure_full_avg10_ratio', 'psi_full_avg10', 1 / 100, 'PSI memory "full" stall inside the guest, 10 s average (hypervisor.guest_psi).'],
];

/** Counters the guest keeps since it booted: exposed as counters (a reboot is a counter reset). */
const GUEST_COUNTERS: [string, string, Scale, string][] = [
  ['swap_in_bytes_total', 'swap_in', KiB, 'Guest swap-in since it booted.'],
  ['swap_out_bytes_total', 'swap_out', KiB, 'Guest swap-out since it booted.'],
  ['major_faults_total', 'major_fault', 1, 'Guest major page faults since it booted.'],
];

/** [metric, counter field, help] of the loop's counters. */
const COUNTERS: [string, keyof ReturnType<DaemonPort['counters']>, string][] = [
  ['ballast_collections_total', 'collections', 'Collections of host and guest statistics.'],
  ['ballast_cycles_total', 'cycles', 'Policy cycles (evaluate, guard, actuate).'],
  ['ballast_policy_errors_total', 'policyErrors', "Policy runtime errors (a guest's part, or a whole evaluation)."],
  ['ballast_policy_aborted_total', 'abortedEvaluations', 'Evaluations aborted (budget, error outside a guest): nothing applied.'],
  ['ballast_controller_errors_total', 'controllerErrors', 'Actions that failed in a controller or driver.'],
  ['ballast_driver_errors_total', 'driverErrors', 'Failed hypervisor collections.'],
  ['ballast_source_errors_total', 'sourceErrors', 'Failed host source reads.'],
  ['ballast_actions_deferred_total', 'deferred', 'Actions not tried because their control is backing off after a failure (30 s doubling to 10 min).'],
  ['ballast_vetoes_total', 'vetoes', 'Controls the safeguards refused.'],
  ['ballast_rollbacks_total', 'rollbacks', 'Inflations undone because the guest started swapping or faulting.'],
  ['ballast_guests_appeared_total', 'guestsAppeared', 'Guests that appeared.'],
  ['ballast_guests_vanished_total', 'guestsVanished', 'Guests that went away.'],
  [
    'ballast_calm_skips_total',
    'calmSkips',
    'Stats intervals a calm loop let pass with a look at free memory and pressure instead of a collection (engine.calm_stride).',
  ],
];

/** A per-guest family: its value for one guest (null: no sample), read at scrape time. */
interface GuestFamily {
  type: 'gauge' | 'counter';
  help: string;
  value: (g: GuestState, now: number) => number | null;
}

/** A host family: its value from the host's latest sample (null: no sample). */
interface HostFamily {
  help: string;
  value: (h: Stats) => number | null;
}

export type MetricsRegistry = Registry & {
  /** Sets the registry's own metrics from the port (the per-guest families are not in it). */
  collectAll: () => void;
  /** The per-guest families, written directly at scrape time; each is also registered (without
   *  values) so that the registry lists every family the daemon exports, in order. */
  guestFamilies: Map<string, GuestFamily>;
  /** The host gauges, written directly likewise (one unlabelled sample, or none). */
  hostFamilies: Map<string, HostFamily>;
};

const GUEST_LABELS = ['name', 'uuid'] as const;
/** The one series of an unlabelled family. */
const NO_LABELS = [Buffer.alloc(0)];

/** A registry whose every value is read from `port` at scrape time (plus the cycle histogram, fed as cycles end). */
export function createMetrics(port: DaemonPort): MetricsRegistry {
  const reg = new Registry();
  // Written directly too: prom-client gives an unlabelled gauge a 0 when it has no value, and a
  // host statistic the host does not have (no KSM, no PSI) must have no sample, not a 0.
  const hostFamilies = new Map<string, HostFamily>();
  for (const [name, stat, scale, help] of HOST_GAUGES) {
    new Gauge({ name: `ballast_host_${name}`, help, registers: [reg] });
    hostFamilies.set(`ballast_host_${name}`, {
      help,
      value: (h) => {
        const v = finite(h[stat]);
        return v === null ? null : v * scale;
      },
    });
  }
  const guestFamilies = new Map<string, GuestFamily>();
  const perGuest = (name: string, type: 'gauge' | 'counter', help: string, value: GuestFamily['value']) => {
    const Kind = type === 'gauge' ? Gauge : Counter;
    new Kind({ name, help, labelNames: GUEST_LABELS, registers: [reg] });
    guestFamilies.set(name, { type, help, value });
  };
  for (const [name, stat, scale, help] of GUEST_GAUGES) {
    perGuest(`ballast_guest_${name}`, 'gauge', help, (g) => {
      const v = finite(g.stats[stat]);
      return v === null ? null : v * scale;
    });
  }
  // A counter never goes negative: a negative reading has no sample.
  const nonNegative = (v: number | null) => (v !== null && v >= 0 ? v : null);
  for (const [name, stat, scale, help] of GUEST_COUNTERS) {
    perGuest(`ballast_guest_${name}`, 'counter', help, (g) => {
      const v = nonNegative(finite(g.stats[stat]));
      return v === null ? null : v * scale;
    });
  }
  perGuest('ballast_guest_balloon_target_bytes', 'gauge', 'The balloon target ballast last set for the guest.', (g) =>
    g.lastTarget !== undefined ? g.lastTarget * KiB : null,
  );
  perGuest('ballast_guest_stale', 'gauge', "1 when the guest's latest statistics could not be read (no balloon driver, no stats, driver error).", (g) =>
    g.stale ? 1 : 0,
  );
  perGuest('ballast_guest_rollback_hold', 'gauge', '1 while the guest is held off inflation after a rollback.', (g, now) =>
    g.holdUntil !== undefined && g.holdUntil > now ? 1 : 0,
  );
  const returns: [string, string, keyof NonNullable<GuestState['balloonReturn']>][] = [
    ['ballast_guest_balloon_inflated_bytes_total', 'Memory balloon inflations took from the guest since it appeared.', 'inflatedKiB'],
    [
      'ballast_guest_balloon_expected_return_bytes_total',
      'The part of those inflations the host had backed with resident memory: what should have come back.',
      'expectedKiB',
    ],
    ['ballast_guest_balloon_returned_bytes_total', 'QEMU resident memory that went with those inflations: what the host really got back.', 'returnedKiB'],
  ];
  for (const [name, help, field] of returns) {
    perGuest(name, 'counter', help, (g) => {
      const v = g.balloonReturn ? nonNegative(finite(g.balloonReturn[field])) : null;
      return v === null ? null : v * KiB;
    });
  }
  const guests = new Gauge({ name: 'ballast_guests', help: 'Guests the daemon manages.', registers: [reg] });
  const up = new Gauge({ name: 'ballast_up', help: '1 when every source answers, 0 when degraded.', registers: [reg] });
  const paused = new Gauge({ name: 'ballast_paused', help: '1 while control is paused (observe only).', registers: [reg] });
  const policyLoaded = new Gauge({ name: 'ballast_policy_loaded', help: '1 when a policy is in force.', registers: [reg] });
  const info = new Gauge({
    name: 'ballast_build_info',
    help: 'Version and hypervisor of the daemon (always 1).',
    labelNames: ['version', 'hypervisor'],
    registers: [reg],
  });
  const alerts = new Gauge({ name: 'ballast_alerts', help: 'Alerts active now.', labelNames: ['kind', 'severity', 'entity'], registers: [reg] });
  const actions = new Counter({
    name: 'ballast_actions_total',
    help: 'Controls decided, by control and result (applied, failed, veto, ...), over the actions the daemon keeps.',
    labelNames: ['control', 'result'],
    registers: [reg],
  });
  // Only drivers with a connection to lose have these (not the simulator).
  const link =
    port.connection?.() !== undefined
      ? {
          connected: new Gauge({ name: 'ballast_hypervisor_connected', help: "1 when the hypervisor driver's sockets are open.", registers: [reg] }),
          reconnects: new Counter({
            name: 'ballast_hypervisor_reconnects_total',
            help: 'Hypervisor connections re-established after a loss.',
            registers: [reg],
          }),
        }
      : undefined;
  const counters = COUNTERS.map(([name, field, help]) => ({ c: new Counter({ name, help, registers: [reg] }), field }));
  const cycleSeconds = new Histogram({
    name: 'ballast_cycle_duration_seconds',
    help: 'Wall-clock time of one policy cycle (evaluate, guard, actuate, record).',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [reg],
  });
  const evalSeconds = new Histogram({
    name: 'ballast_policy_evaluation_duration_seconds',
    help: 'Wall-clock time of one policy evaluation.',
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [reg],
  });
  // Actions are counted as each policy cycle or guard pass ends; the port keeps only recent
  // records. New ones are those recorded after the last counted, by time and then cycle: a
  // guard pass records its actions under the cycle before it, so counting by cycle number
  // alone skipped them. A guard pass ends as a cycle does but has no times of its own: the
  // last policy cycle's are observed once, not again after every guard pass.
  type Mark = { time: number; cycle: number };
  const later = (a: Mark, b: Mark) => a.time > b.time || (a.time === b.time && a.cycle > b.cycle);
  let upTo: Mark = { time: Number.NEGATIVE_INFINITY, cycle: 0 };
  let timed: unknown;
  port.onUpdate((kind) => {
    if (kind !== 'cycle') return;
    const t = port.lastCycleTimes?.();
    if (t && t !== timed) {
      timed = t;
      cycleSeconds.observe(t.totalMs / 1000);
      evalSeconds.observe(t.evalMs / 1000);
    }
    let newest = upTo;
    for (const a of port.actions()) {
      if (!later(a, upTo)) continue;
      actions.inc({ control: a.control, result: a.result });
      if (later(a, newest)) newest = { time: a.time, cycle: a.cycle };
    }
    upTo = newest;
  });

  // Everything else is read when scraped.
  const collectAll = () => {
    const list = port.guests();
    guests.set(list.length);
    const health = port.health();
    up.set(health.status === 'ok' ? 1 : 0);
    paused.set(health.paused ? 1 : 0);
    policyLoaded.set(health.policyLoaded ? 1 : 0);
    info.reset();
    info.set({ version: health.version, hypervisor: health.hypervisor }, 1);
    alerts.reset();
    for (const a of port.alerts()) alerts.set({ kind: a.kind, severity: a.severity, entity: a.entity }, 1);
    const state = link && port.connection?.();
    if (link && state) {
      link.connected.set(state.connected ? 1 : 0);
      link.reconnects.reset();
      link.reconnects.inc(state.reconnects);
    }
    const c = port.counters();
    for (const { c: counter, field } of counters) {
      counter.reset();
      counter.inc(c[field] ?? 0);
    }
  };
  return Object.assign(reg, { collectAll, guestFamilies, hostFamilies });
}

const registries = new WeakMap<DaemonPort, MetricsRegistry>();
/** Bytes of each family at the last scrape (families are the same for every port). */
const lastSize = new Map<string, number>();

/** The registry of `port`, made once (several listeners serve the same series). */
export function metricsOf(port: DaemonPort): MetricsRegistry {
  let r = registries.get(port);
  if (!r) {
    r = createMetrics(port);
    registries.set(port, r);
  }
  return r;
}

/** Prometheus' text format as of now, one family at a time (a few dozen KiB each at 1,000
 *  guests): the registry's families through prom-client, the per-guest ones written directly,
 *  in the registry's order, joined as prom-client joins them (a blank line between families).
 *  Everything is read from the port before the first family is given out. */
export function metricsChunks(port: DaemonPort): { chunks: AsyncGenerator<Buffer>; contentType: string } {
  const reg = metricsOf(port);
  reg.collectAll();
  const guests = port.guests();
  const host = [port.host().stats];
  const now = port.health().time;
  const labels = encodeLabelSets(guests.map((g) => labelSet(GUEST_LABELS, [g.name, String(g.props.uuid ?? g.id)])));
  // prom-client's families are rendered now too, so that a later cycle cannot change them.
  const own = new Map(
    reg.getMetricsAsArray().map((m) => {
      if (reg.guestFamilies.has(m.name) || reg.hostFamilies.has(m.name)) return [m.name, null];
      const text = reg.getSingleMetricAsString(m.name);
      // Awaited below, unless the client went away first: never an unhandled rejection.
      text.catch(() => {});
      return [m.name, text];
    }),
  );
  async function* chunks(): AsyncGenerator<Buffer> {
    let first = true;
    for (const [name, text] of own) {
      // Sized from the last scrape of this family: no regrowth copies.
      const w = new ByteWriter(lastSize.get(name) ?? 1 << 12);
      if (!first) w.ascii('\n\n');
      first = false;
      const f = reg.guestFamilies.get(name);
      const hf = reg.hostFamilies.get(name);
      if (f) writeFamily(w, name, f.type, f.help, guests, labels, (g) => f.value(g, now));
      else if (hf) writeFamily(w, name, 'gauge', hf.help, host, NO_LABELS, hf.value);
      else w.text(await text!);
      const out = w.done();
      lastSize.set(name, out.length + 64);
      yield out;
    }
    yield Buffer.from('\n');
  }
  return { chunks: chunks(), contentType: reg.contentType };
}

/** The whole exposition in one buffer (tests, tools). */
export async function renderMetrics(port: DaemonPort): Promise<{ body: Buffer; contentType: string }> {
  const { chunks, contentType } = metricsChunks(port);
  const parts: Buffer[] = [];
  for await (const c of chunks) parts.push(c);
  return { body: Buffer.concat(parts), contentType };
}

/** GET /metrics. */
export function metricsHandler(): Handler {
  return async (ctx) => {
    if (ctx.url.pathname !== '/metrics') return false;
    if (ctx.req.method !== 'GET' && ctx.req.method !== 'HEAD') {
      ctx.res.setHeader('allow', 'GET, HEAD');
      throw new HttpError(405, 'method not allowed', `${ctx.req.method} is not one of GET, HEAD`);
    }
    const { chunks, contentType } = metricsChunks(ctx.port);
    // Sent a family at a time (chunked), waiting while the client is behind: the daemon never
    // holds the whole megabyte of a 1,000-guest scrape, whoever scrapes and however slowly.
    ctx.res.writeHead(200, { 'content-type': contentType });
    if (ctx.req.method === 'HEAD') {
      ctx.res.end();
      return true;
    }
    const res = ctx.res;
    try {
      for await (const chunk of chunks) {
        if (res.destroyed) break;
        if (!res.write(chunk)) {
          await new Promise<void>((resolve) => {
            const done = () => {
              res.off('drain', done);
              res.off('close', done);
              resolve();
            };
            res.on('drain', done);
            res.on('close', done);
          });
        }
      }
      res.end();
    } catch (err) {
      // The status line is out: a cut connection is the only error left to give.
      res.destroy(err instanceof Error ? err : new Error(String(err)));
    }
    return true;
  };
}
