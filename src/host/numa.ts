// Free and total memory per NUMA node (/sys/devices/system/node/nodeN/meminfo), KiB:
// node0_mem_free, node0_mem_total, ... A policy can see one node running dry while the host
// total looks fine.
import type { HostSource, Stats } from '../types.js';
import { listDir, parseKeyValues, readTextIfExists } from './files.js';

/** Parses "Node N Key: value kB" lines into { node, key -> value }. */
export function parseNodeMeminfo(text: string): { node: number; values: Map<string, number> } {
  const values = new Map<string, number>();
  let node = -1;
  for (const [k, v] of parseKeyValues(text)) {
    const m = /^Node\s+(\d+)\s+(.+)$/.exec(k);
    if (!m) continue;
    node = Number(m[1]);
    values.set(m[2]!, v);
  }
  if (node < 0) throw new Error('node meminfo: no "Node N" lines');
  return { node, values };
}

export function numaStats(nodes: { node: number; values: Map<string, number> }[]): Stats {
  const out: Stats = { numa_node_count: nodes.length };
  for (const { node, values } of nodes) {
    out[`node${node}_mem_free`] = values.get('MemFree') ?? null;
    out[`node${node}_mem_total`] = values.get('MemTotal') ?? null;
  }
  return out;
}

export class NumaSource implements HostSource {
  readonly name = 'numa';
  constructor(private readonly root = '/') {}
  async collect(): Promise<Stats> {
    const base = '/sys/devices/system/node';
    const names = (await listDir(this.root, base)).filter((n) => /^node\d+$/.test(n));
    const nodes = [];
    for (const n of names.sort((a, b) => Number(a.slice(4)) - Number(b.slice(4)))) {
      const text = await readTextIfExists(this.root, `${base}/${n}/meminfo`);
      if (text !== null) nodes.push(parseNodeMeminfo(text));
    }
    return numaStats(nodes);
  }
}
