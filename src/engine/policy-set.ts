// The named policies in force, MOM's model: a map name -> text, concatenated in name order and
// compiled as one program. Two kinds of entries: files (the policy directory or --policy files,
// named by the file name without `.policy`, kept current by the PolicyWatcher) and entries set
// at run time through the API or MOM's RPC. A run-time entry wins over a file of the same name
// until it is deleted. Every change compiles the whole new set first; a set that does not
// compile changes nothing. Run-time entries live in memory only (as in MOM): a restart forgets
// them.
import type { CompileFn, PolicyFile } from './policy-dir.js';

/** MOM's name for the policy of `setPolicy` (mom/Policy/Policy.py). */
export const DEFAULT_POLICY_NAME = '50_main_';

export interface PolicyEntry {
  name: string;
  source: 'file' | 'api';
  /** The file it came from (source 'file'). */
  path?: string;
  text: string;
  /** Wall-clock seconds since the epoch. */
  loadedAt: number;
}

/** A policy name the API accepts: what MOM's names and file names look like, never a path. */
export const POLICY_NAME_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$/;

export function policyNameOf(fileName: string): string {
  return fileName.endsWith('.policy') ? fileName.slice(0, -'.policy'.length) : fileName;
}

export class PolicySet<P> {
  private files: PolicyEntry[] = [];
  private api = new Map<string, PolicyEntry>();
  /** MOM's setPolicy clears every policy, files included, until resetPolicies. */
  private filesHidden = false;

  constructor(
    private readonly compileFn: CompileFn<P>,
    private readonly clock: () => number = () => Date.now() / 1000,
  ) {}

  /** The entries in force, in the order they are concatenated. */
  entries(): PolicyEntry[] {
    return this.merge(this.files, this.api, this.filesHidden);
  }

  /** The concatenated text (MOM's getPolicy). */
  text(): string {
    return this.entries()
      .map((e) => e.text)
      .join('\n');
  }

  hasApiEntries(): boolean {
    return this.api.size > 0;
  }

  /**
   * The watcher's compile step: the directory's files together with the run-time entries.
   * On success the files become the set's file entries.
   */
  readonly compileFiles: CompileFn<P> = (files: PolicyFile[]) => {
    const now = this.clock();
    const entries = files.map((f): PolicyEntry => ({ name: policyNameOf(f.name), source: 'file', path: f.path, text: f.text, loadedAt: now }));
    const p = this.compileEntries(this.merge(entries, this.api, this.filesHidden));
    this.files = entries;
    return p;
  };

  /** Set (create or replace) a run-time entry; throws (compile error) and changes nothing when the set would not compile. */
  set(name: string, text: string): { policy: P; entry: PolicyEntry } {
    const entry: PolicyEntry = { name, source: 'api', text, loadedAt: this.clock() };
    const api = new Map(this.api).set(name, entry);
    const policy = this.compileEntries(this.merge(this.files, api, this.filesHidden));
    this.api = api;
    return { policy, entry };
  }

  /** Delete a run-time entry. Null when there was none; throws when the rest would not compile. */
  delete(name: string): { policy: P | null } | null {
    if (!this.api.has(name)) return null;
    const api = new Map(this.api);
    api.delete(name);
    const entries = this.merge(this.files, api, this.filesHidden);
    const policy = entries.length ? this.compileEntries(entries) : null;
    this.api = api;
    return { policy };
  }

  /** MOM's setPolicy: the whole set becomes this one policy. */
  replace(text: string): P {
    const entry: PolicyEntry = { name: DEFAULT_POLICY_NAME, source: 'api', text, loadedAt: this.clock() };
    const api = new Map([[DEFAULT_POLICY_NAME, entry]]);
    const policy = this.compileEntries(this.merge(this.files, api, true));
    this.api = api;
    this.filesHidden = true;
    return policy;
  }

  /** MOM's resetPolicies: forget run-time entries; the files count again (the caller re-reads them). */
  reset(): void {
    this.api = new Map();
    this.filesHidden = false;
  }

  private merge(files: PolicyEntry[], api: Map<string, PolicyEntry>, filesHidden: boolean): PolicyEntry[] {
    const byName = new Map<string, PolicyEntry>();
    if (!filesHidden) for (const f of files) byName.set(f.name, f);
    for (const [name, e] of api) byName.set(name, e);
    return [...byName.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  private compileEntries(entries: PolicyEntry[]): P {
    return this.compileFn(entries.map((e) => ({ name: `${e.name}.policy`, path: e.source === 'api' ? `api:${e.name}` : (e.path ?? e.name), text: e.text })));
  }
}
