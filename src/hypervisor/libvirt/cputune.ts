// CPU tuning on the libvirt driver: the domain's scheduler parameters vcpu_quota and
// vcpu_period (virDomainGet/SetSchedulerParametersFlags, live), the procedures MOM's libvirt
// interface uses for CpuTune. Procedure numbers and structs from libvirt's remote_protocol.x.
import type { CpuTune, CpuTuneCapability } from '../../types.js';
import type { LibvirtHypervisor } from './index.js';
import { readTypedParam, TypedParamType, writeDomain, writeTypedParam, type TypedParam } from './protocol.js';
import { XdrWriter } from './xdr.js';

const PROC_SET_SCHEDULER_PARAMETERS_FLAGS = 219;
const PROC_GET_SCHEDULER_PARAMETERS_FLAGS = 223;
const SCHEDULER_PARAMETERS_MAX = 16;
const AFFECT_LIVE = 1;

export function libvirtCpuTune(hv: Pick<LibvirtHypervisor, 'withDomain'>): CpuTuneCapability {
  return {
    async read(guestId) {
      return hv.withDomain(guestId, 'scheduler parameters not read', async (c, dom) => {
        const w = new XdrWriter();
        writeDomain(w, dom);
        const params = await c.call(PROC_GET_SCHEDULER_PARAMETERS_FLAGS, w.int(SCHEDULER_PARAMETERS_MAX).uint(AFFECT_LIVE).toBuffer(), (r) =>
          r.array(readTypedParam, SCHEDULER_PARAMETERS_MAX),
        );
        const get = (f: string) => {
          const v = params.find((p) => p.field === f)?.value;
          return typeof v === 'number' ? v : typeof v === 'bigint' ? Number(v) : null;
        };
        return { quota: get('vcpu_quota'), period: get('vcpu_period') };
      });
    },
    async write(guestId, tune: Partial<CpuTune>) {
      const params: TypedParam[] = [];
      if (tune.period != null) params.push({ field: 'vcpu_period', type: TypedParamType.ULLONG, value: BigInt(tune.period) });
      if (tune.quota != null) params.push({ field: 'vcpu_quota', type: TypedParamType.LLONG, value: BigInt(tune.quota) });
      if (params.length === 0) return;
      await hv.withDomain(guestId, 'scheduler parameters not set', async (c, dom) => {
        const w = new XdrWriter();
        writeDomain(w, dom);
        await c.call(PROC_SET_SCHEDULER_PARAMETERS_FLAGS, w.array(params, writeTypedParam, SCHEDULER_PARAMETERS_MAX).uint(AFFECT_LIVE).toBuffer());
      });
    },
  };
}
