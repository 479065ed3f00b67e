// Pressure stall information for memory (/proc/pressure/memory): the share of time tasks
// stalled on memory, which is what "the host is under pressure" really means. New fields,
// not MOM's: psi_some_avg10, psi_some_avg60, psi_full_avg10, psi_full_avg60 (percent).
import type { HostSource, Stats } from '../types.js';
import { readTextIfExists } from './files.js';

const NULLS: Stats = { psi_some_avg10: null, psi_some_avg60: null, psi_full_avg10: null, psi_full_avg60: null };

export function parsePsi(text: string): Stats {
  const out: Stats = { ...NULLS };
  for (const line of text.split('\n')) {
    const m = /^(some|full)\s+(.*)$/.exec(line.trim());
    if (!m) continue;
    for (const part of m[2]!.split(/\s+/)) {
      const [k, v] = part.split('=');
      if ((k === 'avg10' || k === 'avg60') && v !== undefined && v !== '' && Number.isFinite(Number(v))) {
        out[`psi_${m[1]}_${k}`] = Number(v);
      }
    }
  }
  return out;
}

/** A kernel without PSI (or with psi=0, where reading fails with EOPNOTSUPP) gives nulls. */
export class PsiSource implements HostSource {
  readonly name = 'psi';
  constructor(
    private readonly root = '/',
    private readonly path = '/proc/pressure/memory',
  ) {}
  async collect(): Promise<Stats> {
    let text: string | null;
    try {
      text = await readTextIfExists(this.root, this.path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EOPNOTSUPP') return { ...NULLS };
      throw err;
    }
    return text === null ? { ...NULLS } : parsePsi(text);
  }
}
