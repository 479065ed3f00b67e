// `ballast ksm status`: KSM on this host as the kernel reports it (seed 003's process and
// container KSM included): ksmd state, page counters, general profit, per-process merging.
import type { Command } from 'commander';
import { formatKsmStatus, gatherKsmStatus } from '../host/ksm-status.js';

export function register(program: Command): void {
  const ksm = program.command('ksm').description('Kernel samepage merging on this host');
  ksm
    .command('status')
    .description('ksmd state, pages shared/sharing/unshared/volatile, full scans, general profit, per-process merging pages')
    .option('--json', 'machine-readable output')
    .option('--top <n>', 'show at most this many processes', '20')
    .option('--all', 'also list processes with no merged pages')
    .option('--root <dir>', 'read /proc and /sys under this directory (for recorded trees)', '/')
    .action(async (opts: { json?: boolean; top: string; all?: boolean; root: string }) => {
      const top = Number(opts.top);
      if (!Number.isInteger(top) || top < 0) throw new Error(`--top must be a non-negative integer, not "${opts.top}"`);
      const status = await gatherKsmStatus(opts.root);
      if (opts.json) {
        const shown = status.processes.filter((p) => opts.all || p.merging_pages > 0).slice(0, top);
        process.stdout.write(JSON.stringify({ ...status, processes: shown }, null, 2) + '\n');
      } else process.stdout.write(formatKsmStatus(status, { top, all: opts.all }));
    });
}
