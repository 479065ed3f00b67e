// KSM as the kernel exposes it in /sys/kernel/mm/ksm: reading its counters as ksm_* host
// fields, and the KsmBackend that writes its knobs, verifies them by reading back, reports
// refusals (EPERM, EROFS, EBUSY, EINVAL) in words an operator can act on, retries refused
// settings on the next cycle, and can put back the values it found, even after a crash: the
// values found are journalled to a file that a clean restore removes (keepJournal).
import { readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import type { KsmBackend, KsmSettings, Stats } from '../types.js';
import { errnoOf, listDir, readText, under } from './files.js';
import { pidAlive } from './process.js';

export const KSM_DIR = '/sys/kernel/mm/ksm';

/** MOM's KSM host fields: always present in a sample (null without KSM) so policies that
 *  name them never fail on a kernel without KSM. */
export const MOM_KSM_FIELDS = [
  'ksm_run',
  'ksm_pages_to_scan',
  'ksm_sleep_millisecs',
  'ksm_pages_shared',
  'ksm_pages_sharing',
  'ksm_pages_unshared',
  'ksm_pages_volatile',
  'ksm_full_scans',
  'ksm_merge_across_nodes',
] as const;

/** The advisor modes in the kernel's order; ksm_advisor_mode is the index of the selected one. */
export const ADVISOR_MODES = ['none', 'scan-time'] as const;
export type AdvisorMode = (typeof ADVISOR_MODES)[number];

/** A selection file like "[none] scan-time" -> the selected word. */
export function parseSelection(text: string): string | null {
  const m = /\[([^\]]+)\]/.exec(text);
  return m ? m[1]! : null;
}

/** File name -> content of /sys/kernel/mm/ksm -> ksm_<name> fields (numbers only). */
export function ksmFieldsFromFiles(files: Record<string, string>): Stats {
  const out: Stats = {};
  for (const f of MOM_KSM_FIELDS) out[f] = null;
  for (const [name, raw] of Object.entries(files)) {
    const text = raw.trim();
    if (/^-?\d+$/.test(text)) out[`ksm_${name}`] = Number(text);
    else if (name === 'advisor_mode') {
      const sel = parseSelection(text);
      const i = sel === null ? -1 : (ADVISOR_MODES as readonly string[]).indexOf(sel);
      out.ksm_advisor_mode = i >= 0 ? i : null;
    }
  }
  return out;
}

/** The file names of the KSM directory, sorted (empty when the kernel has no KSM). */
export async function listKsmFiles(root = '/', dir = KSM_DIR): Promise<string[]> {
  return (await listDir(root, dir)).sort();
}

/** The named files of the KSM directory (all of them unless named); one that cannot be read (a
 *  write-only or vanished attribute) is left out. */
export async function readKsmFiles(root = '/', dir = KSM_DIR, names?: readonly string[]): Promise<Record<string, string>> {
  const files: Record<string, string> = {};
  for (const name of names ?? (await listKsmFiles(root, dir))) {
    try {
      files[name] = await readText(root, `${dir}/${name}`);
    } catch {
      // Nothing to report for it.
    }
  }
  return files;
}

export async function readKsmStats(root = '/', dir = KSM_DIR): Promise<Stats> {
  return ksmFieldsFromFiles(await readKsmFiles(root, dir));
}

/** Knobs this backend writes: MOM's four, plus the newer kernels' advisor and smart scan. */
export interface KsmKnobs extends KsmSettings {
  advisor_mode: AdvisorMode;
  smart_scan: number;
}
type Knob = keyof KsmKnobs;
const OPTIONAL_KNOBS: ReadonlySet<Knob> = new Set<Knob>(['advisor_mode', 'smart_scan', 'merge_across_nodes']);
/** Restore order: run last (it starts or stops ksmd), merge_across_nodes just before it. */
const RESTORE_ORDER: Knob[] = ['advisor_mode', 'smart_scan', 'pages_to_scan', 'sleep_millisecs', 'merge_across_nodes', 'run'];

export class KsmWriteError extends Error {
  constructor(readonly failures: { knob: string; code: string | undefined; message: string }[]) {
    super(failures.map((f) => f.message).join('; '));
    this.name = 'KsmWriteError';
  }
}

/** File access, replaceable in tests to make the kernel refuse a write. */
export interface SysfsIo {
  read(path: string): Promise<string>;
  write(path: string, data: string): Promise<void>;
}
const realIo: SysfsIo = {
  read: (p) => readFile(p, 'utf8'),
  write: (p, d) => writeFile(p, d),
};

export interface KsmSysfsOptions {
  root?: string;
  dir?: string;
  io?: SysfsIo;
}

function validate(knob: Knob, value: unknown): string {
  if (knob === 'advisor_mode') {
    if (!(ADVISOR_MODES as readonly unknown[]).includes(value))
      throw new Error(`ksm advisor_mode must be one of ${ADVISOR_MODES.join(', ')}, not ${String(value)}`);
    return String(value);
  }
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) {
    throw new Error(`ksm ${knob} must be a non-negative integer, not ${String(value)}`);
  }
  if (knob === 'run' && value > 2) throw new Error(`ksm run must be 0 (stop), 1 (run) or 2 (unmerge all), not ${value}`);
  if ((knob === 'merge_across_nodes' || knob === 'smart_scan') && value > 1) throw new Error(`ksm ${knob} must be 0 or 1, not ${value}`);
  return String(value);
}

function explain(knob: Knob, code: string | undefined, path: string, raw: string): string {
  switch (code) {
    case 'EACCES':
    case 'EPERM':
      return `ksm ${knob}: permission denied writing ${path} (ballast needs root or CAP_SYS_ADMIN to drive KSM); will retry next cycle`;
    case 'EROFS':
      return `ksm ${knob}: ${path} is on a read-only sysfs (a container without write access to /sys?); will retry next cycle`;
    case 'EBUSY':
      return knob === 'merge_across_nodes'
        ? `ksm merge_across_nodes: the kernel refuses to change it while pages are shared (EBUSY); unmerge first (run=2) and set it again; will retry next cycle`
        : `ksm ${knob}: ${path} is busy (EBUSY); will retry next cycle`;
    case 'EINVAL':
      return knob === 'pages_to_scan'
        ? `ksm pages_to_scan: the kernel refused the value (EINVAL); with advisor_mode=scan-time the advisor owns pages_to_scan`
        : `ksm ${knob}: the kernel refused value ${raw} (EINVAL)`;
    case 'ENOENT':
      return `ksm ${knob}: ${path} does not exist (kernel without KSM or without this knob)`;
    default:
      return `ksm ${knob}: writing ${raw} to ${path} failed (${code ?? 'unknown error'})`;
  }
}

export class KsmSysfs implements KsmBackend {
  private readonly root: string;
  private readonly dir: string;
  private readonly io: SysfsIo;
  /** Values found before ballast first changed each knob (raw file text, trimmed). */
  private readonly originals = new Map<Knob, string>();
  /** What ballast last wrote to each knob it changed (the journal's check on a restart). */
  private readonly wrote = new Map<Knob, string>();
  private journal: string | null = null;
  /** Settings the kernel refused last time: tried again with the next write. */
  private pending: Partial<Record<Knob, string>> = {};

  constructor(opts: KsmSysfsOptions = {}) {
    this.root = opts.root ?? '/';
    this.dir = opts.dir ?? KSM_DIR;
    this.io = opts.io ?? realIo;
  }

  private path(knob: Knob): string {
    return under(this.root, `${this.dir}/${knob}`);
  }

  async read(): Promise<Stats> {
    return readKsmStats(this.root, this.dir);
  }

  /** What the knob holds now, as its canonical text (the selected word for advisor_mode). */
  private async current(knob: Knob): Promise<string | null> {
    let text: string;
    try {
      text = (await this.io.read(this.path(knob))).trim();
    } catch (err) {
      if (errnoOf(err) === 'ENOENT') return null;
      throw err;
    }
    return knob === 'advisor_mode' ? (parseSelection(text) ?? text) : text;
  }

  /** Writes the given settings (knobs that already hold the value are not touched), then
   *  settings refused earlier. Rejects with a KsmWriteError naming every refusal; the other
   *  knobs are still written. */
  async write(settings: Partial<KsmKnobs>): Promise<void> {
    const wanted: Partial<Record<Knob, string>> = { ...this.pending };
    for (const [k, v] of Object.entries(settings) as [Knob, unknown][]) {
      if (v === undefined) continue;
      wanted[k] = validate(k, v);
    }
    this.pending = {};
    const failures: KsmWriteError['failures'] = [];
    // run goes last, so a policy that changes merge_across_nodes and starts KSM in one cycle
    // changes the layout before pages start being merged.
    const order = (Object.keys(wanted) as Knob[]).sort((a, b) => RESTORE_ORDER.indexOf(a) - RESTORE_ORDER.indexOf(b));
    for (const knob of order) {
      const raw = wanted[knob]!;
      try {
        await this.writeKnob(knob, raw);
      } catch (err) {
        const code = errnoOf(err);
        if (code === 'ENOENT' && OPTIONAL_KNOBS.has(knob)) {
          failures.push({ knob, code, message: `ksm ${knob}: this kernel has no ${knob} knob; setting ignored` });
          continue; // retrying cannot help
        }
        const message = code ? explain(knob, code, this.path(knob), raw) : `ksm ${knob}: ${(err as Error).message}`;
        failures.push({ knob, code, message });
        if (code !== 'ENOENT' && code !== 'EINVAL') this.pending[knob] = raw;
      }
    }
    if (failures.length > 0) throw new KsmWriteError(failures);
  }

  private async writeKnob(knob: Knob, raw: string): Promise<void> {
    const before = await this.current(knob);
    if (before === null) {
      const e = new Error(`no ${knob}`) as NodeJS.ErrnoException;
      e.code = 'ENOENT';
      throw e;
    }
    if (before === raw) return;
    if (!this.originals.has(knob)) this.originals.set(knob, before);
    // Journalled before the write: a crash right after it still knows what to put back.
    this.wrote.set(knob, raw);
    this.saveJournal();
    await this.io.write(this.path(knob), raw);
    const after = await this.current(knob);
    if (after !== raw) {
      throw new Error(`wrote ${raw} to ${this.path(knob)} but it reads back ${after ?? '(nothing)'}`);
    }
  }

  /** Knobs ballast has changed and their values before the first change. */
  changed(): Record<string, string> {
    return Object.fromEntries(this.originals);
  }

  /** Puts back every knob ballast changed, as it was found. Rejects with a KsmWriteError
   *  when the kernel refuses some (the rest are still restored). */
  async restore(): Promise<void> {
    const failures: KsmWriteError['failures'] = [];
    this.pending = {};
    for (const knob of RESTORE_ORDER) {
      const raw = this.originals.get(knob);
      if (raw === undefined) continue;
      try {
        await this.writeKnob(knob, raw);
        this.originals.delete(knob);
        this.wrote.delete(knob);
      } catch (err) {
        const code = errnoOf(err);
        failures.push({
          knob,
          code,
          message: code ? explain(knob, code, this.path(knob), raw).replace('; will retry next cycle', '') : `ksm ${knob}: ${(err as Error).message}`,
        });
      }
    }
    this.saveJournal();
    if (failures.length > 0) throw new KsmWriteError(failures);
  }

  /**
   * Journals the values found to `path` from now on (rewritten, write-and-rename, whenever
   * ballast changes a knob; removed once everything is put back), and first takes over the
   * journal an earlier daemon left there by dying before its restore. Of that journal a knob is
   * kept only while it still holds what the dead daemon last wrote: one changed since (by hand,
   * by a reboot) is the operator's, and neither it nor its old value is touched. Returns the
   * knobs taken over with the values they will be put back to; a journal that cannot be
   * parsed is set aside (renamed .bad) and nothing is taken over.
   */
  async keepJournal(path: string): Promise<Record<string, string>> {
    const taken: Record<string, string> = {};
    let old: KsmJournalFile | null = null;
    try {
      old = parseJournal(readFileSync(path, 'utf8'));
    } catch (err) {
      if (errnoOf(err) !== 'ENOENT') renameQuietly(path, `${path}.bad`);
    }
    // Two daemons driving the host's one KSM would undo each other; the journal stays the first's.
    if (old && old.pid !== process.pid && pidAlive(old.pid)) throw new Error(`ballast PID ${old.pid} keeps the KSM journal ${path}: not journalling here`);
    this.journal = path;
    for (const [name, entry] of Object.entries(old?.knobs ?? {})) {
      const knob = name as Knob;
      if (!entry || !RESTORE_ORDER.includes(knob) || this.originals.has(knob)) continue;
      if ((await this.current(knob).catch(() => null)) !== entry.wrote) continue;
      this.originals.set(knob, entry.found);
      this.wrote.set(knob, entry.wrote);
      taken[knob] = entry.found;
    }
    try {
      // With nothing changed yet there is nothing to write: try the directory now, so that a
      // journal that cannot be kept is said at start, not found out after a crash.
      if (this.originals.size === 0) {
        writeFileSync(`${path}.${process.pid}.tmp`, '');
        unlinkSync(`${path}.${process.pid}.tmp`);
      }
      this.writeJournal(path);
    } catch (err) {
      this.journalError = (err as Error).message;
      throw new Error(`cannot keep the KSM journal ${path}: ${this.journalError}`);
    }
    return taken;
  }

  /** Why the journal could not be written last time (null: written). A journal that cannot be
   *  written does not stop KSM control: only a crash's restore is lost. */
  journalError: string | null = null;

  private saveJournal(): void {
    if (this.journal === null) return;
    try {
      this.writeJournal(this.journal);
      this.journalError = null;
    } catch (err) {
      this.journalError = (err as Error).message;
    }
  }

  private writeJournal(path: string): void {
    if (this.originals.size === 0) {
      try {
        unlinkSync(path);
      } catch (err) {
        if (errnoOf(err) !== 'ENOENT') throw err;
      }
      return;
    }
    const file: KsmJournalFile = { pid: process.pid, knobs: {} };
    for (const [knob, found] of this.originals) file.knobs[knob] = { found, wrote: this.wrote.get(knob) ?? found };
    const tmp = `${path}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(file) + '\n');
    renameSync(tmp, path);
  }
}

/** The journal's content: per knob, the value found before ballast changed it and the value
 *  ballast last wrote. */
interface KsmJournalFile {
  pid: number;
  knobs: Partial<Record<string, { found: string; wrote: string }>>;
}

function parseJournal(text: string): KsmJournalFile {
  const j = JSON.parse(text) as KsmJournalFile;
  if (typeof j !== 'object' || j === null || !Number.isInteger(j.pid) || typeof j.knobs !== 'object' || j.knobs === null) throw new Error('not a KSM journal');
  for (const e of Object.values(j.knobs)) {
    if (typeof e?.found !== 'string' || typeof e.wrote !== 'string') throw new Error('not a KSM journal');
  }
  return j;
}

function renameQuietly(from: string, to: string): void {
  try {
    renameSync(from, to);
  } catch {
    // unreadable and immovable: left as it is
  }
}
