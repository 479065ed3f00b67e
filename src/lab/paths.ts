// Where the lab keeps its things. Build products live in the repo (lab/build, gitignored);
// runtime state (PID files, sockets, console logs) lives under /run/ballast-lab.
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const LAB_DIR = join(REPO_ROOT, 'lab');
export const BUILD_DIR = process.env.BALLAST_LAB_BUILD_DIR ?? join(LAB_DIR, 'build');
export const RUN_DIR = process.env.BALLAST_LAB_RUN_DIR ?? '/run/ballast-lab';

export const LIBVIRT_SOCK = '/var/run/libvirt/libvirt-sock';
export const LIBVIRT_URI = 'qemu:///system';
export const QEMU_CONF = '/etc/libvirt/qemu.conf';

/** Every libvirt domain the lab defines carries this prefix; nothing else is ever touched. */
export const GUEST_PREFIX = 'ballast-lab-';
