// /proc/meminfo -> MOM's host memory fields (KiB), with MOM's meanings:
// mem_available is the total (MemTotal), mem_free counts page cache as free.
import type { HostSource, Stats } from '../types.js';
import { parseKeyValues, readText } from './files.js';

export function parseMeminfo(text: string): Map<string, number> {
  const kv = parseKeyValues(text);
  if (!kv.has('MemTotal')) throw new Error('meminfo: no MemTotal line (not a /proc/meminfo file?)');
  return kv;
}

export function meminfoStats(kv: Map<string, number>): Stats {
  const get = (k: string): number | null => kv.get(k) ?? null;
  const memFree = get('MemFree');
  const buffers = get('Buffers') ?? 0;
  const cached = get('Cached') ?? 0;
  const swapTotal = get('SwapTotal');
  const swapFree = get('SwapFree');
  return {
    mem_available: get('MemTotal'),
    mem_free: memFree === null ? null : memFree + buffers + cached,
    mem_unused: memFree,
    anon_pages: get('AnonPages'),
    swap_total: swapTotal,
    swap_usage: swapTotal === null || swapFree === null ? null : swapTotal - swapFree,
  };
}

export class MeminfoSource implements HostSource {
  readonly name = 'meminfo';
  readonly watch = true;
  constructor(private readonly root = '/') {}
  async collect(): Promise<Stats> {
    return meminfoStats(parseMeminfo(await readText(this.root, '/proc/meminfo')));
  }
}
