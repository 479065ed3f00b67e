// What a doctor check reports. 'fail' is kept for what stops ballast doing what its config
// asks (so `ballast doctor` can gate a deployment on its exit code); what only makes ballast
// work less well is 'warn'; 'skip' is a check that does not apply or could not be run.

export type CheckStatus = 'ok' | 'warn' | 'fail' | 'skip';

export interface CheckResult {
  /** Stable name: a host check ('ksm'), or 'guest:<name>:<what>' for a guest's. */
  id: string;
  status: CheckStatus;
  /** What was found, in one sentence. */
  message: string;
  /** What to do about it (warn and fail only). */
  fix?: string;
}

export const HOST_DOC = 'docs/host.md';
/** The measured table of what ballooning returns with and without huge pages. */
export const BALLOON_RETURN_DOC = `${HOST_DOC}#what-a-balloon-step-gives-back-to-the-host`;

export function result(id: string, status: CheckStatus, message: string, fix?: string): CheckResult {
  return fix === undefined ? { id, status, message } : { id, status, message, fix };
}

export function countByStatus(results: readonly CheckResult[]): Record<CheckStatus, number> {
  const out: Record<CheckStatus, number> = { ok: 0, warn: 0, fail: 0, skip: 0 };
  for (const r of results) out[r.status]++;
  return out;
}

/** 1 when anything failed: warnings alone leave a host usable. */
export function exitCodeOf(results: readonly CheckResult[]): 0 | 1 {
  return results.some((r) => r.status === 'fail') ? 1 : 0;
}
