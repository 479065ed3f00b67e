// cpu_count: the online CPUs (/sys/devices/system/cpu/online, a list like "0-3,6,8-9").
import { cpus } from 'node:os';
import type { HostSource, Stats } from '../types.js';
import { readTextIfExists } from './files.js';

export function parseCpuList(text: string): number {
  const s = text.trim();
  if (s === '') return 0;
  let n = 0;
  for (const part of s.split(',')) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (!m) throw new Error(`cpu list: cannot read "${part}"`);
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    if (b < a) throw new Error(`cpu list: range "${part}" runs backwards`);
    n += b - a + 1;
  }
  return n;
}

export class CpuSource implements HostSource {
  readonly name = 'cpu';
  constructor(private readonly root = '/') {}
  async collect(): Promise<Stats> {
    const text = await readTextIfExists(this.root, '/sys/devices/system/cpu/online');
    return { cpu_count: text === null ? cpus().length : parseCpuList(text) };
  }
}
