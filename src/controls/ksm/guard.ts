// The KSM control's safeguard: each knob range-checked, fractions rounded.
import { finite } from '../../numbers.js';
import type { KnobDecision } from '../control.js';
import { KSM_KNOBS, knobOf } from './knobs.js';

/** Range-check one KSM control (integers; fractional values are rounded, out of range refused). */
export function guardKsm(control: string, requested: unknown): KnobDecision {
  const knob = knobOf(control);
  const range = knob && KSM_KNOBS[knob];
  if (!range) return { control, requested, verdict: 'veto', value: null, reasons: [`unknown KSM control ${control}`] };
  const v = typeof requested === 'boolean' ? Number(requested) : finite(requested);
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
