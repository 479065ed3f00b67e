// The KSM control's safeguard: each knob range-checked, fractions rounded.
import type { KnobDecision } from '../control.js';

const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

/** Valid values of each KSM knob. The kernel takes any unsigned int for the two rates; these
 *  bounds only refuse values no sane policy means (0 pages, hours of sleep). */
export const KSM_RANGES: Record<string, { min: number; max: number; set?: number[] }> = {
  ksm_run: { min: 0, max: 2, set: [0, 1, 2] },
  ksm_pages_to_scan: { min: 1, max: 100_000 },
  ksm_sleep_millisecs: { min: 1, max: 60_000 },
  ksm_merge_across_nodes: { min: 0, max: 1, set: [0, 1] },
};

/** Range-check one KSM control (integers; fractional values are rounded, out of range refused). */
export function guardKsm(control: string, requested: unknown): KnobDecision {
  const range = KSM_RANGES[control];
  if (!range) return { control, requested, verdict: 'veto', value: null, reasons: [`unknown KSM control ${control}`] };
  const v = typeof requested === 'boolean' ? Number(requested) : num(requested);
  if (v === null) return { control, requested, verdict: 'veto', value: null, reasons: [`not a finite number: ${JSON.stringify(requested)}`] };
  const r = Math.round(v);
  const reasons = r !== v ? [`rounded ${v} to ${r}`] : [];
  const ok = range.set ? range.set.includes(r) : r >= range.min && r <= range.max;
  if (!ok) {
    const allowed = range.set ? range.set.join(', ') : `${range.min}..${range.max}`;
    return { control, requested, verdict: 'veto', value: null, reasons: [`${r} out of range (${allowed})`] };
  }
  return { control, requested, verdict: 'apply', value: r, reasons: ['policy request', ...reasons] };
}
