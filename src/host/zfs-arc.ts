// ZFS's ARC (/proc/spl/kstat/zfs/arcstats) as the cache it is. On Linux the ARC is kernel
// memory allocated by ZFS's SPL, not the page cache: /proc/meminfo counts it neither in Cached
// nor in MemAvailable, so a ZFS host (a Proxmox VE node on ZFS) looks short of memory and its
// guests are squeezed for a cache the kernel would shrink on demand. The ARC shrinks under
// pressure down to its minimum c_min, so `size - c_min` is reclaimable like page cache.
//
// Two parts, so that the ARC never costs the host's memory figures their freshness:
//   - ZfsArcSource (name zfs_arc): zfs_arc_size, zfs_arc_min, zfs_arc_reclaimable (KiB); no
//     file (no ZFS module): no fields; a garbled file: a clear error (the engine logs it once
//     and keeps the last good values).
//   - withArcAsCache(meminfo): the whole host's mem_free (MOM's MemFree + Buffers + Cached)
//     plus the reclaimable ARC, at most mem_available; when arcstats is missing or garbled,
//     mem_free is left as meminfo gives it (the zfs_arc source reports why).
// A cgroup memory domain (host.memory_domain) is not adjusted: the ARC is not charged to it.
import type { HostSource, Stats } from '../types.js';
import { readTextIfExists } from './files.js';

export const ARCSTATS_PATH = '/proc/spl/kstat/zfs/arcstats';

export interface ArcReading {
  /** Bytes. */
  size: number;
  cMin: number;
}

/** The kstat text: a header line, "name type data", then one "name type value" per line. */
export function parseArcstats(text: string): ArcReading {
  const values = new Map<string, string>();
  const lines = text.split('\n');
  if (!/^name\s+type\s+data\s*$/.test(lines[1] ?? '')) throw new Error(`${ARCSTATS_PATH}: not a kstat file (no "name type data" line)`);
  for (const line of lines.slice(2)) {
    const f = line.trim().split(/\s+/);
    if (f.length === 3) values.set(f[0]!, f[2]!);
  }
  const num = (k: string): number => {
    const v = values.get(k);
    if (v === undefined) throw new Error(`${ARCSTATS_PATH}: no "${k}" row`);
    if (!/^\d{1,20}$/.test(v) || !Number.isSafeInteger(Number(v)))
      throw new Error(`${ARCSTATS_PATH}: "${k}" is not a byte count: ${JSON.stringify(v.slice(0, 40))}`);
    return Number(v);
  };
  return { size: num('size'), cMin: num('c_min') };
}

const kib = (bytes: number) => Math.floor(bytes / 1024);

export function arcStats(r: ArcReading): Stats {
  return { zfs_arc_size: kib(r.size), zfs_arc_min: kib(r.cMin), zfs_arc_reclaimable: kib(Math.max(0, r.size - r.cMin)) };
}

async function readArc(root: string): Promise<ArcReading | null> {
  const text = await readTextIfExists(root, ARCSTATS_PATH);
  return text === null ? null : parseArcstats(text);
}

export class ZfsArcSource implements HostSource {
  readonly name = 'zfs_arc';
  constructor(private readonly root = '/') {}
  async collect(): Promise<Stats> {
    const r = await readArc(this.root);
    return r === null ? {} : arcStats(r);
  }
}

/** mem_free with the reclaimable ARC added; the source keeps its name and its own errors. */
export function withArcAsCache(inner: HostSource, root = '/'): HostSource {
  return {
    name: inner.name,
    watch: inner.watch,
    async collect(): Promise<Stats> {
      const [stats, arc] = await Promise.all([inner.collect(), readArc(root).catch(() => null)]);
      const free = stats.mem_free;
      if (arc === null || typeof free !== 'number') return stats;
      const total = typeof stats.mem_available === 'number' ? stats.mem_available : Number.POSITIVE_INFINITY;
      return { ...stats, mem_free: Math.min(total, free + kib(Math.max(0, arc.size - arc.cMin))) };
    },
  };
}
