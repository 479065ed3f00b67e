// Pressure stall information for memory (/proc/pressure/memory): the share of time tasks
// stalled on memory, which is what "the host is under pressure" really means. New fields,
// not MOM's: psi_some_avg10, psi_some_avg60, psi_full_avg10, psi_full_avg60 (percent).
import type { HostSource, Stats } from '../types.js';
import { readTextIfExists } from './files.js';

import { parsePsi, PSI_NULLS as NULLS } from '../psi.js';

export { parsePsi };

/** A kernel without PSI (or with psi=0, where reading fails with EOPNOTSUPP) gives nulls. */
export class PsiSource implements HostSource {
  readonly name = 'psi';
  readonly watch = true;
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
