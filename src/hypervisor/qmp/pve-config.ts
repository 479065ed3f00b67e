// A Proxmox VE VM's configuration, /etc/pve/qemu-server/<vmid>.conf, for what ballast needs:
// the VM's name and its memory floor. The format (qm.conf(5)): `key: value` lines; lines
// starting with # are the VM's description; a line `[name]` starts a snapshot's (or pending
// changes') section, which describes another state of the VM and is not read here.
//   memory   MiB the VM has (a property string: `4096` or `current=4096`; 512 when absent)
//   balloon  MiB the VM keeps at least when ballooned; 0: no balloon device (ballooning off);
//            absent: the minimum is `memory` (fixed size)
//   shares   pvestatd's weight for its own auto-ballooning (0: pvestatd leaves the VM alone)
//   name     the VM's name
//   lock     set while Proxmox migrates, backs up, snapshots... the VM
import { open } from 'node:fs/promises';
import { join } from 'node:path';

export interface PveVmConfig {
  memoryMiB: number;
  /** null: not set (the minimum is memoryMiB); 0: ballooning off. */
  balloonMiB: number | null;
  shares: number | null;
  name: string | null;
  lock: string | null;
}

export class PveConfigError extends Error {
  override name = 'PveConfigError';
}

/** pmxcfs holds files of at most 1 MiB; anything bigger is not a VM config. */
const MAX_BYTES = 1024 * 1024;
const DEFAULT_MEMORY_MIB = 512;
const USED = new Set(['memory', 'balloon', 'shares', 'name', 'lock']);

function excerpt(s: string): string {
  const p = s.replace(/[^\x20-\x7e]/g, '?');
  return JSON.stringify(p.length > 60 ? `${p.slice(0, 60)}...` : p);
}

function wholeMiB(v: string, where: string, key: string, min: number, max: number): number {
  if (!/^\d{1,9}$/.test(v) || Number(v) < min || Number(v) > max) {
    throw new PveConfigError(`${where}: ${key} must be a whole number from ${min} to ${max}, not ${excerpt(v)}`);
  }
  return Number(v);
}

/** `memory`'s property string: the current size is the default key or `current=`. */
function memoryOf(v: string, where: string): number {
  let current: string | undefined;
  for (const part of v.split(',')) {
    const eq = part.indexOf('=');
    const [k, val] = eq < 0 ? ['current', part] : [part.slice(0, eq).trim(), part.slice(eq + 1).trim()];
    if (k === 'current') {
      if (current !== undefined) throw new PveConfigError(`${where}: memory gives its size twice: ${excerpt(v)}`);
      current = val.trim();
    }
  }
  if (current === undefined) throw new PveConfigError(`${where}: memory has no size: ${excerpt(v)}`);
  return wholeMiB(current, where, 'memory', 16, 2 ** 30);
}

/** Parses a VM config's text; `file` names it in errors (with the line). */
export function parsePveConfig(text: string, file: string): PveVmConfig {
  const seen = new Map<string, { value: string; line: number }>();
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.replace(/\r$/, '');
    const t = line.trim();
    if (t === '' || t.startsWith('#')) continue;
    if (t.startsWith('[')) break;
    const m = /^([a-zA-Z][a-zA-Z0-9_-]*):\s?(.*)$/.exec(line);
    if (!m) throw new PveConfigError(`${file}:${i + 1}: not a "key: value" line: ${excerpt(line)}`);
    const key = m[1]!;
    if (!USED.has(key)) continue;
    const prev = seen.get(key);
    if (prev) throw new PveConfigError(`${file}:${i + 1}: ${key} is set twice (first on line ${prev.line})`);
    seen.set(key, { value: m[2]!.trim(), line: i + 1 });
  }
  const at = (k: string) => `${file}:${seen.get(k)!.line}`;
  const memoryMiB = seen.has('memory') ? memoryOf(seen.get('memory')!.value, at('memory')) : DEFAULT_MEMORY_MIB;
  const balloonMiB = seen.has('balloon') ? wholeMiB(seen.get('balloon')!.value, at('balloon'), 'balloon', 0, 2 ** 30) : null;
  if (balloonMiB !== null && balloonMiB > memoryMiB) {
    throw new PveConfigError(`${at('balloon')}: balloon ${balloonMiB} MiB is more than the VM's memory ${memoryMiB} MiB`);
  }
  const shares = seen.has('shares') ? wholeMiB(seen.get('shares')!.value, at('shares'), 'shares', 0, 50000) : null;
  const clean = (k: string): string | null => {
    const v = seen
      .get(k)
      ?.value.replace(/[^\x20-\x7e]/g, '')
      .slice(0, 128);
    return v ? v : null;
  };
  return { memoryMiB, balloonMiB, shares, name: clean('name'), lock: clean('lock') };
}

/** Reads `<dir>/<vmid>.conf`. Throws PveConfigError saying what is wrong (missing, too big, garbled). */
export async function readPveConfig(dir: string, vmid: string): Promise<PveVmConfig> {
  if (!/^\d+$/.test(vmid)) throw new PveConfigError(`${vmid} is not a Proxmox VE VM id`);
  const file = join(dir, `${vmid}.conf`);
  let text: string;
  try {
    const fh = await open(file, 'r');
    try {
      if ((await fh.stat()).size > MAX_BYTES) throw new PveConfigError(`${file}: more than ${MAX_BYTES} bytes, not a VM config`);
      text = await fh.readFile({ encoding: 'utf8' });
    } finally {
      await fh.close();
    }
  } catch (err) {
    if (err instanceof PveConfigError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    throw new PveConfigError(`${file}: ${code === 'ENOENT' ? 'no such file (not a VM of this node?)' : (err as Error).message}`);
  }
  if (text.length > MAX_BYTES) throw new PveConfigError(`${file}: more than ${MAX_BYTES} bytes, not a VM config`);
  return parsePveConfig(text, file);
}
