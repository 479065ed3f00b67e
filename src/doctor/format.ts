// The doctor's findings as a table for a terminal: one line per check, its fix under it.
import { countByStatus, exitCodeOf, type CheckResult, type CheckStatus } from './types.js';
import { printable } from '../printable.js';

// Problems in capitals, so they stand out in a long list of "ok".
const LABEL: Record<CheckStatus, string> = { ok: 'ok', warn: 'WARN', fail: 'FAIL', skip: 'skip' };

export function formatDoctor(results: readonly CheckResult[], header?: string): string {
  const idWidth = Math.max(5, ...results.map((r) => r.id.length));
  const pad = ' '.repeat(7 + idWidth + 2);
  const lines: string[] = [];
  if (header) lines.push(header, '');
  lines.push(`${'STATUS'.padEnd(7)}${'CHECK'.padEnd(idWidth + 2)}FINDING`);
  for (const r of results) {
    lines.push(`${LABEL[r.status].padEnd(7)}${r.id.padEnd(idWidth + 2)}${r.message}`);
    if (r.fix) lines.push(`${pad}fix: ${r.fix}`);
  }
  const n = countByStatus(results);
  const verdict =
    exitCodeOf(results) === 1
      ? 'something blocks ballast (exit 1)'
      : n.warn > 0
        ? 'nothing blocks ballast; the warnings cost it effect'
        : 'nothing blocks ballast';
  lines.push('', `${n.ok} ok, ${n.warn} warn, ${n.fail} fail, ${n.skip} skip: ${verdict}`);
  // Guest names and what libvirtd or QEMU said are in the findings: shown, never obeyed.
  return lines.map(printable).join('\n') + '\n';
}
