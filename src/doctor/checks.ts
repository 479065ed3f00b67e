// The host's checks: each reads kernel files under `root` ('/' for the live system, a fixture
// tree in tests) and says what it found. Nothing here writes: "writable" is asked with
// access(2), which answers for the caller's credentials and a read-only mount alike.
import { access, constants, readdir, stat } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { parseMountinfo } from '../host/cgroup.js';
import { errnoOf, readTextIfExists, under } from '../host/files.js';
import { KSM_DIR, parseSelection, readKsmFiles } from '../host/ksm-sysfs.js';
import { parsePsi } from '../host/psi.js';
import { areaRotational, parseSwaps, swapRotational } from '../host/swap-speed.js';
import { BALLOON_RETURN_DOC, result, type CheckResult } from './types.js';

const THP_DIR = '/sys/kernel/mm/transparent_hugepage';

/** null when writable, else the errno that says why not. Tests pass their own: root may
 *  write any file of a fixture tree, whatever its mode. */
export type WritableProbe = (path: string) => Promise<string | null>;

export async function notWritable(path: string): Promise<string | null> {
  try {
    await access(path, constants.W_OK);
    return null;
  } catch (err) {
    return errnoOf(err) ?? (err as Error).message;
  }
}

/** KSM. Missing is a warning (ballast reports null ksm_* fields and carries on); present
 *  but not writable fails while ksm.enabled asks ballast to drive it. */
export async function checkKsm(root: string, enabled: boolean, writable: WritableProbe = notWritable): Promise<CheckResult> {
  const files = await readKsmFiles(root);
  if (files.run === undefined) {
    if (!enabled) return result('ksm', 'skip', `no ${KSM_DIR} (kernel without KSM); ksm.enabled = false, so ballast does not need it`);
    return result(
      'ksm',
      'warn',
      `no ${KSM_DIR}: this kernel has no KSM, so the policies' ksm_* controls do nothing`,
      'use a kernel built with CONFIG_KSM=y, or set ksm.enabled = false to say KSM is not wanted',
    );
  }
  const run = files.run.trim();
  const state = run === '1' ? 'ksmd running' : run === '2' ? 'ksmd unmerging' : 'ksmd stopped';
  const sharing = files.pages_sharing?.trim();
  const found = `${KSM_DIR} present (${state}${sharing ? `, ${sharing} pages sharing` : ''})`;
  if (!enabled) return result('ksm', 'skip', `${found}; ksm.enabled = false, so ballast leaves it alone`);
  const why = await writable(under(root, `${KSM_DIR}/run`));
  if (why === null) return result('ksm', 'ok', `${found}, writable`);
  const fix =
    why === 'EROFS'
      ? 'sysfs is mounted read-only here (a container?): run ballast on the host, or set ksm.enabled = false'
      : 'run ballast as root (or with CAP_SYS_ADMIN), or set ksm.enabled = false';
  return result('ksm', 'fail', `${found} but ${KSM_DIR}/run is not writable (${why}): ballast cannot start, stop or tune ksmd`, fix);
}

async function thpSelection(root: string, file: string): Promise<string | null> {
  const text = await readTextIfExists(root, `${THP_DIR}/${file}`);
  return text === null ? null : (parseSelection(text) ?? text.trim());
}

/** What each way of giving memory back needs, said with the THP check: with huge pages on (as
 *  every QEMU host runs), memory should go back in whole blocks. */
export const MECHANISMS =
  'free page reporting needs QEMU 5.1+ with -device virtio-balloon-pci,free-page-reporting=on and guest Linux 5.7+; ' +
  'virtio-mem needs a virtio-mem-pci device (libvirt <memory model="virtio-mem">), the guest\'s virtio_mem driver and its hotplugged memory onlined movable (memhp_default_state=online_movable); ' +
  'reclaim inside the guest ([reclaim] enabled) needs free page reporting, the guest agent with guest-file-* allowed and a Linux 5.19+ guest with cgroup v2 mounted at /sys/fs/cgroup; ' +
  "the balloon needs the guest's virtio_balloon driver";

/** THP `enabled`: huge pages make guests faster (KVM backs their memory with them), and ballast
 *  keeps them: free page reporting and virtio-mem give memory back in 2 MiB+ blocks, where a
 *  4 KiB balloon page splits a huge page (and may give nothing back until it is split). So
 *  `never` is the setting to change, not `always` or `madvise`. */
export async function checkThp(root: string): Promise<CheckResult> {
  const mode = await thpSelection(root, 'enabled');
  if (mode === null) return result('thp', 'ok', 'kernel without transparent huge pages: nothing stands between the balloon and the host');
  const found = `transparent_hugepage/enabled = ${mode}`;
  if (mode === 'never') {
    return result(
      'thp',
      'warn',
      `${found}: guest RAM gets no host huge pages, which makes guests slower; ballast does not need them off: give memory back with free page reporting and virtio-mem, which keep them whole (${MECHANISMS})`,
      `echo madvise > ${THP_DIR}/enabled (QEMU madvises guest RAM; transparent_hugepage=madvise on the kernel command line to keep it)`,
    );
  }
  return result(
    'thp',
    'ok',
    `${found}: guest RAM is backed by huge pages; free page reporting and virtio-mem give memory back in whole 2 MiB+ blocks, a 4 KiB balloon splits them (see ${BALLOON_RETURN_DOC}), so while this host has swap room and is not stalling on memory the balloon leaves guests' page cache to its swap (safeguards.cache_stall_percent); ${MECHANISMS}`,
  );
}

/** THP `defrag`: with `always` faults stall in reclaim and compaction to build huge pages,
 *  which on an overcommitted host rebuilds what ballooning splits. */
export async function checkThpDefrag(root: string): Promise<CheckResult> {
  const mode = await thpSelection(root, 'defrag');
  if (mode === null) return result('thp_defrag', 'ok', 'no transparent_hugepage/defrag (kernel without transparent huge pages)');
  const found = `transparent_hugepage/defrag = ${mode}`;
  if (mode === 'always') {
    return result(
      'thp_defrag',
      'warn',
      `${found}: page faults stall in reclaim and compaction to build huge pages, working against the balloon (${BALLOON_RETURN_DOC})`,
      `echo madvise > ${THP_DIR}/defrag (or defer)`,
    );
  }
  return result('thp_defrag', 'ok', found);
}

/** Where the memory controller is. cgroup control (cgroup.enabled) needs v2: v1 has no
 *  throttling limit (memory.high), only a soft limit the kernel heeds when the host is short. */
export async function checkCgroup(root: string, cgroupLimits: boolean): Promise<CheckResult> {
  const mountinfo = await readTextIfExists(root, '/proc/self/mountinfo');
  if (mountinfo === null) return result('cgroup', 'skip', 'no /proc/self/mountinfo: cannot tell which cgroup version is mounted');
  const mounts = parseMountinfo(mountinfo);
  const v1 = mounts.find((m) => m.version === 1 && m.controllers.includes('memory'));
  let v2: string | null = null;
  for (const m of mounts.filter((x) => x.version === 2)) {
    const ctl = await readTextIfExists(root, posix.join(m.mountPoint, 'cgroup.controllers'));
    if (ctl?.split(/\s+/).includes('memory')) {
      v2 = m.mountPoint;
      break;
    }
  }
  const use = cgroupLimits ? 'cgroup.enabled = true needs it' : 'needed only for cgroup.enabled, which is off';
  if (v2 !== null && !v1) return result('cgroup', 'ok', `cgroup v2 with the memory controller at ${v2}`);
  const toV2 = cgroupLimits
    ? 'boot with systemd.unified_cgroup_hierarchy=1 (cgroup v2 only), or set cgroup.enabled = false'
    : 'boot with systemd.unified_cgroup_hierarchy=1 (cgroup v2 only) before turning cgroup.enabled on';
  if (v1) {
    return result(
      'cgroup',
      cgroupLimits ? 'fail' : 'warn',
      `the memory controller is on cgroup v1 (${v1.mountPoint}): no memory.high to throttle a guest with; cgroup control needs v2 (${use})`,
      toV2,
    );
  }
  return result(
    'cgroup',
    cgroupLimits ? 'fail' : 'warn',
    `no memory cgroup controller mounted (${use})`,
    `mount cgroup2 with the memory controller enabled (systemd does this on cgroup v2 hosts)${cgroupLimits ? ', or set cgroup.enabled = false' : ''}`,
  );
}

/** Swap: without it a host whose guests outgrow it has only the OOM killer, which picks the
 *  largest process: a QEMU. */
export async function checkSwap(root: string): Promise<CheckResult> {
  const text = await readTextIfExists(root, '/proc/swaps');
  const fix = 'add a swap file or partition (or zram: zram-generator, or zramctl + mkswap + swapon)';
  if (text === null) return result('swap', 'warn', 'no /proc/swaps: this kernel has no swap support, so a host short of memory can only OOM-kill a guest', fix);
  const areas = parseSwaps(text);
  if (areas.length === 0) return result('swap', 'warn', 'no swap: when guests outgrow the host the OOM killer ends a QEMU instead of paging', fix);
  const sizeKiB = areas.reduce((s, a) => s + a.sizeKiB, 0);
  const usedKiB = areas.reduce((s, a) => s + a.usedKiB, 0);
  const rotational = swapRotational(areas, (a) => areaRotational(root, a));
  const speed =
    rotational === 1
      ? '; the swap used first is on a rotational device, so ballast treats it as slow until its first 1,024 swap-ins show otherwise (safeguards.slow_swap_in_ms): page cache is ballooned rather than swapped, KSM runs as the policy asks'
      : rotational === 0
        ? '; the swap used first is on a non-rotational device: cold page cache may go to it while the host does not stall'
        : '';
  return result('swap', 'ok', `${areas.length} swap area(s), ${Math.round(sizeKiB / 1024)} MiB, ${Math.round(usedKiB / 1024)} MiB used${speed}`);
}

/** PSI: without it the psi_* host fields are null and policies fall back to free memory. */
export async function checkPsi(root: string): Promise<CheckResult> {
  let text: string | null;
  try {
    text = await readTextIfExists(root, '/proc/pressure/memory');
  } catch (err) {
    if (errnoOf(err) !== 'EOPNOTSUPP') throw err;
    return result(
      'psi',
      'warn',
      'pressure stall information is disabled (reading /proc/pressure/memory: EOPNOTSUPP): psi_* fields are null',
      'boot with psi=1 (the kernel was built with CONFIG_PSI_DEFAULT_DISABLED)',
    );
  }
  if (text === null) {
    return result(
      'psi',
      'warn',
      'no /proc/pressure/memory: this kernel has no pressure stall information, so psi_* fields are null',
      'use a kernel built with CONFIG_PSI=y (4.20+)',
    );
  }
  const p = parsePsi(text);
  return result('psi', 'ok', `memory pressure: some avg10=${p.psi_some_avg10 ?? '?'}%, full avg10=${p.psi_full_avg10 ?? '?'}%`);
}

/** The QMP driver's directory (a config path, not a kernel one: not under `root`). The unix
 *  sockets in it, or the result that says why there are none. */
export async function checkQmpDir(dir: string): Promise<{ check: CheckResult; sockets: string[] }> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    const code = errnoOf(err);
    const fix = `create it (mkdir -p ${dir}) and start each guest with -qmp unix:${dir}/NAME.sock,server=on,wait=off, or set hypervisor.qmp_dir`;
    return {
      check: result(
        'hypervisor',
        'fail',
        `hypervisor.qmp_dir ${dir}: ${code === 'ENOENT' ? 'does not exist' : code === 'ENOTDIR' ? 'is not a directory' : `cannot be read (${code})`}`,
        fix,
      ),
      sockets: [],
    };
  }
  const sockets: string[] = [];
  for (const n of names.sort()) {
    const s = await stat(join(dir, n)).catch(() => null);
    if (s?.isSocket()) sockets.push(join(dir, n));
  }
  if (sockets.length === 0) {
    return {
      check: result(
        'hypervisor',
        'warn',
        `hypervisor.qmp_dir ${dir} exists but holds no unix socket: no guest to manage yet`,
        `start each guest with -qmp unix:${dir}/NAME.sock,server=on,wait=off`,
      ),
      sockets,
    };
  }
  return { check: result('hypervisor', 'ok', `hypervisor.qmp_dir ${dir}: ${sockets.length} QMP socket(s)`), sockets };
}
