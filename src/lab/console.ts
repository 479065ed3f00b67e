// Parser for the lines lab guests write on their serial console (format: docs/lab.md).
// Each line is `BALLAST <kind> key=value ...`; the kernel's own messages are ignored.

export interface ConsoleLine {
  kind: string;
  /** Seconds since guest boot, when the line carries `t=`. */
  t: number | null;
  fields: Record<string, string>;
}

const KIND = /^[a-z][a-z0-9-]*$/;
const TOKEN = /^([a-z][a-z0-9_]*)=(\S*)$/;

/**
 * Parses one console line. Returns null for anything that is not a complete ballast line — also
 * for a ballast line another writer (the kernel) cut into, so a garbled line is dropped rather
 * than misread.
 */
export function parseConsoleLine(line: string): ConsoleLine | null {
  const at = line.indexOf('BALLAST ');
  if (at === -1) return null;
  const words = line
    .slice(at + 8)
    .replace(/\r/g, '')
    .trim()
    .split(/\s+/);
  const kind = words.shift();
  if (!kind || !KIND.test(kind)) return null;
  const fields: Record<string, string> = {};
  for (const w of words) {
    const m = TOKEN.exec(w);
    if (!m) return null;
    fields[m[1]] = m[2];
  }
  let t: number | null = null;
  if ('t' in fields) {
    t = Number(fields.t);
    if (!Number.isFinite(t)) return null;
  }
  return { kind, t, fields };
}

/** All ballast lines of a console log, in order. */
export function parseConsole(text: string): ConsoleLine[] {
  const out: ConsoleLine[] = [];
  for (const line of text.split('\n')) {
    const p = parseConsoleLine(line);
    if (p) out.push(p);
  }
  return out;
}

export interface MeminfoReport {
  t: number;
  totalKiB: number;
  freeKiB: number;
  availKiB: number;
}

export interface RateReport {
  t: number;
  idx: number;
  op: string;
  pages: number;
  secs: number;
  pagesPerS: number;
  wsKiB: number;
}

export interface PhaseReport {
  t: number;
  idx: number;
  op: string;
  arg: number;
  wsKiB: number;
}

export interface ConsoleSummary {
  booted: boolean;
  bootT: number | null;
  kernel: string | null;
  /** Module name -> loaded | builtin | failed. */
  modules: Record<string, string>;
  balloonBound: boolean;
  guestAgent: string | null;
  ready: boolean;
  workloadStarted: boolean;
  workloadExits: number;
  meminfo: MeminfoReport[];
  rates: RateReport[];
  phases: PhaseReport[];
  /** Lines of kinds this parser does not summarise (e.g. workload-error). */
  other: ConsoleLine[];
}

function num(v: string | undefined): number {
  const n = Number(v);
  return v !== undefined && v !== '' && Number.isFinite(n) ? n : NaN;
}

/** Folds parsed lines into what tests and tools ask about. A guest that rebooted shows the
 *  lines of its last boot only. */
export function summarizeConsole(lines: ConsoleLine[]): ConsoleSummary {
  let lastBoot = -1;
  lines.forEach((l, i) => {
    if (l.kind === 'boot') lastBoot = i;
  });
  const s: ConsoleSummary = {
    booted: lastBoot !== -1,
    bootT: null,
    kernel: null,
    modules: {},
    balloonBound: false,
    guestAgent: null,
    ready: false,
    workloadStarted: false,
    workloadExits: 0,
    meminfo: [],
    rates: [],
    phases: [],
    other: [],
  };
  for (const l of lines.slice(Math.max(lastBoot, 0))) {
    const f = l.fields;
    switch (l.kind) {
      case 'boot':
        s.bootT = l.t;
        s.kernel = f.kernel ?? null;
        break;
      case 'module':
        if (f.name) s.modules[f.name] = f.status ?? 'unknown';
        break;
      case 'balloon':
        s.balloonBound = f.status === 'bound';
        break;
      case 'qga':
        s.guestAgent = f.status ?? null;
        break;
      case 'ready':
        s.ready = true;
        break;
      case 'workload-start':
        s.workloadStarted = true;
        break;
      case 'workload-exit':
        s.workloadExits++;
        break;
      case 'meminfo': {
        const m = { t: l.t ?? NaN, totalKiB: num(f.total_kib), freeKiB: num(f.free_kib), availKiB: num(f.avail_kib) };
        if (Object.values(m).every(Number.isFinite)) s.meminfo.push(m);
        break;
      }
      case 'rate': {
        const r = {
          t: l.t ?? NaN,
          idx: num(f.idx),
          op: f.op ?? '',
          pages: num(f.pages),
          secs: num(f.secs),
          pagesPerS: num(f.pages_per_s),
          wsKiB: num(f.ws_kib),
        };
        if ([r.t, r.idx, r.pages, r.secs, r.pagesPerS, r.wsKiB].every(Number.isFinite)) s.rates.push(r);
        break;
      }
      case 'phase': {
        const p = { t: l.t ?? NaN, idx: num(f.idx), op: f.op ?? '', arg: num(f.arg), wsKiB: num(f.ws_kib) };
        if ([p.t, p.idx, p.arg, p.wsKiB].every(Number.isFinite)) s.phases.push(p);
        break;
      }
      default:
        s.other.push(l);
    }
  }
  return s;
}

/** True when every balloon module is loaded or built in and the balloon device is bound. */
export function balloonReady(s: ConsoleSummary, modules: string[]): boolean {
  return s.balloonBound && modules.every((m) => s.modules[m] === 'loaded' || s.modules[m] === 'builtin');
}

/**
 * Checks a workload schedule (the `ballast.workload=` value) before it goes on a kernel command
 * line, with the same grammar lab/workload.c accepts; throws with the offending step.
 */
export function validateWorkloadSpec(spec: string): string {
  if (spec === '') return spec;
  const steps = spec.split(',');
  steps.forEach((step, i) => {
    const last = i === steps.length - 1;
    const ok = /^(idle|alloc|touch):\d+$/.test(step) || /^(idle|touch)@\d+$/.test(step) || step === 'free' || (last && /^loop(@\d+)?$/.test(step));
    if (!ok) {
      throw new Error(
        `bad workload step ${JSON.stringify(step)} in ${JSON.stringify(spec)}: use idle:S, alloc:MiB, touch:S, idle@S, touch@S, free, loop or loop@P (last)`,
      );
    }
  });
  return spec;
}
