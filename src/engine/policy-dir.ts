// Policies from a directory: every *.policy file, in name order, compiled as one program
// (MOM's named policies: the file name is the policy's name). Watched for changes: a change
// recompiles everything once the files have not been written for a second; a file that does
// not compile is refused with FILE:LINE:COL and the last good policy stays in force.
import { errorMessage } from '../errors.js';
import { readdirSync, readFileSync, statSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { Logger } from '../log/logger.js';
import { nullLogger } from '../log/logger.js';

export interface PolicyFile {
  /** File name without directory (e.g. 10_balloon.policy). */
  name: string;
  path: string;
  text: string;
}

/** Compile the files (in the given order) as one program; throw with FILE:LINE:COL on error. */
export type CompileFn<P> = (files: PolicyFile[]) => P;

/** Where policies come from: a directory (every *.policy, in name order) or given files in the given order. */
export type PolicySourceSpec = { dir: string } | { files: string[] };

function listPaths(src: PolicySourceSpec): string[] {
  if ('files' in src) return src.files;
  return readdirSync(src.dir)
    .filter((n) => n.endsWith('.policy'))
    .sort()
    .map((n) => join(src.dir, n));
}

export function describeSource(src: PolicySourceSpec): string {
  return 'dir' in src ? src.dir : src.files.join(', ');
}

export function readPolicyFiles(src: PolicySourceSpec): PolicyFile[] {
  return listPaths(src).map((path) => ({ name: basename(path), path, text: readFileSync(path, 'utf8') }));
}

/** A cheap fingerprint of the policy files (names, sizes, mtimes), and the newest mtime (ms). */
function sourceState(src: PolicySourceSpec): { signature: string; newestMs: number } {
  let newestMs = 0;
  try {
    const signature = listPaths(src)
      .map((n) => {
        try {
          const st = statSync(n);
          newestMs = Math.max(newestMs, st.mtimeMs);
          return `${n}:${st.size}:${st.mtimeMs}`;
        } catch {
          return `${n}:gone`;
        }
      })
      .join('|');
    return { signature, newestMs };
  } catch (err) {
    return { signature: `error:${(err as Error).message}`, newestMs };
  }
}

export type LoadResult<P> = { ok: true; policy: P; files: string[] } | { ok: false; error: string };

export function loadPolicies<P>(src: PolicySourceSpec, compile: CompileFn<P>): LoadResult<P> {
  let files: PolicyFile[];
  try {
    files = readPolicyFiles(src);
  } catch (err) {
    return { ok: false, error: `cannot read policies: ${(err as Error).message}` };
  }
  if (files.length === 0) return { ok: false, error: `no *.policy files in ${describeSource(src)}` };
  try {
    return { ok: true, policy: compile(files), files: files.map((f) => f.name) };
  } catch (err) {
    return { ok: false, error: errorMessage(err) };
  }
}

export interface PolicyWatcherOptions<P> {
  source: PolicySourceSpec;
  compile: CompileFn<P>;
  /** Called with each newly accepted policy. */
  onPolicy: (p: P, files: string[]) => void;
  logger?: Logger;
  /** Seconds between directory checks. Default: 2 while no fs.watch watches the directory;
   *  30 with one, whose events make checks come at once (the poll only backs it up: inotify
   *  misses changes on network and some overlay mounts, and a check every 2 s was a twentieth
   *  of an idle daemon's CPU). */
  pollS?: number;
  /** Quiet time after a change before reloading, so an editor's save is seen whole (ms). */
  debounceMs?: number;
  /** A changed file is loaded only once it has not been written for this long (ms), so a file
   *  rewritten in place is not taken half-written (a prefix of a policy often compiles). */
  settleMs?: number;
}

/**
 * Keeps a directory's policy in force. `start()` loads once (returns whether that succeeded),
 * then checks for changes on fs.watch events and every `pollS` seconds. A change whose
 * compilation fails is logged (`policy_refused`, with FILE:LINE:COL) and not retried until
 * the files change again.
 */
export class PolicyWatcher<P> {
  private signature = '';
  private watcher?: FSWatcher;
  private poll?: NodeJS.Timeout;
  private debounce?: NodeJS.Timeout;
  private readonly log: Logger;
  reloads = 0;
  refusals = 0;
  lastError?: string;

  constructor(private readonly opts: PolicyWatcherOptions<P>) {
    this.log = opts.logger ?? nullLogger;
  }

  /** Check the directory now; reload if it changed (and has settled, unless `now`). Returns true when a new policy was accepted. */
  check(now = false): boolean {
    const { signature: sig, newestMs } = sourceState(this.opts.source);
    if (sig === this.signature) return false;
    const age = Date.now() - newestMs;
    const settle = this.opts.settleMs ?? 1000;
    // A clock step (mtime in the future) must not hold a change back forever: only a recent past mtime waits.
    if (!now && age >= 0 && age < settle) {
      this.soon(settle - age + 10);
      return false;
    }
    this.signature = sig;
    const r = loadPolicies(this.opts.source, this.opts.compile);
    if (!r.ok) {
      this.refusals++;
      this.lastError = r.error;
      this.log.error('policy_refused', { policies: describeSource(this.opts.source), error: r.error, reason: 'the last good policy stays in force' });
      return false;
    }
    this.reloads++;
    this.lastError = undefined;
    this.log.info('policy_loaded', { policies: describeSource(this.opts.source), files: r.files });
    this.opts.onPolicy(r.policy, r.files);
    return true;
  }

  /** Re-read and recompile now even if nothing changed (MOM's resetPolicies). */
  reload(): boolean {
    this.signature = '';
    return this.check(true);
  }

  /** The first load does not wait for the files to settle: the operator has just started the daemon. */
  start(): boolean {
    const ok = this.check(true);
    try {
      const src = this.opts.source;
      // Watching the directory (not the files) sees editors that save by rename.
      const dir = 'dir' in src ? src.dir : dirname(src.files[0] ?? '.');
      this.watcher = watch(dir, { persistent: false }, () => this.soon());
      this.watcher.on('error', () => {
        this.watcher?.close();
        this.watcher = undefined;
      });
    } catch {
      // No inotify (or the directory is missing): polling alone will do.
    }
    const pollS = this.opts.pollS ?? (this.watcher ? 30 : 2);
    this.poll = setInterval(() => {
      if (!this.debounce) this.check();
    }, pollS * 1000);
    this.poll.unref();
    return ok;
  }

  private soon(ms = this.opts.debounceMs ?? 200): void {
    if (this.debounce) clearTimeout(this.debounce);
    this.debounce = setTimeout(() => {
      this.debounce = undefined;
      this.check();
    }, ms);
    this.debounce.unref();
  }

  stop(): void {
    this.watcher?.close();
    this.watcher = undefined;
    if (this.poll) clearInterval(this.poll);
    if (this.debounce) clearTimeout(this.debounce);
    this.poll = this.debounce = undefined;
  }
}
