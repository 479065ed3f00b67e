// The KSM knobs a policy sets, in one table: MOM's control name is `ksm_` + the sysfs file's
// name, and the range ballast accepts for it. The kernel takes any unsigned int for the two
// rates; these bounds only refuse values no sane policy means (0 pages, hours of sleep).
import type { KsmSettings } from '../../types.js';

export interface KnobRange {
  min: number;
  max: number;
  /** The only values allowed, when they are few. */
  set?: readonly number[];
}

export const KSM_KNOBS: Readonly<Record<keyof KsmSettings, KnobRange>> = {
  run: { min: 0, max: 2, set: [0, 1, 2] },
  pages_to_scan: { min: 1, max: 100_000 },
  sleep_millisecs: { min: 1, max: 60_000 },
  merge_across_nodes: { min: 0, max: 1, set: [0, 1] },
};

export type KsmControl = `ksm_${keyof KsmSettings}`;

/** The policy controls, in the table's order. */
export const KSM_CONTROLS: readonly KsmControl[] = (Object.keys(KSM_KNOBS) as (keyof KsmSettings)[]).map((k) => `ksm_${k}` as const);

/** The sysfs knob of a control, or undefined when it is not a KSM control. */
export function knobOf(control: string): keyof KsmSettings | undefined {
  const k = control.startsWith('ksm_') ? control.slice(4) : '';
  return k in KSM_KNOBS ? (k as keyof KsmSettings) : undefined;
}
