// Short QMP sessions on a socket that other clients use too. Proxmox VE's qm, pvestatd and API
// open /var/run/qemu-server/<vmid>.qmp for a moment per command, and QEMU serves one QMP
// client at a time: while one is connected, another's connect() succeeds but sits in the
// listen backlog, greeted only once the first closes. A client that keeps its connection open
// stalls every other one; so in shared mode each collection (and each action) connects,
// negotiates, runs one batch of commands and closes, and is cut off at a hard cap.
import { performance } from 'node:perf_hooks';
import { QmpClient, QmpConnectionError } from './client.js';

/** Nobody greeted us in time (another client holds the socket) or the backlog was full. */
export class QmpBusyError extends QmpConnectionError {
  override name = 'QmpBusyError';
}

/** The batch did not finish within the hold cap: it was aborted and the socket released. */
export class QmpHoldExceededError extends QmpConnectionError {
  override name = 'QmpHoldExceededError';
}

export interface SessionLimits {
  /** How long to wait for QEMU's greeting, ms (another client may hold the socket). */
  waitMs: number;
  /** The most the socket is held, ms, from QEMU's greeting to our close. */
  holdMs: number;
}

export interface SessionResult<T> {
  value: T;
  /** From QEMU's greeting to our close: how long every other client was kept waiting at most. */
  heldMs: number;
  /** From connect() to the greeting. */
  waitedMs: number;
}

/**
 * Connect to `path`, negotiate, run `batch`, close. Rejects with QmpBusyError when QEMU does
 * not greet within `waitMs`, QmpHoldExceededError when greeting + batch take longer than
 * `holdMs` (the connection is closed at that moment, whatever is pending), and with the
 * client's QmpConnectionError (code ECONNREFUSED, ENOENT, ...) when the socket cannot be
 * reached. The connection is always closed when this settles.
 */
export async function qmpSession<T>(path: string, limits: SessionLimits, batch: (q: QmpClient) => Promise<T>): Promise<SessionResult<T>> {
  // The client's own timeouts are only a safety net: the two timers below decide.
  const q = new QmpClient(path, { connectTimeoutMs: limits.waitMs + limits.holdMs + 1000, timeoutMs: limits.holdMs + 1000 });
  const t0 = performance.now();
  let greetedAt: number | null = null;
  let cut: 'wait' | 'hold' | null = null;
  let holdTimer: NodeJS.Timeout | undefined;
  const waitTimer = setTimeout(() => {
    cut = 'wait';
    q.close();
  }, limits.waitMs);
  q.on('greeted', () => {
    greetedAt = performance.now();
    clearTimeout(waitTimer);
    holdTimer = setTimeout(() => {
      cut = 'hold';
      q.close();
    }, limits.holdMs);
  });
  // Events and stray lines are of no use to a session this short; a listener keeps them from
  // being unhandled 'error'-like emissions.
  q.on('protocol-error', () => undefined);
  const finish = (): { heldMs: number; waitedMs: number } => {
    clearTimeout(waitTimer);
    clearTimeout(holdTimer);
    q.close();
    const end = performance.now();
    return { heldMs: greetedAt === null ? 0 : end - greetedAt, waitedMs: (greetedAt ?? end) - t0 };
  };
  try {
    await q.connect();
    const value = await batch(q);
    if (cut) throw new Error('cut');
    return { value, ...finish() };
  } catch (err) {
    const times = finish();
    if (cut === 'wait') throw new QmpBusyError(`QMP ${path}: no greeting within ${limits.waitMs} ms (another client holds the socket)`, 'EBUSY');
    if (cut === 'hold')
      throw new QmpHoldExceededError(
        `QMP ${path}: batch not done after holding the socket ${Math.round(times.heldMs)} ms (cap ${limits.holdMs} ms): aborted`,
        'EHOLD',
      );
    const code = (err as { code?: string }).code;
    // A full listen backlog: others are queued for the socket too.
    if (code === 'EAGAIN') throw new QmpBusyError(`QMP ${path}: the socket's backlog is full (other clients are waiting)`, 'EAGAIN');
    throw err;
  }
}
