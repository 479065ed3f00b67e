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

/** Collections between two listings of the nodes: they come and go only with memory hotplug. */
const RELIST_EVERY = 60;
const BASE = '/sys/devices/system/node';

export class NumaSource implements HostSource {
  readonly name = 'numa';
  private names: string[] | null = null;
  private sinceListed = 0;
  constructor(private readonly root = '/') {}
  async collect(): Promise<Stats> {
    if (this.names === null || ++this.sinceListed >= RELIST_EVERY) {
      this.names = (await listDir(this.root, BASE)).filter((n) => /^node\d+$/.test(n)).sort((a, b) => Number(a.slice(4)) - Number(b.slice(4)));
      this.sinceListed = 0;
    }
    const nodes = [];
    for (const n of this.names) {
      const text = await readTextIfExists(this.root, `${BASE}/${n}/meminfo`);
      if (text !== null) nodes.push(parseNodeMeminfo(text));
      else this.names = null; // a node went away: list again next time
    }
    return numaStats(nodes);
  }
}
