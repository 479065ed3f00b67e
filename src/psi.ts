// The kernel's pressure stall information format (/proc/pressure/memory, a cgroup's
// memory.pressure), read on the host and, through the guest agent, inside guests:
//   some avg10=0.12 avg60=0.05 avg300=0.01 total=123456
//   full avg10=0.00 avg60=0.00 avg300=0.00 total=2345
// Fields: psi_some_avg10, psi_some_avg60, psi_full_avg10, psi_full_avg60 (percent of time).
import type { Stats } from './types.js';

export const PSI_NULLS: Stats = { psi_some_avg10: null, psi_some_avg60: null, psi_full_avg10: null, psi_full_avg60: null };

/** `prefix` names the fields: psi (memory, MOM-style names kept) or psi_io (/proc/pressure/io). */
export function parsePsi(text: string, prefix = 'psi'): Stats {
  const out: Stats = prefix === 'psi' ? { ...PSI_NULLS } : Object.fromEntries(Object.keys(PSI_NULLS).map((k) => [k.replace('psi', prefix), null]));
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
