// The driver error contract. Every driver, host source and control backend fails in one of a
// few ways, and the loop treats each way the same whatever raised it (engine.ts, one place):
//   gone         the guest is not there any more: drop its actions, nothing to retry;
//   unavailable  the daemon, socket or device is away for now: retry with backoff;
//   unsupported  this host or guest cannot do it: stop asking (retry rarely, in case it changes);
//   denied       permission (EPERM, EACCES, a read-only file system, libvirt's ACL): retry with
//                backoff, an operator must act;
//   failed       anything else.
// Driver errors say their kind with a `kind` property; system errors are told by errno.

export type FailureKind = 'gone' | 'unavailable' | 'unsupported' | 'denied' | 'failed';

const KINDS = new Set<FailureKind>(['gone', 'unavailable', 'unsupported', 'denied', 'failed']);

const BY_ERRNO: Record<string, FailureKind> = {
  EPERM: 'denied',
  EACCES: 'denied',
  EROFS: 'denied',
  ECONNREFUSED: 'unavailable',
  ECONNRESET: 'unavailable',
  EPIPE: 'unavailable',
  ETIMEDOUT: 'unavailable',
  EAGAIN: 'unavailable',
  EBUSY: 'unavailable',
  ENOENT: 'unavailable',
  ENOTCONN: 'unavailable',
  ENOTSUP: 'unsupported',
  EOPNOTSUPP: 'unsupported',
  ENOSYS: 'unsupported',
  EINVAL: 'failed',
  ESRCH: 'gone',
};

/** The kind of a failure, from its `kind` (drivers) or its errno code (system calls). */
export function failureKind(err: unknown): FailureKind {
  if (err && typeof err === 'object') {
    const k = (err as { kind?: unknown }).kind;
    if (typeof k === 'string' && KINDS.has(k as FailureKind)) return k as FailureKind;
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string' && code in BY_ERRNO) return BY_ERRNO[code]!;
  }
  return 'failed';
}

/** What to say of anything thrown: an Error's message, else the value as text. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
