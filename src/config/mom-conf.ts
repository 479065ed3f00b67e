// MOM's INI configuration (mom.conf, as `momd -c FILE` reads it) turned into ballast's, so
// `ballast run --mom-config FILE` starts where MOM did. What MOM's keys mean is taken from
// MOM's defaults and vdsm's mom.conf; a key whose value ballast cannot honour is refused,
// naming the key and what to use instead; a key that does not matter to ballast is accepted
// with a note saying so.
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { ConfigError } from './load.js';

export type Ini = Map<string, Map<string, string>>;

/**
 * Python configparser's format as MOM uses it: [sections], `key: value` or `key = value`,
 * keys case-insensitive, full-line comments with # or ;, indented continuation lines, and a
 * [DEFAULT] section whose keys every section inherits.
 */
export function parseIni(text: string, file = 'mom.conf'): Ini {
  const out: Ini = new Map();
  let section: Map<string, string> | undefined;
  let lastKey: string | undefined;
  const problems: string[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = i + 1;
    if (/^\s*([#;].*)?$/.test(raw)) {
      if (raw.trim() === '') lastKey = undefined;
      return;
    }
    if (/^\s/.test(raw) && section && lastKey !== undefined) {
      section.set(lastKey, `${section.get(lastKey)}\n${raw.trim()}`);
      return;
    }
    const head = /^\[([^\]]+)\]\s*$/.exec(raw);
    if (head) {
      const name = head[1]!.trim();
      section = out.get(name) ?? new Map();
      out.set(name, section);
      lastKey = undefined;
      return;
    }
    const kv = /^([^:=\s][^:=]*?)\s*[:=]\s*(.*)$/.exec(raw);
    if (!kv) {
      problems.push(`${file}:${line}: not a "key: value" line: ${raw.slice(0, 60)}`);
      return;
    }
    if (!section) {
      problems.push(`${file}:${line}: "${kv[1]}" comes before any [section]`);
      return;
    }
    lastKey = kv[1]!.toLowerCase();
    section.set(lastKey, kv[2]!.trim());
  });
  if (problems.length) throw new ConfigError(problems, file);
  const defaults = out.get('DEFAULT');
  if (defaults) {
    for (const [name, s] of out) if (name !== 'DEFAULT') for (const [k, v] of defaults) if (!s.has(k)) s.set(k, v);
    out.delete('DEFAULT');
  }
  return out;
}

export interface MomConfig {
  /** A partial ballast configuration (TOML's shape) for the config schema. */
  raw: Record<string, Record<string, unknown>>;
  /** MOM's `policy` key: one policy file used instead of a policy directory. */
  policyFiles?: string[];
  /** What was accepted but means nothing (or something else) to ballast. */
  notes: string[];
}

const CONTROLLERS = new Set(['balloon', 'ksm', 'cputune', 'iotune']);

/** MOM's verbosity: 5..1 or debug, info, warn(ing), error, critical. */
function verbosity(v: string): string | undefined {
  const s = v.trim().toLowerCase();
  const byNumber: Record<string, string> = { '5': 'debug', '4': 'info', '3': 'warn', '2': 'error', '1': 'error' };
  const byName: Record<string, string> = { debug: 'debug', info: 'info', warn: 'warn', warning: 'warn', error: 'error', critical: 'error' };
  return byNumber[s] ?? byName[s];
}

export function momConfigFrom(ini: Ini, file: string): MomConfig {
  const problems: string[] = [];
  const notes: string[] = [];
  // MOM's default controllers list is Balloon alone: CpuTune runs only when mom.conf names it.
  const raw: MomConfig['raw'] = { hypervisor: {}, engine: {}, ksm: {}, cputune: { enabled: false }, mom_rpc: {}, log: {} };
  let policyFiles: string[] | undefined;
  const base = dirname(resolve(file));
  const num = (key: string, v: string, int: boolean): number | undefined => {
    const n = Number(v);
    if (v === '' || !Number.isFinite(n) || (int && !Number.isInteger(n))) {
      problems.push(`${key}: expected ${int ? 'an integer' : 'a number'}, got "${v}"`);
      return undefined;
    }
    return n;
  };
  const seconds = (key: string, v: string) => {
    const n = num(key, v, false);
    if (n !== undefined && n <= 0) problems.push(`${key}: expected seconds > 0, got ${v}`);
    return n;
  };
  const main = ini.get('main') ?? new Map<string, string>();
  const host = main.get('host-monitor-interval');
  const guest = main.get('guest-monitor-interval');
  for (const [k, v] of main) {
    const key = `main.${k}`;
    switch (k) {
      case 'policy-dir':
        if (v) raw.engine!.policy_dir = resolve(base, v);
        break;
      case 'policy':
        if (v) policyFiles = [resolve(base, v)];
        break;
      case 'host-monitor-interval':
      case 'guest-monitor-interval': {
        const n = seconds(key, v);
        if (n === undefined) break;
        // ballast collects host and guests together: at the shorter of the two intervals.
        const prev = raw.engine!.stats_interval as number | undefined;
        raw.engine!.stats_interval = prev === undefined ? n : Math.min(prev, n);
        if (host !== undefined && guest !== undefined && host !== guest && k === 'guest-monitor-interval') {
          notes.push(
            `main.host-monitor-interval (${host}) and main.guest-monitor-interval (${guest}) differ: ballast collects both every ${raw.engine!.stats_interval} s`,
          );
        }
        break;
      }
      case 'policy-engine-interval': {
        const n = seconds(key, v);
        if (n !== undefined) raw.engine!.policy_interval = n;
        break;
      }
      case 'sample-history-length': {
        const n = num(key, v, true);
        if (n !== undefined) raw.engine!.history_length = n;
        break;
      }
      case 'hypervisor-interface': {
        const h = v.toLowerCase();
        if (h === 'libvirt') raw.hypervisor!.driver = 'libvirt';
        else if (h.startsWith('vdsm'))
          problems.push(
            `${key}: "${v}" asks MOM to get guest data from vdsm; ballast reads it from libvirtd directly (vdsm's hosts run libvirtd): set "hypervisor-interface: libvirt" (see docs/ovirt.md)`,
          );
        else
          problems.push(
            `${key}: "${v}" is not supported; ballast talks to libvirt (hypervisor-interface: libvirt), or to QEMU's QMP sockets or its simulator through a ballast TOML config (--config)`,
          );
        break;
      }
      case 'libvirt-hypervisor-uri':
        if (v) raw.hypervisor!.uri = v;
        break;
      case 'controllers': {
        const list = v
          .split(',')
          .map((c) => c.trim().toLowerCase())
          .filter(Boolean);
        for (const c of list) if (!CONTROLLERS.has(c)) problems.push(`${key}: unknown controller "${c}" (MOM's are Balloon, KSM, CpuTune, IoTune)`);
        if (!list.includes('balloon'))
          notes.push(`${key}: without Balloon ballast still runs its balloon safeguards, and applies balloon_target only as the policy asks`);
        raw.ksm!.enabled = list.includes('ksm');
        raw.cputune!.enabled = list.includes('cputune');
        if (list.includes('iotune')) notes.push(`${key}: IoTune is not in this build of ballast: the policy's ioTune controls are evaluated and not applied`);
        break;
      }
      case 'rpc-port': {
        if (/^-?\d+$/.test(v)) {
          const port = Number(v);
          if (port > 65535) problems.push(`${key}: port ${port} is above 65535`);
          else if (port > 0) raw.mom_rpc!.port = port;
        } else if (v) raw.mom_rpc!.socket = resolve(base, v);
        break;
      }
      case 'main-loop-interval':
      case 'guest-manager-interval':
      case 'guest-manager-multi-thread':
        notes.push(`${key}: not needed by ballast (one loop; guests are found at every collection)`);
        break;
      case 'plot-dir':
        if (v) notes.push(`${key}: ballast does not write MOM's plots; use engine.record_file (a replayable record) or /metrics`);
        break;
      default:
        notes.push(`${key}: unknown to ballast, ignored`);
    }
  }
  const logging = ini.get('logging');
  for (const [k, v] of logging ?? []) {
    const key = `logging.${k}`;
    if (k === 'verbosity') {
      const level = verbosity(v);
      if (level) raw.log!.level = level;
      else problems.push(`${key}: expected 1-5 or debug, info, warn, error, critical; got "${v}"`);
    } else if (k === 'log') {
      if (v && v !== 'stdio') notes.push(`${key}: ballast logs to stderr (the journal under systemd), not to ${v}`);
    } else notes.push(`${key}: not used by ballast (the journal rotates its logs)`);
  }
  for (const s of ['host', 'guest']) {
    const c = ini.get(s)?.get('collectors');
    if (c)
      notes.push(
        `${s}.collectors: ballast collects every source it has (${c
          .split(',')
          .map((x) => x.trim())
          .join(', ')} included where it has them)`,
      );
  }
  for (const s of ini.keys()) {
    if (!['main', 'logging', 'host', 'guest'].includes(s)) notes.push(`[${s}]: not used by ballast`);
  }
  if (problems.length) throw new ConfigError(problems, file);
  // MOM with no policy-dir and no policy loads nothing; ballast's default directory is not MOM's.
  if (raw.engine!.policy_dir === undefined && !policyFiles)
    notes.push('main.policy-dir: not set; ballast uses engine.policy_dir (default /etc/ballast/policies)');
  return { raw, policyFiles, notes };
}

export function loadMomConfigFile(file: string): MomConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError([`cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`], file);
  }
  return momConfigFrom(parseIni(text, file), file);
}
