// CPU tuning's safeguard: the ranges libvirt's QEMU driver accepts. A quota of -1 means no
// limit; MOM's policies compute fractional values, which are rounded.
import type { KnobDecision } from '../control.js';

/** µs: libvirt refuses a period outside 1 ms..1 s and a quota under 1 ms. */
export const PERIOD_MIN = 1000;
export const PERIOD_MAX = 1_000_000;
export const QUOTA_MIN = 1000;
export const QUOTA_MAX = 17_592_186_044_415;

export const CPUTUNE_CONTROLS = ['vcpu_quota', 'vcpu_period'] as const;

export function guardCpuTune(control: string, requested: unknown): KnobDecision {
  const v = typeof requested === 'number' && Number.isFinite(requested) ? requested : null;
  if (v === null) return { control, requested, verdict: 'veto', value: null, reasons: [`not a finite number: ${JSON.stringify(requested)}`] };
  const r = Math.round(v);
  const reasons = ['policy request', ...(r !== v ? [`rounded ${v} to ${r}`] : [])];
  if (control === 'vcpu_quota') {
    if (r < 0) return { control, requested, verdict: 'apply', value: -1, reasons: [...reasons, 'no CPU limit'] };
    if (r < QUOTA_MIN || r > QUOTA_MAX)
      return { control, requested, verdict: 'veto', value: null, reasons: [`${r} out of range (-1 or ${QUOTA_MIN}..${QUOTA_MAX} µs)`] };
    return { control, requested, verdict: 'apply', value: r, reasons };
  }
  if (control === 'vcpu_period') {
    if (r < PERIOD_MIN || r > PERIOD_MAX)
      return { control, requested, verdict: 'veto', value: null, reasons: [`${r} out of range (${PERIOD_MIN}..${PERIOD_MAX} µs)`] };
    return { control, requested, verdict: 'apply', value: r, reasons };
  }
  return { control, requested, verdict: 'veto', value: null, reasons: [`unknown CPU tuning control ${control}`] };
}
