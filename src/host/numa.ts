// Free and total memory per NUMA node (/sys/devices/system/node/nodeN/meminfo), KiB:
// node0_mem_free, node0_mem_total, ... A policy can see one node running dry while the host
// total looks fine.
import type { HostSource, Stats } from '../types.js';
import { keyValue, listDir, readTextIfExists } from './files.js';

export interface NodeMeminfo {
  node: number;
  memFree: number | null;
  memTotal: number | null;
}

/** The node number and its MemFree / MemTotal of a "Node N Key: value kB" text. */
export function parseNodeMeminfo(text: string): NodeMeminfo {
  const m = /^\s*Node\s+(\d+)\s/.exec(text);
  if (!m) throw new Error('node meminfo: no "Node N" lines');
  const node = Number(m[1]);
  return { node, memFree: keyValue(text, `Node ${node} MemFree`) ?? null, memTotal: keyValue(text, `Node ${node} MemTotal`) ?? null };
}

export function numaStats(nodes: NodeMeminfo[]): Stats {
  const out: Stats = { numa_node_count: nodes.length };
  for (const { node, memFree, memTotal } of nodes) {
    out[`node${node}_mem_free`] = memFree;
    out[`node${node}_mem_total`] = memTotal;
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
