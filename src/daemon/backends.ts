// What the loop runs against, built from the config: a hypervisor driver, host sources, and
// (for the simulator) the simulated clock. The control modules build their own backends from
// what the driver offers. Drivers are imported lazily so a build without one still runs the
// others and says clearly what is missing.
import type { Config } from '../config/schema.js';
import type { Logger } from '../log/logger.js';
import type { HostSource, Hypervisor } from '../types.js';

export interface Backends {
  hypervisor: Hypervisor;
  hostSources: HostSource[];
  /** Simulated hosts: the world's clock (seconds) and how to move it. */
  sim?: {
    now: () => number;
    advance: (seconds: number) => void;
    /** Simulated seconds per real second. */
    timeScale: number;
    /** The world itself, for views (SimWorld). */
    world: unknown;
  };
  describe: string;
}

export class BackendError extends Error {}

function isModuleMissing(err: unknown): boolean {
  const code = (err as { code?: string }).code;
  return code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND';
}

export interface BuildOptions {
  /** QEMU pids of the current guests (for the host's ksm_shareable). */
  guestPids?: () => readonly number[];
}

export async function buildSimBackends(cfg: Config['hypervisor']): Promise<Backends> {
  let simMod: typeof import('../hypervisor/sim/index.js');
  let scenarios: typeof import('../sim/scenarios.js');
  let worldMod: typeof import('../sim/world.js');
  try {
    [simMod, scenarios, worldMod] = await Promise.all([import('../hypervisor/sim/index.js'), import('../sim/scenarios.js'), import('../sim/world.js')]);
  } catch (err) {
    if (isModuleMissing(err)) throw new BackendError(`hypervisor.driver = "sim": the simulator is not part of this build (${(err as Error).message})`);
    throw err;
  }
  let spec;
  try {
    spec = scenarios.loadScenario(cfg.scenario);
  } catch (err) {
    throw new BackendError(`hypervisor.scenario: ${(err as Error).message}`);
  }
  const world = new worldMod.SimWorld(spec, cfg.seed);
  return {
    hypervisor: new simMod.SimHypervisor(world),
    hostSources: [simMod.simHostSource(world)],
    sim: { now: () => world.now, advance: (s) => world.advance(s), timeScale: cfg.time_scale, world },
    describe: `sim scenario ${cfg.scenario} (seed ${cfg.seed}, ${spec.guests.length} guests, x${cfg.time_scale})`,
  };
}

export async function buildLibvirtBackends(config: Config, logger: Logger, opts: BuildOptions = {}): Promise<Backends> {
  const cfg = config.hypervisor;
  let lv: typeof import('../hypervisor/libvirt/index.js');
  try {
    lv = await import('../hypervisor/libvirt/index.js');
  } catch (err) {
    if (isModuleMissing(err))
      throw new BackendError(
        `hypervisor.driver = "libvirt": the libvirt driver is not part of this build (${(err as Error).message}); use driver = "sim" to try ballast without it`,
      );
    throw err;
  }
  const log = logger.child({ component: 'libvirt' });
  const options = {
    uri: cfg.uri,
    socketPath: cfg.socket || undefined,
    readOnly: cfg.readonly,
    statsPeriodSec: cfg.stats_period,
    guestPsi: cfg.guest_psi,
    qemuPidDir: cfg.qemu_pid_dir || undefined,
    balloonMin: Object.fromEntries(Object.entries(config.guest_min_mib).map(([k, v]) => [k, Math.round(v * 1024)])),
    log: (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => log.log(level, 'driver', { msg, ...fields }),
  };
  let hypervisor: Hypervisor;
  if (!cfg.socket_glob) hypervisor = new lv.LibvirtHypervisor(options);
  else {
    // Many daemons (a KubeVirt node's virt-launchers), one driver per socket: docs/kubevirt.md.
    if (cfg.socket) throw new BackendError('hypervisor.socket and hypervisor.socket_glob: set one of them');
    const multi = await import('../hypervisor/libvirt/multi.js');
    try {
      hypervisor = new multi.MultiLibvirtHypervisor({ ...options, socketGlob: cfg.socket_glob });
    } catch (err) {
      throw new BackendError(`hypervisor.socket_glob: ${(err as Error).message}`);
    }
  }
  return {
    hypervisor,
    ...(await realHost(config, opts)),
    describe: `libvirt ${cfg.uri}${cfg.socket ? ` via ${cfg.socket}` : ''}${cfg.socket_glob ? ` on every socket matching ${cfg.socket_glob}` : ''}${cfg.readonly ? ' (read-only)' : ''}`,
  };
}

/** Host side shared by the real drivers: /proc sources (or a memory domain). */
async function realHost(config: Config, opts: BuildOptions): Promise<Omit<Backends, 'hypervisor' | 'describe'>> {
  let host: typeof import('../host/index.js');
  try {
    host = await import('../host/index.js');
  } catch (err) {
    if (isModuleMissing(err)) throw new BackendError(`the host sources are not part of this build (${(err as Error).message})`);
    throw err;
  }
  const domain = config.host.memory_domain ? { dir: config.host.memory_domain } : undefined;
  return {
    hostSources: host.hostSources({ domain, guestPids: opts.guestPids }),
  };
}

export async function buildQmpBackends(config: Config, opts: BuildOptions = {}, logger?: Logger): Promise<Backends> {
  const cfg = config.hypervisor;
  let qmp: typeof import('../hypervisor/qmp/index.js');
  try {
    qmp = await import('../hypervisor/qmp/index.js');
  } catch (err) {
    if (isModuleMissing(err)) throw new BackendError(`hypervisor.driver = "qmp": the QMP driver is not part of this build (${(err as Error).message})`);
    throw err;
  }
  const log = logger?.child({ component: 'qmp' });
  let hypervisor: Hypervisor;
  try {
    hypervisor = new qmp.QmpHypervisor({
      socketDir: cfg.qmp_dir,
      statsPeriodS: cfg.stats_period,
      guestPsi: cfg.guest_psi,
      mode: cfg.qmp_mode,
      pveConfigDir: cfg.pve_conf_dir || undefined,
      log: log && ((level, msg, fields) => log.log(level, 'driver', { msg, ...fields })),
    });
  } catch (err) {
    throw new BackendError(`hypervisor: ${(err as Error).message}`);
  }
  return {
    hypervisor,
    ...(await realHost(config, opts)),
    describe: `qmp sockets in ${cfg.qmp_dir} (${cfg.qmp_mode})${cfg.pve_conf_dir ? `, Proxmox VE configs in ${cfg.pve_conf_dir}` : ''}`,
  };
}

export function buildBackends(config: Config, logger: Logger, opts: BuildOptions = {}): Promise<Backends> {
  switch (config.hypervisor.driver) {
    case 'sim':
      return buildSimBackends(config.hypervisor);
    case 'qmp':
      return buildQmpBackends(config, opts, logger);
    default:
      return buildLibvirtBackends(config, logger, opts);
  }
}
