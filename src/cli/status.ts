// `ballast status`: a compact summary of a running daemon, from its API socket.
import type { Command } from 'commander';
import { apiCall, DEFAULT_API_SOCKET } from '../api/client.js';
import type { GuestState, HealthState, HostState } from '../api/port.js';
import type { ActionRecord } from '../engine/engine.js';
import type { AlertEvent } from '../host/alerts.js';
import { printable } from '../printable.js';

const mib = (kib: unknown) => (typeof kib === 'number' ? `${Math.round(kib / 1024)}` : '?');

export function formatStatus(h: HealthState, host: HostState, guests: GuestState[], actions: ActionRecord[], alerts: AlertEvent[]): string {
  const s = host.stats;
  const lines = [
    `ballast ${h.version}: ${h.paused ? 'PAUSED (observe only)' : h.status} — ${h.hypervisor}, cycle ${h.cycle}${h.calm ? ' (calm: nothing moved, collecting less often)' : ''}${h.policyLoaded ? '' : ', NO POLICY'}`,
    ...h.problems.map((p) => `  problem: ${p}`),
    `host: ${mib(s.mem_free)} MiB free of ${mib(s.mem_available)} MiB, swap used ${mib(s.swap_usage)} MiB, KSM sharing ${typeof s.ksm_pages_sharing === 'number' ? mib(s.ksm_pages_sharing * 4) : '?'} MiB`,
    `guests (${guests.length}):`,
  ];
  for (const g of guests) {
    const cur = g.stats.balloon_cur;
    const used = typeof cur === 'number' && typeof g.stats.mem_unused === 'number' ? cur - g.stats.mem_unused : null;
    const r = g.balloonReturn;
    const note =
      (r ? `  inflations returned ${mib(r.returnedKiB)} MiB (expected ${mib(r.expectedKiB)}, ballooned ${mib(r.inflatedKiB)})` : '') +
      (g.movedByOther
        ? `  balloon set to ${mib(g.movedByOther.to)} MiB by another manager at t=${Math.round(g.movedByOther.at)}: left alone until t=${Math.round(g.movedByOther.until)}`
        : '') +
      (g.stale ? `  stale: ${g.stale}` : '');
    lines.push(
      `  ${g.name.padEnd(20)} balloon ${mib(cur).padStart(6)} / ${mib(g.stats.balloon_max).padStart(6)} MiB  target ${mib(g.lastTarget).padStart(6)}  used ${mib(used).padStart(6)}${note}`,
    );
  }
  lines.push(alerts.length ? 'alerts:' : 'alerts: none');
  for (const a of alerts) lines.push(`  ${a.severity}: ${a.message}`);
  const recent = actions.slice(-5);
  lines.push(recent.length ? 'last actions:' : 'last actions: none');
  for (const a of recent) lines.push(`  cycle ${a.cycle} ${a.entity} ${a.control} ${a.from ?? '?'} -> ${a.to ?? '-'} ${a.result} (${a.reasons.join('; ')})`);
  // Names, reasons and messages come from guests and the daemon: shown, never obeyed.
  return lines.map(printable).join('\n');
}

export function register(program: Command): void {
  program
    .command('status')
    .description('summary of a running daemon (host, guests, alerts, last actions) from its API socket')
    .option('--api <path>', "the daemon's API socket", DEFAULT_API_SOCKET)
    .option('--json', 'print the health record as JSON')
    .action(async (o: { api: string; json?: boolean }) => {
      const [h, host, guests, actions, alerts] = await Promise.all([
        apiCall(o.api, 'GET', 'health'),
        apiCall(o.api, 'GET', 'host'),
        apiCall(o.api, 'GET', 'guests'),
        apiCall(o.api, 'GET', 'actions'),
        apiCall(o.api, 'GET', 'alerts'),
      ]);
      process.stdout.write(
        o.json
          ? `${JSON.stringify(h, null, 2)}\n`
          : `${formatStatus(h as HealthState, host as HostState, guests as GuestState[], actions as ActionRecord[], alerts as AlertEvent[])}\n`,
      );
    });
}
