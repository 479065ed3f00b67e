// The kernel's pressure stall information format (/proc/pressure/memory and io, a cgroup's
// memory.pressure), read on the host and, through the guest agent, inside guests:
//   some avg10=0.12 avg60=0.05 avg300=0.01 total=123456
//   full avg10=0.00 avg60=0.00 avg300=0.00 total=2345
// Fields: psi_some_avg10, psi_some_avg60, psi_full_avg10, psi_full_avg60 (percent of time).
import { finite } from './numbers.js';
import type { Stats } from './types.js';

/** The host's memory stall (some, percent) over `avg`: its memory domain's own where cgroup v2
 *  gives one (domain_psi_*), else the whole host's; null when neither is known. */
export function hostMemoryStall(host: Stats, avg: 'avg10' | 'avg60'): number | null {
  return finite(host[`domain_psi_some_${avg}`]) ?? finite(host[`psi_some_${avg}`]);
}

/** `prefix` names the fields: psi (memory) or psi_io (/proc/pressure/io); each is null until read. */
export function parsePsi(text: string, prefix = 'psi'): Stats {
  const out: Stats = {};
  for (const kind of ['some', 'full']) for (const avg of ['avg10', 'avg60']) out[`${prefix}_${kind}_${avg}`] = null;
  for (const line of text.split('\n')) {
    const m = /^(some|full)\s+(.*)$/.exec(line.trim());
    if (!m) continue;
    for (const part of m[2]!.split(/\s+/)) {
      const [k, v] = part.split('=');
      if ((k === 'avg10' || k === 'avg60') && v !== undefined && v !== '' && Number.isFinite(Number(v))) {
        out[`${prefix}_${m[1]}_${k}`] = Number(v);
      }
    }
  }
  return out;
}

/** The stall totals (microseconds since boot) of the `some` and `full` lines; null where absent. */
export function parsePsiTotals(text: string | null): { some: number | null; full: number | null } {
  const out = { some: null as number | null, full: null as number | null };
  for (const line of (text ?? '').split('\n')) {
    const m = /^(some|full) .*total=(\d+)/.exec(line.trim());
    if (m) out[m[1] as 'some' | 'full'] = Number(m[2]);
  }
  return out;
}
