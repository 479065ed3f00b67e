// Asking a guest's own kernel to reclaim memory: a write of "<N>K" to its root cgroup's
// memory.reclaim (Linux 5.19+, cgroup v2 mounted at /sys/fs/cgroup) through its guest agent.
// The guest picks the coldest pages itself; with free page reporting what it frees goes back to
// the host in whole 2 MiB+ blocks, where a balloon taking the same memory splits the host's huge
// pages. Every driver with a guest agent uses this one function, so each fails the same way.
import type { FailureKind } from '../errors.js';
import { type AgentExec, writeGuestFile } from './guest-agent.js';

export const MEMORY_RECLAIM_PATH = '/sys/fs/cgroup/memory.reclaim';
/** How long a reclaim may take: tens of MiB take well under a second; a TCG guest under
 *  pressure, longer. A collection does not wait for it (actions run after the plan). */
export const RECLAIM_TIMEOUT_MS = 10_000;

/** 'short': the guest's kernel found less than asked to reclaim (EAGAIN), and freed what it could. */
export type ReclaimOutcome = 'done' | 'short';

/** This guest cannot be asked: no memory.reclaim, or an agent that refuses file writes. */
export class GuestReclaimUnsupported extends Error {
  override name = 'GuestReclaimUnsupported';
  readonly kind: FailureKind = 'unsupported';
}

const MISSING = /No such file or directory|ENOENT/;
const SHORT = /Resource temporarily unavailable|EAGAIN/;
// qemu-ga started with guest-file-* blocked (-b, or an allow-list without them).
const REFUSED = /has been disabled|CommandNotFound|command not found/i;

/** The check every driver makes of an amount to reclaim, so each refuses a bad one alike. */
export function checkReclaimKiB(kib: number): void {
  if (!Number.isSafeInteger(kib) || kib <= 0) throw new RangeError(`memory to reclaim must be a whole, positive KiB count, not ${kib}`);
}

/** Asks the guest behind `exec` to reclaim `kib` KiB; throws GuestReclaimUnsupported when it cannot be asked. */
export async function reclaimInGuest(exec: AgentExec, kib: number): Promise<ReclaimOutcome> {
  checkReclaimKiB(kib);
  try {
    await writeGuestFile(exec, MEMORY_RECLAIM_PATH, `${kib}K`);
    return 'done';
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    if (SHORT.test(msg)) return 'short';
    if (MISSING.test(msg))
      throw new GuestReclaimUnsupported(`the guest has no ${MEMORY_RECLAIM_PATH} (it needs Linux 5.19+ with cgroup v2 mounted there): ${msg}`);
    if (REFUSED.test(msg)) throw new GuestReclaimUnsupported(`the guest's agent refuses file writes (guest-file-* blocked): ${msg}`);
    throw err;
  }
}
