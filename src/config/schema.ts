// The daemon's configuration: the TOML keys, their types, defaults and limits, as one zod
// schema. Every key is documented in examples/ballast.toml and docs/config.md; every error
// names the key it is about (see load.ts). Memory keys are in MiB for people; the engine works
// in KiB (toSafeguardConfig converts).
import { z } from 'zod';

import { CONTROL_SECTIONS } from '../controls/registry.js';
import { bool, interval, nonNegative, oneOf, percent, positive, positiveInt, section, str } from '../config-fields.js';

export const configSchema = z
  .strictObject(
    {
      hypervisor: section({
        /** libvirt for real hosts, qmp for QEMU processes without libvirt, sim for the built-in simulated host. */
        driver: oneOf(['libvirt', 'qmp', 'sim'] as const).default('libvirt'),
        /** libvirt connection URI. */
        uri: str().default('qemu:///system'),
        /** libvirtd socket path; empty: derived from the URI. */
        socket: str().default(''),
        /** libvirt: many daemons as one host, their sockets by an absolute path pattern (`*`, `?`
         *  within a segment; a KubeVirt node's virt-launchers, docs/kubevirt.md), rescanned at
         *  each collection; `uri` is asked first, the other qemu URI next. Empty: one daemon. */
        socket_glob: str().default(''),
        /** Open the connection read-only (observe, never set balloons). */
        readonly: bool().default(false),
        /** libvirt: where libvirtd keeps its QEMUs' <name>.pid (for ksm_shareable and cgroup
         *  limits). Empty: /run/libvirt/qemu for qemu:///system, none for other URIs. */
        qemu_pid_dir: str().default(''),
        /** Memory stats period asked of each guest's balloon driver, seconds (libvirt, qmp). */
        stats_period: positiveInt().default(5),
        /** Read each guest's /proc/pressure/memory through its guest agent every collection
         *  (psi_some_avg10, ... for policies and the safeguards; 3 agent calls per guest and
         *  collection; guests without an agent are retried once a minute, guests whose agent
         *  stopped answering after 10 s). libvirt: the agent
         *  libvirt knows; qmp: the socket `<name>.qga` beside the guest's QMP socket. */
        guest_psi: bool().default(false),
        /** qmp only: a directory whose every unix socket is a guest's QMP socket, except
         *  `<stem>.qga`: the guest agent of the guest whose QMP socket is `<stem>[.qmp|.sock]`. */
        qmp_dir: str().default('/run/ballast/qmp'),
        /** qmp only: "persistent" keeps a connection per guest open; "shared" opens one per
         *  collection and per action, held at most 300 ms, for sockets other tools open too
         *  (Proxmox VE's qm, pvestatd, API: docs/proxmox.md). */
        qmp_mode: oneOf(['persistent', 'shared'] as const).default('persistent'),
        /** qmp only, Proxmox VE: the VMs' configs (/etc/pve/qemu-server): each VM's name and
         *  floor (balloon, else memory; balloon: 0 is left alone); only <vmid>.qmp sockets in
         *  qmp_dir are guests. Needs qmp_mode = "shared". Empty: none. */
        pve_conf_dir: str().default(''),
        /** sim only: a built-in scenario name or a scenario file. */
        scenario: str().default('demo'),
        /** sim only: simulated seconds per real second. */
        time_scale: positive().default(1),
        /** sim only: random seed of the simulated world. */
        seed: z.number({ error: 'expected an integer' }).int({ error: 'expected an integer' }).default(1),
      }),
      /** Per-guest balloon floor (balloon_min), MiB, by guest name or UUID (libvirt). */
      guest_min_mib: z
        .record(z.string(), z.number({ error: 'expected a number of MiB >= 0' }).min(0, { error: 'expected a number of MiB >= 0' }), {
          error: 'expected a table of guest name = MiB',
        })
        .default({}),
      engine: section({
        /** Seconds between two collections of host and guest statistics (MOM: 5); 0.5 to 3600 (simulated seconds on the simulated host). */
        stats_interval: interval().default(5),
        /** Seconds between two policy evaluations (MOM: 10); 0.5 to 3600. */
        policy_interval: interval().default(10),
        /** While calm (no change to a guest for 3 policy cycles, no guest held below what it could have,
         *  no memory stall), collect every this many stats intervals, peeking at free memory and
         *  pressure in between (src/engine/calm.ts); 1: always every interval. */
        calm_stride: positiveInt().default(4),
        /** Samples kept per entity for StatAvg (MOM's sample-history-length). */
        history_length: positiveInt().default(10),
        /** Directory of *.policy files, concatenated in name order; reloaded on change. */
        policy_dir: str().default('/etc/ballast/policies'),
        /** Evaluation step budget (a runaway policy is stopped, the cycle applies nothing). */
        step_budget: positiveInt().optional(),
        /** Ask V8 to favour memory over speed (src/cli/heap.ts: the young generation stays at
         *  2 MB instead of up to 16-32 MB): 10-60 MB less RSS at 1,000 guests for more CPU. */
        small_heap: bool().default(true),
        /** Append every evaluation (its exact input as a `ballast policy eval` snapshot, and its
         *  result) to this file as JSON lines; empty: off. About 150 bytes per guest and sample. */
        record_file: str().default(''),
      }),
      safeguards: section({
        /** No balloon target below this, whatever the policy says (MiB). */
        min_guest_mib: nonNegative().default(128),
        /** Floor = guest used memory + this (MiB); used = balloon_cur - mem_usable (MemAvailable:
         *  page cache is not used memory) when the guest reports it, else balloon_cur - mem_unused. */
        headroom_mib: nonNegative().default(64),
        /** Page cache a balloon may take per policy cycle, % of balloon_max; "off": page cache
         *  counts as used memory and the floor stays above it. */
        cache_step_percent: z.union([percent(), z.literal('off')]).default(5),
        /** Largest balloon change per policy cycle, % of the guest's balloon_max. */
        max_step_percent: percent()
          .refine((v) => v > 0, { error: 'expected a percentage above 0 (up to 100)' })
          .default(10),
        /** Changes smaller than this % of balloon_max are skipped (no balloon chatter). */
        min_change_percent: percent().default(0.25),
        /** Changes smaller than this are skipped too (MiB). */
        min_change_mib: nonNegative().default(1),
        /** Cycles after an inflation during which a swap or fault spike undoes it. */
        rollback_window: z
          .number({ error: 'expected an integer >= 0' })
          .int({ error: 'expected an integer >= 0' })
          .min(0, { error: 'expected an integer >= 0' })
          .default(3),
        /** Guest swap-in rate that counts as a spike (KiB/s). */
        rollback_swap_in_kib_per_s: positive().default(4096),
        /** Guest major-fault rate that counts as a spike (faults/s). */
        rollback_major_faults_per_s: positive().default(1000),
        /** After a rollback, no inflation of that guest for this many seconds. */
        rollback_backoff: nonNegative().default(300),
        /** No inflation of a guest whose memory stall (PSI some avg10, where the driver reads
         *  it: hypervisor.guest_psi) is above this %; "off": not used. */
        psi_stop_percent: z.union([percent(), z.literal('off')]).default(10),
        /** A guest memory stall above this % after an inflation rolls it back; "off": not used. */
        rollback_psi_percent: z.union([percent(), z.literal('off')]).default(20),
        /** Page cache is left to the host's swap while the host (or memory domain) stalls
         *  on memory less than this % (PSI some avg60), has a quarter of its swap free and
         *  backs memory with transparent huge pages (a balloon would split them), and a guest
         *  that reports its free pages is not inflated then; "off": the
         *  balloon takes page cache whenever the policy asks. */
        cache_stall_percent: z.union([percent(), z.literal('off')]).default(2),
        /** ... and waits on I/O less than this % (PSI io some avg60: cold pages read back from a
         *  slow swap disk are I/O waits, not memory stalls); "off": I/O is not looked at. */
        cache_io_percent: z.union([percent(), z.literal('off')]).default(10),
        /** ... and its swap is fast: each page swapped in cost less than this many ms of I/O
         *  stall (host field swap_in_io_wait_ms: a hard disk ~6 ms, an SSD ~0.1 ms); "off":
         *  the swap's speed is not looked at. */
        slow_swap_in_ms: z.union([positive(), z.literal('off')]).default(1),
        /** The window (seconds) over which a guest's peak use is counted (0: the present use
         *  only, as MOM). */
        peak_window: nonNegative().max(86_400, { error: 'expected seconds from 0 to 86400' }).default(600),
        /** Seconds a guest's floor keeps that peak after a rollback: a periodic workload is
         *  squeezed below a peak at most once per peak_hold. */
        peak_hold: nonNegative()
          .max(7 * 86_400, { error: 'expected seconds from 0 to 604800' })
          .default(7200),
        /** A guest below its floor that pages out without paging back in or stalling carries
         *  that growth in its own swap, up to this % of balloon_max, before ballast raises it
         *  (what it pages out it does not touch; a swapping host would take the memory from the
         *  other guests blindly); 0: raised at once, as before. */
        quiet_growth_percent: percent().default(25),
        /** Seconds a guest is left alone after its balloon moved to something ballast did not
         *  set (another manager, an admin's virsh setmem); 0: not watched. */
        external_hold: nonNegative().max(86_400, { error: 'expected seconds from 0 to 86400' }).default(600),
      }),
      host: section({
        /** A cgroup whose memory budget is "the host" (e.g. /sys/fs/cgroup/machine.slice); empty: the whole host. */
        memory_domain: str().default(''),
        /** The older spelling of `[cgroup] enabled = true`; either turns cgroup limits on. */
        cgroup_limits: bool().default(false),
      }),
      alerts: section({
        /** Log an `alert` record when one starts and `alert_cleared` when it ends. */
        enabled: bool().default(true),
        /** low_available: host (or memory domain) mem_free under this % of mem_available. */
        available_percent: percent().default(20),
        /** high_usage: used memory above this % of mem_available. */
        usage_percent: percent().default(85),
        /** paging: host swap-in + swap-out above this many pages per second ... */
        paging_pages_per_s: nonNegative().default(10),
        /** ... in each of this many newest samples. */
        paging_samples: positiveInt().default(3),
        /** guest_leak: over leak_window, a guest's used memory (page cache not counted) is cut
         *  into this many parts and each part's low is kept ... */
        leak_samples: z
          .number({ error: 'expected an integer >= 2' })
          .int({ error: 'expected an integer >= 2' })
          .min(2, { error: 'expected an integer >= 2' })
          .default(10),
        /** ... the window, seconds: growth that lasts less and comes back is not a leak ... */
        leak_window: positive().default(1800),
        /** ... the lows rose in at least this % of the steps ... */
        leak_rising_percent: percent().default(80),
        /** ... and by at least this much in total (MiB). */
        leak_min_rise_mib: nonNegative().default(32),
        /** An alert clears after this many collections in a row without it (no flapping at a threshold). */
        clear_after: positiveInt().default(3),
        /** map_count: a process's memory mappings above this % of vm.max_map_count (critical
         *  from 95%): past the limit its next mmap fails and it is usually killed. */
        map_count_percent: percent()
          .refine((v) => v > 0, { error: 'expected a percentage above 0 (up to 100)' })
          .default(80),
      }),
      // Each control module's own table ([shutdown] for the balloon, [ksm], [cgroup], [cputune]).
      ...CONTROL_SECTIONS,
      api: section({
        /** The JSON API's unix socket (mode 0600: the socket's permissions are its access control); empty: none. */
        socket: str().default('/run/ballast/api.sock'),
        /** Also serve the API on TCP, HOST:PORT; every request then needs a bearer token. Empty: no TCP. */
        listen: str().default(''),
        /** File holding the read-write bearer token (TCP listeners). */
        token_file: str().default(''),
        /** File holding a read-only bearer token (TCP listeners): GET routes, /metrics, the dashboard. */
        read_token_file: str().default(''),
        /** Host names (no port), besides localhost, 127.x.x.x and [::1], that tokenless loopback
         *  reads on the dashboard's and /metrics' listeners may name in their Host header (e.g. the
         *  host's own name when /etc/hosts maps it to 127.0.1.1): a guard against DNS rebinding. */
        allowed_hosts: z.array(str(), { error: 'expected a list of host names' }).default([]),
        /** Largest request body accepted, bytes (a policy is sent as a body). */
        max_body_bytes: positiveInt()
          .max(64 * 1024 * 1024, { error: 'expected at most 67108864 bytes' })
          .default(1024 * 1024),
      }),
      metrics: section({
        /** Serve /metrics (Prometheus) on this HOST:PORT too; loopback clients need no token, others the read token. Empty: only on the API socket. */
        listen: str().default(''),
      }),
      dashboard: section({
        /** Serve the dashboard (and /metrics, and the read-only API) on this HOST:PORT; loopback clients need no token, others the read token. Empty: only on the API socket. */
        listen: str().default(''),
      }),
      mom_rpc: section({
        /** Serve MOM's XML-RPC (what oVirt's vdsm calls) on this unix socket, e.g. /run/vdsm/mom-vdsm.sock; empty: off. */
        socket: str().default(''),
        /** Owner of that socket, "USER" or "USER:GROUP" (names or numbers), e.g. "vdsm:kvm" so
         *  that vdsm, which does not run as root, may connect; empty: the daemon's user. */
        socket_owner: str().default(''),
        /** ... or on 127.0.0.1 at this TCP port (MOM's rpc-port); 0: off. */
        port: z
          .number({ error: 'expected a port (0 to 65535)' })
          .int({ error: 'expected a port (0 to 65535)' })
          .min(0, { error: 'expected a port (0 to 65535)' })
          .max(65535, { error: 'expected a port (0 to 65535)' })
          .default(0),
      }),
      log: section({
        format: oneOf(['auto', 'json', 'text'] as const).default('auto'),
        level: oneOf(['debug', 'info', 'warn', 'error'] as const).default('info'),
      }),
    },
    { error: 'expected a table' },
  )
  .transform((c) => {
    // host.cgroup_limits is kept as an alias of [cgroup] enabled.
    if (c.host.cgroup_limits) c.cgroup.enabled = true;
    return c;
  });

export type Config = z.infer<typeof configSchema>;

/** The configuration with every default: what an empty file means. */
export function defaultConfig(): Config {
  return configSchema.parse({});
}
