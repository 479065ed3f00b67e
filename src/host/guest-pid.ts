// The PID of a guest's QEMU process: the driver's props.pid (the QMP driver sets it), else
// libvirt's PID file (/run/libvirt/qemu/<name>.pid), so cgroup limits and ksm_shareable work
// with either driver.
import type { GuestSample } from '../types.js';
import { readTextIfExists } from './files.js';

export const LIBVIRT_RUN_DIR = '/run/libvirt/qemu';

export async function guestPid(guest: Pick<GuestSample, 'name' | 'props'>, opts: { root?: string; libvirtRunDir?: string } = {}): Promise<number | null> {
  const root = opts.root ?? '/';
  const p = Number(guest.props.pid);
  if (Number.isInteger(p) && p > 0) return p;
  if (!/^[^/\0]+$/.test(guest.name)) return null; // a name that is not a plain file name
  const text = await readTextIfExists(root, `${opts.libvirtRunDir ?? LIBVIRT_RUN_DIR}/${guest.name}.pid`);
  const pid = text === null ? NaN : Number(text.trim());
  if (!Number.isInteger(pid) || pid <= 0) return null;
  // A PID file left behind by a QEMU that is gone says nothing.
  return (await readTextIfExists(root, `/proc/${pid}/status`)) === null ? null : pid;
}

/** PIDs of the guests' QEMU processes (for KsmSource's ksm_shareable). */
export async function guestPids(
  guests: readonly Pick<GuestSample, 'name' | 'props'>[],
  opts: { root?: string; libvirtRunDir?: string } = {},
): Promise<number[]> {
  const out: number[] = [];
  for (const g of guests) {
    const pid = await guestPid(g, opts);
    if (pid !== null) out.push(pid);
  }
  return out;
}
