// CPU tuning without libvirt (the QMP driver): the QEMU process's cgroup v2 cpu.max, which
// limits the whole process. libvirt's vcpu_quota is per vCPU, so the process gets quota x
// vCPUs per period ("max PERIOD" when the quota is -1), as libvirt does for a guest's vCPUs.
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { CpuTune, CpuTuneCapability } from '../types.js';

/** Whether /sys/fs/cgroup is a cgroup v2 mount. On a v1 host every process's
 *  /proc/PID/cgroup still has a "0::/" line, which would read as "in the root cgroup". */
export function cgroupV2Mounted(root = '/'): boolean {
  return existsSync(join(root, 'sys/fs/cgroup/cgroup.controllers'));
}

/** /sys/fs/cgroup/<path>/cpu.max of a process on cgroup v2; errors say why not. */
export async function cpuMaxFile(root: string, pid: number): Promise<string> {
  const text = await readFile(join(root, `proc/${pid}/cgroup`), 'utf8');
  const line = text.split('\n').find((l) => l.startsWith('0::'));
  if (!line) throw new Error(`process ${pid} is not in a cgroup v2 hierarchy: CPU tuning needs cgroup v2`);
  const path = line.slice(3).trim();
  if (path === '/' || path === '') throw new Error(`QEMU (pid ${pid}) runs in the root cgroup, which has no cpu.max: start it in a cgroup of its own`);
  return join(root, 'sys/fs/cgroup', path, 'cpu.max');
}

/** The QEMU process of a guest and its vCPU count, as its driver knows them (undefined: unknown). */
export type GuestProcess = (id: string) => { pid: number | null; vcpus: number | null } | undefined;

export function cgroupCpuTune(processOf: GuestProcess, root = '/'): CpuTuneCapability {
  const fileOf = async (id: string) => {
    const p = processOf(id);
    const pid = p?.pid;
    if (!p || typeof pid !== 'number' || !Number.isInteger(pid) || pid <= 0) throw new Error(`${id}: QEMU's pid is not known`);
    const vcpus = typeof p.vcpus === 'number' && p.vcpus > 0 ? p.vcpus : 1;
    return { file: await cpuMaxFile(root, pid), vcpus };
  };
  const read = async (id: string): Promise<CpuTune> => {
    const { file, vcpus } = await fileOf(id);
    const [q, p] = (await readFile(file, 'utf8')).trim().split(/\s+/);
    const period = Number(p);
    return { quota: q === 'max' ? -1 : Math.round(Number(q) / vcpus), period: Number.isFinite(period) ? period : null };
  };
  return {
    read,
    async write(id, tune) {
      const { file, vcpus } = await fileOf(id);
      const now = await read(id);
      const quota = tune.quota ?? now.quota ?? -1;
      const period = tune.period ?? now.period ?? 100_000;
      await writeFile(file, `${quota < 0 ? 'max' : Math.round(quota * vcpus)} ${period}\n`);
    },
  };
}
