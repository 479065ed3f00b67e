// From the operator's units (MiB, percent) to the engine's (KiB, fractions).
import type { SafeguardConfig } from '../controls/balloon/guard.js';
import type { AlertThresholds } from '../host/alerts.js';
import type { Config } from '../config/schema.js';

export function toSafeguardConfig(c: Config): SafeguardConfig {
  const s = c.safeguards;
  return {
    minGuestKiB: Math.round(s.min_guest_mib * 1024),
    headroomKiB: Math.round(s.headroom_mib * 1024),
    maxStepFraction: s.max_step_percent / 100,
    cacheStepFraction: s.cache_step_percent === 'off' ? null : s.cache_step_percent / 100,
    cacheStallPercent: s.cache_stall_percent === 'off' ? null : s.cache_stall_percent,
    cacheIoPercent: s.cache_io_percent === 'off' ? null : s.cache_io_percent,
    slowSwapInMs: s.slow_swap_in_ms === 'off' ? null : s.slow_swap_in_ms,
    minChangeFraction: s.min_change_percent / 100,
    minChangeKiB: Math.round(s.min_change_mib * 1024),
    rollbackWindow: s.rollback_window,
    rollbackSwapInKiBPerS: s.rollback_swap_in_kib_per_s,
    rollbackMajorFaultsPerS: s.rollback_major_faults_per_s,
    rollbackBackoffS: s.rollback_backoff,
    psiStopPercent: s.psi_stop_percent === 'off' ? null : s.psi_stop_percent,
    rollbackPsiPercent: s.rollback_psi_percent === 'off' ? null : s.rollback_psi_percent,
    peakWindowS: s.peak_window,
    peakHoldS: s.peak_hold,
    quietGrowthFraction: s.quiet_growth_percent / 100,
    externalHoldS: s.external_hold,
  };
}

export function toAlertThresholds(c: Config): AlertThresholds {
  const a = c.alerts;
  return {
    availableFraction: a.available_percent / 100,
    usageFraction: a.usage_percent / 100,
    pagingPagesPerSec: a.paging_pages_per_s,
    pagingSamples: a.paging_samples,
    leakSamples: a.leak_samples,
    leakWindowS: a.leak_window,
    leakRisingShare: a.leak_rising_percent / 100,
    leakMinRiseKiB: Math.round(a.leak_min_rise_mib * 1024),
    // swap_in / swap_out are per-collection deltas.
    intervalS: c.engine.stats_interval,
    mapCountFraction: a.map_count_percent / 100,
  };
}
