// Can the real-VM lab run here? Lab tests call this and skip LOUDLY with the reason when not.
import { existsSync } from 'node:fs';
import { ensureLabBuilt, type LabBuild } from './build.js';
import { findEmulator } from './guests.js';

export interface LabAvailability {
  ok: boolean;
  /** Why not (empty when ok). */
  reason: string;
  build?: LabBuild;
}

const which = (names: string[]) => names.find((p) => existsSync(p));

/**
 * Checks root, QEMU, (optionally) libvirtd + virsh, and that the guest image builds (it is
 * built here when needed). BALLAST_LAB=0 in the environment turns the lab off with that reason.
 */
export async function labAvailable(o: { libvirt?: boolean } = {}): Promise<LabAvailability> {
  if (process.env.BALLAST_LAB === '0') return { ok: false, reason: 'BALLAST_LAB=0 in the environment' };
  if (process.platform !== 'linux') return { ok: false, reason: `the lab needs Linux, this is ${process.platform}` };
  if (process.getuid?.() !== 0) return { ok: false, reason: 'not root (the lab starts libvirtd and QEMU guests as root)' };
  try {
    await findEmulator();
  } catch (e) {
    return { ok: false, reason: (e as Error).message };
  }
  if (o.libvirt ?? true) {
    if (!which(['/usr/sbin/libvirtd', '/usr/local/sbin/libvirtd'])) return { ok: false, reason: 'libvirtd not installed: run lab/install-deps.sh' };
    if (!which(['/usr/bin/virsh', '/usr/local/bin/virsh'])) return { ok: false, reason: 'virsh not installed: run lab/install-deps.sh' };
  }
  try {
    const build = await ensureLabBuilt();
    return { ok: true, reason: '', build };
  } catch (e) {
    return { ok: false, reason: `lab image build failed: ${(e as Error).message}` };
  }
}
