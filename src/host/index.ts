// The host sources a real host runs with, as one list for the engine.
import type { HostSource } from '../types.js';
import { CpuSource } from './cpu.js';
import { HugepagesSource } from './hugepages.js';
import { KsmSource } from './ksm.js';
import { MapCountSource } from './map-count.js';
import { MeminfoSource } from './meminfo.js';
import { MemoryDomainSource, type MemoryDomainOptions } from './memory-domain.js';
import { NumaSource } from './numa.js';
import { PsiSource } from './psi.js';
import { SwapSpeedSource } from './swap-speed.js';
import { VmstatSource } from './vmstat.js';
import { withArcAsCache, ZfsArcSource } from './zfs-arc.js';

export interface HostSourcesOptions {
  root?: string;
  /** The guests' QEMU PIDs, for ksm_shareable (ask the hypervisor driver). */
  guestPids?: () => readonly number[] | Promise<readonly number[]>;
  /** A cgroup to treat as the host: its fields replace /proc/meminfo's. */
  domain?: Omit<MemoryDomainOptions, 'root'>;
}

export function hostSources(opts: HostSourcesOptions = {}): HostSource[] {
  const root = opts.root ?? '/';
  return [
    // ZFS's ARC counts as cache for the whole host, not for a cgroup it is not charged to.
    opts.domain ? new MemoryDomainSource({ ...opts.domain, root }) : withArcAsCache(new MeminfoSource(root), root),
    new VmstatSource(root),
    new PsiSource(root),
    new SwapSpeedSource(root),
    new KsmSource({ root, guestPids: opts.guestPids }),
    new NumaSource(root),
    new HugepagesSource(root),
    new CpuSource(root),
    new MapCountSource(root),
    new ZfsArcSource(root),
  ];
}

export {
  MeminfoSource,
  VmstatSource,
  PsiSource,
  KsmSource,
  NumaSource,
  HugepagesSource,
  CpuSource,
  MemoryDomainSource,
  MapCountSource,
  ZfsArcSource,
  SwapSpeedSource,
};
export { KsmSysfs, KsmWriteError } from './ksm-sysfs.js';
export { CgroupLimits, CgroupLimitError } from './cgroup-limits.js';
export { guestPid, guestPids } from './guest-pid.js';
export { evaluateAlerts, hostAlerts, guestLeakAlert, AlertTracker, DEFAULT_THRESHOLDS, type AlertEvent, type AlertThresholds } from './alerts.js';
