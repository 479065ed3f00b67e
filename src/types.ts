// Shapes shared by every part of ballast. Memory is KiB everywhere, as in MOM's namespace.
// A driver or source fills these; the engine and the policy never know which one did.

/** One sample of an entity's statistics: MOM field name -> value (KiB for memory). */
export type Stats = Record<string, number | null>;

/** Properties of an entity that do not change between samples (name, uuid, pid, ...). */
export type Props = Record<string, string | number>;

/** What a hypervisor driver reports for one running guest in one collection. */
export interface GuestSample {
  /** Stable key of the guest for this driver (libvirt: UUID; sim: name). */
  id: string;
  name: string;
  props: Props;
  /** balloon_cur, balloon_max, balloon_min, mem_available, mem_unused, mem_free, swap_in,
   *  swap_out, major_fault, minor_fault, rss, vcpu_count ... Missing or unreadable: null. */
  stats: Stats;
  /** Set when this sample is not fresh (driver error, stats not yet available): the reason. */
  stale?: string;
}

export type LifecycleKind = 'started' | 'stopped' | 'destroyed' | 'crashed' | 'defined' | 'undefined' | 'other';

export interface LifecycleEvent {
  kind: LifecycleKind;
  id: string;
  name: string;
  detail?: string;
}

/** One interface for every hypervisor driver: libvirt, QMP, sim. */
export interface Hypervisor {
  readonly name: string;
  connect(): Promise<void>;
  close(): Promise<void>;
  /** Samples of all running guests, in one batch where the driver can. A guest that vanished
   *  between listing and reading is left out; one that could not be read comes back stale. */
  collect(): Promise<GuestSample[]>;
  /** Ask the guest's balloon to make the guest's memory `targetKiB`. */
  setBalloon(id: string, targetKiB: number): Promise<void>;
  /** Lifecycle events, where the driver has them. Returns an unsubscribe function. */
  onEvent?(listener: (e: LifecycleEvent) => void): () => void;
  /** The driver's link to its hypervisor, for the API and metrics; absent where there is none to lose (the simulator). */
  connection?(): HypervisorConnection;
  /** Mechanisms beyond the balloon that only some drivers can carry out. A control module
   *  that needs one asks for it here and never names a driver. */
  readonly capabilities?: HypervisorCapabilities;
}

/** Optional mechanisms a driver offers; each absent where the driver cannot do it. */
export interface HypervisorCapabilities {
  /** A guest's vCPU quota and period (libvirt scheduler parameters, cgroup cpu.max, the simulator). */
  cpuTune?: CpuTuneCapability;
  /** virtio-mem devices: memory plugged and unplugged in whole blocks. */
  memoryDevices?: MemoryDeviceCapability;
  /** Where its guests' KSM and memory limits are: the host kernel's (/sys/kernel/mm/ksm, each
   *  QEMU's cgroup) for the real drivers, the simulated host's own KSM for the simulator.
   *  Absent: that control has nothing to act on (never a fallback to the real host's). */
  ksm?: KsmBackend;
  cgroupLimits?: CgroupBackend;
  /** Asking a guest's kernel to reclaim memory itself, through its guest agent. */
  guestReclaim?: GuestReclaimCapability;
}

export interface GuestReclaimCapability {
  /** Ask the guest to reclaim `kib` KiB (its coldest pages first); 'short' when it found less.
   *  Throws with kind 'unsupported' for a guest that cannot be asked (no agent, no memory.reclaim). */
  reclaim(guestId: string, kib: number): Promise<'done' | 'short'>;
}

/** libvirt's units: µs of CPU per vCPU in each period of µs; quota -1 is no limit. */
export interface CpuTune {
  quota: number | null;
  period: number | null;
}

export interface CpuTuneCapability {
  read(guestId: string): Promise<CpuTune>;
  write(guestId: string, tune: Partial<CpuTune>): Promise<void>;
}

/** One virtio-mem device of a guest, sizes in KiB. */
export interface MemoryDevice {
  /** The device's name for resize: libvirt's alias (e.g. "virtiomem0"), QEMU's QOM id. */
  id: string;
  /** Memory plugged now (libvirt `<current>`, QEMU `size`). */
  size: number;
  /** What was last asked for (libvirt `<requested>`, QEMU `requested-size`). */
  requested: number;
  /** Plug granularity: every requested size is a multiple of it. */
  block: number;
  /** The most the device can hold (libvirt `<size>`, QEMU's memdev size). */
  max: number;
}

export interface MemoryDeviceCapability {
  /** The guest's virtio-mem devices; [] when it has none. */
  list(guestId: string): Promise<MemoryDevice[]>;
  /** Ask one device to plug or unplug to `requestedKiB` (a multiple of its block, at most its max).
   *  Returns once the hypervisor took the request; the guest plugs or unplugs over time. */
  resize(guestId: string, deviceId: string, requestedKiB: number): Promise<void>;
}

export interface HypervisorConnection {
  /** Every socket the driver needs is open (libvirtd's; each guest's QMP socket). */
  connected: boolean;
  /** Connections re-established after a loss, since the daemon started. */
  reconnects: number;
}

/** A source of host facts (one per kernel file or subsystem, like node_exporter collectors). */
export interface HostSource {
  readonly name: string;
  /** Cheap and free of state between reads (free memory, pressure): read between two
   *  collections while the loop is calm, to tell whether the host moved (Engine.peek). */
  readonly watch?: boolean;
  collect(): Promise<Stats>;
}

/** The KSM knobs a policy can set (MOM's control names without the ksm_ prefix). */
export interface KsmSettings {
  run: number;
  pages_to_scan: number;
  sleep_millisecs: number;
  merge_across_nodes: number;
}

/** Where KSM lives: /sys/kernel/mm/ksm on a real host, the simulator's model otherwise. */
export interface KsmBackend {
  /** Current ksm_* host fields (ksm_run, ksm_pages_shared, ...). */
  read(): Promise<Stats>;
  /** Write only the given settings. Rejects with a clear message on EPERM / read-only. */
  write(settings: Partial<KsmSettings>): Promise<void>;
}

/** Per-guest memory limits in KiB (cgroup memory.high / memory.max). null removes the limit. */
export interface MemLimits {
  high?: number | null;
  max?: number | null;
}

export interface CgroupBackend {
  setLimits(guest: GuestSample, limits: MemLimits): Promise<void>;
}
