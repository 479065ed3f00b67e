// From the operator's units (MiB, percent) to the engine's (KiB, fractions).
import type { SafeguardConfig } from '../engine/safeguards.js';
import type { Config } from './schema.js';

export function toSafeguardConfig(c: Config): SafeguardConfig {
  const s = c.safeguards;
  return {
    minGuestKiB: Math.round(s.min_guest_mib * 1024),
    headroomKiB: Math.round(s.headroom_mib * 1024),
    maxStepFraction: s.max_step_percent / 100,
    minChangeFraction: s.min_change_percent / 100,
    minChangeKiB: Math.round(s.min_change_mib * 1024),
    rollbackWindow: s.rollback_window,
    rollbackSwapInKiBPerS: s.rollback_swap_in_kib_per_s,
    rollbackMajorFaultsPerS: s.rollback_major_faults_per_s,
    rollbackBackoffS: s.rollback_backoff,
  };
}
