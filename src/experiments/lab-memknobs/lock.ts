// One lab experiment at a time: two would share the CPUs, the host's swap counters and KSM,
// and each would measure the other. The lock is a file holding the owner's PID; a lock whose
// owner died is taken over.
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { RUN_DIR } from '../../lab/paths.js';
import { pidAlive } from '../../lab/proc.js';
import { LabUnavailable } from './errors.js';

export const LOCK_PATH = join(RUN_DIR, 'experiment.lock');

/** Takes the lock or throws LabUnavailable naming the running experiment; returns the release. */
export function acquireExperimentLock(path = LOCK_PATH): () => void {
  mkdirSync(dirname(path), { recursive: true });
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, 'wx');
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      return () => {
        try {
          if (readFileSync(path, 'utf8').trim() === String(process.pid)) rmSync(path, { force: true });
        } catch {
          // already gone
        }
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const owner = Number.parseInt(readFileSync(path, 'utf8').trim(), 10);
      if (owner !== process.pid && pidAlive(owner)) {
        throw new LabUnavailable(`another lab experiment (PID ${owner}) is running: two at once would disturb each other's measurements (lock ${path})`);
      }
      rmSync(path, { force: true }); // its owner died: stale
    }
  }
  throw new LabUnavailable(`cannot take the experiment lock ${path}`);
}
