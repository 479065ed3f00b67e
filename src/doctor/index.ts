// `ballast doctor`'s checks in the order they are shown: the hypervisor and its guests, then
// the host's kernel. Every host check always reports (ok, warn, fail or skip), so a script can
// look for an id without knowing the host; per-guest ids come on top of them.
import type { Config } from '../config/schema.js';
import { LIBVIRT_RUN_DIR } from '../host/guest-pid.js';
import { checkCgroup, checkKsm, checkPsi, checkSwap, checkThp, checkThpDefrag } from './checks.js';
import { checkGuestCgroup, guestChecks } from './guests.js';
import { probeLibvirt, probeLibvirtGlob, probeQmp, type Probe, type ProbeOptions } from './probe.js';
import { result, type CheckResult } from './types.js';

export { countByStatus, exitCodeOf, type CheckResult, type CheckStatus } from './types.js';

/** The ids every run reports, whatever the host. */
export const CHECK_IDS = ['hypervisor', 'guests', 'ksm', 'thp', 'thp_defrag', 'cgroup', 'swap', 'psi'] as const;

export interface DoctorOptions {
  /** Where /proc and /sys are read ('/': this host). */
  root?: string;
  timeoutMs?: number;
  clientFactory?: ProbeOptions['clientFactory'];
}

async function probe(config: Config, opts: ProbeOptions): Promise<Probe> {
  const hv = config.hypervisor;
  if (hv.driver === 'libvirt') return hv.socket_glob ? probeLibvirtGlob(hv, opts) : probeLibvirt(hv, opts);
  if (hv.driver === 'qmp') return probeQmp(hv, opts);
  return { check: result('hypervisor', 'skip', `hypervisor.driver = "${hv.driver}": the simulated host, nothing to reach`), guests: null, extra: [] };
}

export async function runDoctor(config: Config, opts: DoctorOptions = {}): Promise<CheckResult[]> {
  const root = opts.root ?? '/';
  const hv = config.hypervisor;
  const p = await probe(config, { root, timeoutMs: opts.timeoutMs ?? 3000, clientFactory: opts.clientFactory });
  const out: CheckResult[] = [p.check];
  if (p.guests === null) {
    out.push(result('guests', 'skip', hv.driver === 'sim' ? 'no real guests' : 'not checked: the hypervisor could not be asked'));
  } else if (p.guests.length === 0 && p.extra.length === 0) {
    out.push(result('guests', 'skip', 'no running guests to check'));
  } else {
    const names = p.guests.map((g) => g.name);
    out.push(
      result('guests', 'ok', `${names.length} running guest(s)${names.length ? `: ${names.slice(0, 10).join(', ')}${names.length > 10 ? ', …' : ''}` : ''}`),
    );
  }
  out.push(...p.extra);
  const driver = hv.driver === 'qmp' ? 'qmp' : 'libvirt';
  for (const g of p.guests ?? []) {
    out.push(...guestChecks(g, { statsPeriod: hv.stats_period, readOnly: hv.readonly, driver }));
    // Only cgroup.enabled writes these files: otherwise their modes do not matter.
    if (config.cgroup.enabled) out.push(await checkGuestCgroup(root, g, LIBVIRT_RUN_DIR));
  }
  out.push(
    await checkKsm(root, config.ksm.enabled),
    await checkThp(root),
    await checkThpDefrag(root),
    await checkCgroup(root, config.cgroup.enabled),
    await checkSwap(root),
    await checkPsi(root),
  );
  return out;
}
