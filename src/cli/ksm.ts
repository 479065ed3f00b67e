// `ballast ksm status`: KSM on this host as the kernel reports it (seed 003's process and
// container KSM included): ksmd state, page counters, general profit, merging per cgroup and
// per process with the kernel's cost rule, and each merging process's mappings.
import type { Command } from 'commander';
import { formatKsmStatus, gatherKsmStatus } from '../host/ksm-status.js';

export function register(program: Command): void {
  const ksm = program.command('ksm').description('Kernel samepage merging on this host');
  ksm
    .command('status')
    .description(
      'ksmd state, pages shared/sharing/unshared/volatile, full scans, general profit; merging by cgroup (service, container, VM) and by process, rmap items per merged page (KSM costs more than it saves above 64), mappings against vm.max_map_count',
    )
    .option('--json', 'machine-readable output')
    .option('--top <n>', 'show at most this many processes', '20')
    .option('--all', 'also list processes KSM does not touch')
    .option('--root <dir>', 'read /proc and /sys under this directory (for recorded trees)', '/')
    .action(async (opts: { json?: boolean; top: string; all?: boolean; root: string }) => {
      const top = Number(opts.top);
      if (!Number.isInteger(top) || top < 0) throw new Error(`--top must be a non-negative integer, not "${opts.top}"`);
      const status = await gatherKsmStatus(opts.root);
      if (opts.json) {
        const shown = status.processes.filter((p) => opts.all || p.merging_pages > 0 || (p.rmap_items ?? 0) > 0).slice(0, top);
        process.stdout.write(JSON.stringify({ ...status, processes: shown }, null, 2) + '\n');
      } else process.stdout.write(formatKsmStatus(status, { top, all: opts.all }));
    });
}
