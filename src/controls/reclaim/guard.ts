// The reclaim control's safeguard: a guest is asked to reclaim its own page cache only where the
// host gets the memory back whole (the guest reports free pages), a cycle's step at a time
// (the balloon's cache step), never below a small cache of its own, and not again for a while
// after the guest refaulted what it gave up or found nothing more to give. Pure: the same
// inputs give the same decision and the reasons say why.
import type { History } from '../../engine/history.js';
import { finite } from '../../numbers.js';
import { rollbackReason } from '../balloon/guard.js';
import type { GuardDecision } from '../control.js';
import { fmtKiB, type SafeguardConfig } from '../floor.js';

/** Page cache a guest keeps whatever a policy asks: its own binaries and libraries (KiB). */
export const KEEP_CACHE_KIB = 16 * 1024;

export interface ReclaimState {
  /** The last reclaim asked for, watched for refaults over the rollback window. */
  last?: { cycle: number; at: number; kib: number };
  /** No reclaim before this time (s), after refaults. */
  holdUntil?: number;
  /** A reclaim came up short (or failed) with this much cache: not asked again below it plus a
   *  step until `until` (s). */
  short?: { cache: number; until: number };
}

export interface ReclaimGuardInput {
  history: History;
  /** The policy's cache_target (KiB), undefined when it set none. */
  requested: unknown;
  stale?: string;
  state: ReclaimState;
  cycle: number;
  now: number;
  /** The guest hands freed pages back by itself (virtio-balloon free page reporting). */
  reportsFreePages: boolean;
}

/** from / to: the guest's page cache now and what to leave it with (apply), KiB; otherwise: the
 *  state when the reclaim came up short or failed. */
export type ReclaimDecision = GuardDecision<ReclaimState>;

/** The guest's page cache, KiB: mem_free is its unused memory plus its caches (both drivers). */
export function guestCache(s: { mem_free?: unknown; mem_unused?: unknown } | undefined): number | null {
  const free = finite(s?.mem_free);
  const unused = finite(s?.mem_unused);
  return free === null || unused === null ? null : Math.max(0, free - unused);
}

export function guardReclaim(inp: ReclaimGuardInput, cfg: SafeguardConfig): ReclaimDecision {
  let st = inp.state;
  const none = (verdict: 'skip' | 'veto', reasons: string[]): ReclaimDecision => ({ verdict, from: null, to: null, reasons, next: st });
  // Refaults after a reclaim hold the guest off, whether or not the policy asks again.
  if (st.last) {
    const why = rollbackReason(inp.history, { lastInflation: { cycle: st.last.cycle, at: st.last.at, step: st.last.kib } }, inp.cycle, cfg, 'reclaiming');
    if (why) {
      st = { holdUntil: inp.now + cfg.rollbackBackoffS };
      return none('veto', [`${why.replace(/^rollback: /, '')}: no reclaim for ${cfg.rollbackBackoffS} s`]);
    }
    if (inp.cycle - st.last.cycle > cfg.rollbackWindow) {
      const { last: _watched, ...rest } = st;
      st = rest;
    }
  }
  if (inp.requested === undefined || inp.requested === null) return none('skip', []);
  const t = finite(inp.requested);
  if (t === null || t < 0) return none('veto', [`not a KiB count >= 0: ${JSON.stringify(inp.requested)}`]);
  if (!inp.reportsFreePages)
    return none('veto', ['the guest does not report free pages: what it reclaims would stay with it (the balloon takes cache from such a guest)']);
  if (inp.stale) return none('skip', [`stale sample: ${inp.stale}`]);
  if (st.holdUntil !== undefined && inp.now < st.holdUntil) return none('veto', [`held until ${Math.round(st.holdUntil - inp.now)} s from now after refaults`]);
  const latest = inp.history.latest();
  const cache = guestCache(latest);
  const max = finite(latest?.balloon_max) ?? finite(latest?.balloon_cur);
  if (cache === null || max === null) return none('skip', ['the guest reports no page cache figure (mem_free, mem_unused)']);
  const step = Math.round((cfg.cacheStepFraction ?? cfg.maxStepFraction) * max);
  const minChange = Math.max(cfg.minChangeKiB, cfg.minChangeFraction * max);
  if (st.short && inp.now < st.short.until && cache < st.short.cache + step)
    return none('skip', [
      `the guest found less to reclaim at ${fmtKiB(st.short.cache)} of cache: not asked again below ${fmtKiB(st.short.cache + step)} for now`,
    ]);
  const target = Math.max(t, KEEP_CACHE_KIB);
  const amount = Math.min(cache - target, step);
  if (amount < minChange)
    return none('skip', [
      `page cache ${fmtKiB(cache)} is within ${fmtKiB(minChange)} of ${fmtKiB(target)}${t < KEEP_CACHE_KIB ? ` (a guest keeps ${fmtKiB(KEEP_CACHE_KIB)})` : ''}`,
    ]);
  const reasons = [`policy request: cache to ${fmtKiB(t)}`];
  if (t < KEEP_CACHE_KIB) reasons.push(`a guest keeps ${fmtKiB(KEEP_CACHE_KIB)} of cache`);
  if (amount < cache - target) reasons.push(`at most ${fmtKiB(step)} a cycle`);
  const rounded = Math.floor(amount);
  return {
    verdict: 'apply',
    from: cache,
    to: cache - rounded,
    reasons,
    next: { last: { cycle: inp.cycle, at: inp.now, kib: rounded } },
    otherwise: { ...st, short: { cache, until: inp.now + cfg.rollbackBackoffS } },
  };
}
