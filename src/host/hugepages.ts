// Huge page pools and transparent huge pages from /proc/meminfo. Memory in hugetlb pools is
// invisible to the balloon and to KSM, so a policy should know how much of the host it is.
import type { HostSource, Stats } from '../types.js';
import { readText } from './files.js';
import { parseMeminfo } from './meminfo.js';

export function hugepageStats(kv: Map<string, number>): Stats {
  const get = (k: string): number | null => kv.get(k) ?? null;
  const total = get('HugePages_Total');
  const free = get('HugePages_Free');
  const size = get('Hugepagesize');
  return {
    hugepages_total: total,
    hugepages_free: free,
    hugepages_rsvd: get('HugePages_Rsvd'),
    hugepages_surp: get('HugePages_Surp'),
    hugepage_size: size,
    // KiB held by the default-size pool, used or not (Hugetlb also counts other sizes when present).
    hugetlb_total: get('Hugetlb') ?? (total !== null && size !== null ? total * size : null),
    hugetlb_used: total !== null && free !== null && size !== null ? (total - free) * size : null,
    anon_huge_pages: get('AnonHugePages'),
  };
}

export class HugepagesSource implements HostSource {
  readonly name = 'hugepages';
  constructor(private readonly root = '/') {}
  async collect(): Promise<Stats> {
    return hugepageStats(parseMeminfo(await readText(this.root, '/proc/meminfo')));
  }
}
