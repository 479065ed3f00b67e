// CPU tuning on the simulated host: the simulator has no CPU scheduler, so the values are
// kept here and read back, which is what a policy and its tests observe.
import type { CpuTune, CpuTuneCapability } from '../../types.js';

export function simCpuTune(): CpuTuneCapability {
  const tunes = new Map<string, CpuTune>();
  return {
    read: async (id) => tunes.get(id) ?? { quota: -1, period: 100_000 },
    write: async (id, t) => {
      const cur = tunes.get(id) ?? { quota: -1, period: 100_000 };
      tunes.set(id, { quota: t.quota ?? cur.quota, period: t.period ?? cur.period });
    },
  };
}
