// Pure translations from libvirt's records to ballast's shapes: bulk stats -> GuestSample (MOM's
// field names, KiB), lifecycle messages -> LifecycleEvent, /proc/meminfo text -> fields.
import { withMomDefaults } from '../mom-defaults.js';
import type { GuestSample, LifecycleEvent, LifecycleKind, Stats } from '../../types.js';
import {
  DomainState,
  LifecycleEventType,
  StoppedDetail,
  paramsToRecord,
  uuidToString,
  type DomainStatsRecord,
  type LifecycleMsg,
  type TypedValue,
} from './protocol.js';

const STATE_NAMES: Record<number, string> = Object.fromEntries(Object.entries(DomainState).map(([k, v]) => [v, k.toLowerCase()]));

/** Reason given when a guest reports no balloon statistics of its own. */
export const NO_GUEST_STATS = 'no guest memory statistics from the balloon (virtio_balloon driver not loaded in the guest yet, or stats period not set)';

const LIBVIRT_LACKS = { oom_kills: null, alloc_stalls: null, async_scan: null, direct_scan: null, async_reclaim: null, direct_reclaim: null };

function num(v: TypedValue | undefined): number | null {
  if (v === undefined) return null;
  if (typeof v === 'number') return Number.isFinite(v) ? v : null;
  if (typeof v === 'bigint') return Number(v);
  if (typeof v === 'boolean') return v ? 1 : 0;
  return null;
}

/**
 * One bulk-stats record (groups state, balloon, vcpu) as a guest sample. balloon_min is the
 * per-guest configured floor. A guest whose balloon reports only current/maximum (no
 * guest-side numbers) comes back marked stale with the reason.
 */
export function sampleFromStats(rec: DomainStatsRecord, balloonMinKiB: number): GuestSample {
  const p = paramsToRecord(rec.params);
  const unused = num(p['balloon.unused']);
  const available = num(p['balloon.available']);
  const caches = num(p['balloon.disk_caches']);
  const stats: Stats = {
    balloon_cur: num(p['balloon.current']),
    balloon_max: num(p['balloon.maximum']),
    balloon_min: balloonMinKiB,
    mem_unused: unused,
    mem_available: available,
    mem_free: unused === null ? null : unused + (caches ?? 0),
    swap_in: num(p['balloon.swap_in']),
    swap_out: num(p['balloon.swap_out']),
    major_fault: num(p['balloon.major_fault']),
    minor_fault: num(p['balloon.minor_fault']),
    rss: num(p['balloon.rss']),
    htlb_pgalloc: num(p['balloon.hugetlb_pgalloc']),
    htlb_pgfail: num(p['balloon.hugetlb_pgfail']),
    // QEMU 9.1+ has these from Linux 6.12+ guests, but libvirt's memory stat tags stop at
    // HUGETLB_PGFAIL: through libvirt they are never offered (the QMP driver has them).
    ...LIBVIRT_LACKS,
  };
  withMomDefaults(stats);
  const vcpus = num(p['vcpu.current']);
  if (vcpus !== null) stats.vcpu_count = vcpus;
  const usable = num(p['balloon.usable']);
  if (usable !== null) stats.mem_usable = usable;
  const lastUpdate = num(p['balloon.last-update']);
  const state = num(p['state.state']);
  const uuid = uuidToString(rec.dom.uuid);
  const props: GuestSample['props'] = { name: rec.dom.name, uuid, domain_id: rec.dom.id };
  if (state !== null) props.state = STATE_NAMES[state] ?? String(state);
  if (lastUpdate !== null) props.stats_last_update = lastUpdate;
  const sample: GuestSample = { id: uuid, name: rec.dom.name, props, stats };
  if (unused === null && available === null) sample.stale = NO_GUEST_STATS;
  return sample;
}

/** A libvirt lifecycle event in ballast's terms. */
export function lifecycleFromMsg(msg: LifecycleMsg): LifecycleEvent {
  const E = LifecycleEventType;
  let kind: LifecycleKind;
  let detail: string;
  switch (msg.event) {
    case E.STARTED:
      kind = 'started';
      detail = ['booted', 'migrated', 'restored', 'from_snapshot', 'wakeup'][msg.detail] ?? `started/${msg.detail}`;
      break;
    case E.STOPPED:
      kind = msg.detail === StoppedDetail.DESTROYED ? 'destroyed' : msg.detail === StoppedDetail.CRASHED ? 'crashed' : 'stopped';
      detail = ['shutdown', 'destroyed', 'crashed', 'migrated', 'saved', 'failed', 'from_snapshot'][msg.detail] ?? `stopped/${msg.detail}`;
      break;
    case E.CRASHED:
      kind = 'crashed';
      detail = ['panicked', 'crashloaded'][msg.detail] ?? `crashed/${msg.detail}`;
      break;
    case E.DEFINED:
      kind = 'defined';
      detail = ['added', 'updated', 'renamed', 'from_snapshot'][msg.detail] ?? `defined/${msg.detail}`;
      break;
    case E.UNDEFINED:
      kind = 'undefined';
      detail = ['removed', 'renamed'][msg.detail] ?? `undefined/${msg.detail}`;
      break;
    default: {
      kind = 'other';
      const name =
        Object.entries(E)
          .find(([, v]) => v === msg.event)?.[0]
          ?.toLowerCase() ?? `event ${msg.event}`;
      detail = `${name}/${msg.detail}`;
    }
  }
  return { kind, id: uuidToString(msg.dom.uuid), name: msg.dom.name, detail };
}

/**
 * Guest memory from /proc/meminfo text (read through the guest agent when the balloon gives no
 * statistics): MemFree -> mem_unused, MemAvailable -> mem_available, MemFree + Buffers + Cached
 * -> mem_free (the balloon's "unused + disk caches"). Values in KiB as the kernel prints them.
 */
export function statsFromMeminfo(text: string): Stats {
  const kv = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^(\w+(?:\(\w+\))?):\s+(\d+)(?:\s+kB)?\s*$/.exec(line.trim());
    if (m) kv.set(m[1]!, Number(m[2]));
  }
  if (!kv.has('MemTotal') || !kv.has('MemFree')) throw new Error('not /proc/meminfo text (no MemTotal/MemFree)');
  const free = kv.get('MemFree')!;
  return {
    mem_unused: free,
    mem_available: kv.get('MemAvailable') ?? null,
    mem_free: free + (kv.get('Buffers') ?? 0) + (kv.get('Cached') ?? 0),
    mem_total_guest: kv.get('MemTotal')!,
  };
}
