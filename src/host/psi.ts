// Pressure stall information (/proc/pressure/memory and /proc/pressure/io): the share of time
// tasks stalled, which is what "the host is under pressure" really means. New fields, not
// MOM's: psi_some_avg10, psi_some_avg60, psi_full_avg10, psi_full_avg60 (memory, percent) and
// psi_io_some_avg10, ... (I/O). The I/O figures matter for swap: the kernel counts a swap-in as
// a memory stall only when the page was part of the working set, so a host reading cold pages
// back from a slow disk waits on I/O while its memory stall stays near 0.
import type { HostSource, Stats } from '../types.js';
import { readTextIfExists } from './files.js';

import { parsePsi } from '../psi.js';

export { parsePsi };

/** A pressure file's text; null without PSI: no file, or psi=0 on the kernel command line,
 *  where the file is there and reading it fails with EOPNOTSUPP. */
export async function readPressure(root: string, path: string): Promise<string | null> {
  try {
    return await readTextIfExists(root, path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EOPNOTSUPP') return null;
    throw err;
  }
}

/** A kernel without PSI gives nulls. */
export class PsiSource implements HostSource {
  readonly name = 'psi';
  readonly watch = true;
  constructor(
    private readonly root = '/',
    private readonly path = '/proc/pressure/memory',
    private readonly ioPath = '/proc/pressure/io',
  ) {}

  async collect(): Promise<Stats> {
    const mem = await readPressure(this.root, this.path);
    const io = await readPressure(this.root, this.ioPath);
    return { ...parsePsi(mem ?? ''), ...parsePsi(io ?? '', 'psi_io') };
  }
}
