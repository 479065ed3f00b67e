// Policies from a directory: every *.policy file, in name order, compiled as one program
// (MOM's named policies: the file name is the policy's name). Watched for changes: a change
// recompiles everything; a file that does not compile is refused with FILE:LINE:COL and the
// last good policy stays in force.
import { readdirSync, readFileSync, statSync, watch, type FSWatcher } from 'node:fs';
import { join } from 'node:path';
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

export function readPolicyDir(dir: string): PolicyFile[] {
  const names = readdirSync(dir).filter((n) => n.endsWith('.policy')).sort();
  return names.map((name) => {
    const path = join(dir, name);
    return { name, path, text: readFileSync(path, 'utf8') };
  });
}

/** A cheap fingerprint of the directory's policy files (names, sizes, mtimes). */
export function dirSignature(dir: string): string {
  try {
    const names = readdirSync(dir).filter((n) => n.endsWith('.policy')).sort();
    return names.map((n) => {
      try {
        const st = statSync(join(dir, n));
        return `${n}:${st.size}:${st.mtimeMs}`;
      } catch {
        return `${n}:gone`;
      }
    }).join('|');
  } catch (err) {
    return `error:${(err as Error).message}`;
  }
}

export type LoadResult<P> =
  | { ok: true; policy: P; files: string[] }
  | { ok: false; error: string };

export function loadPolicyDir<P>(dir: string, compile: CompileFn<P>): LoadResult<P> {
  let files: PolicyFile[];
  try {
    files = readPolicyDir(dir);
  } catch (err) {
    return { ok: false, error: `cannot read policy directory ${dir}: ${(err as Error).message}` };
  }
  if (files.length === 0) return { ok: false, error: `no *.policy files in ${dir}` };
  try {
    return { ok: true, policy: compile(files), files: files.map((f) => f.name) };
  } catch (err) {
    return { ok: false, error: err instanceof Error ? err.message : String(err) };
  }
}

export interface PolicyWatcherOptions<P> {
  dir: string;
  compile: CompileFn<P>;
  /** Called with each newly accepted policy. */
  onPolicy: (p: P, files: string[]) => void;
  logger?: Logger;
  /** Seconds between directory checks (the fs.watch events only make a check come sooner). */
  pollS?: number;
  /** Quiet time after a change before reloading, so an editor's save is seen whole (ms). */
  debounceMs?: number;
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

  /** Check the directory now; reload if it changed. Returns true when a new policy was accepted. */
  check(): boolean {
    const sig = dirSignature(this.opts.dir);
    if (sig === this.signature) return false;
    this.signature = sig;
    const r = loadPolicyDir(this.opts.dir, this.opts.compile);
    if (!r.ok) {
      this.refusals++;
      this.lastError = r.error;
      this.log.error('policy_refused', { dir: this.opts.dir, error: r.error, reason: 'the last good policy stays in force' });
      return false;
    }
    this.reloads++;
    this.lastError = undefined;
    this.log.info('policy_loaded', { dir: this.opts.dir, files: r.files });
    this.opts.onPolicy(r.policy, r.files);
    return true;
  }

  start(): boolean {
    const ok = this.check();
    try {
      this.watcher = watch(this.opts.dir, { persistent: false }, () => this.soon());
      this.watcher.on('error', () => { this.watcher?.close(); this.watcher = undefined; });
    } catch {
      // No inotify (or the directory is missing): polling alone will do.
    }
    this.poll = setInterval(() => this.check(), (this.opts.pollS ?? 2) * 1000);
    this.poll.unref();
    return ok;
  }

  private soon(): void {
    if (this.debounce) clearTimeout(this.debounce);
    this.debounce = setTimeout(() => { this.debounce = undefined; this.check(); }, this.opts.debounceMs ?? 200);
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
