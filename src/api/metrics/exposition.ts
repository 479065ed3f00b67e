// Prometheus' text format (version 0.0.4) written directly, for the per-guest families: at a
// thousand guests they are 16,000 samples, and prom-client spends ~55 ms a scrape on them
// (hashing each label set on set(), then flattening and escaping it again on output). Here
// each guest's label set is escaped once per scrape and every family is one pass over the
// guests.

/** A label value as the format wants it: backslash, double quote and newline escaped. */
export function escapeLabelValue(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** HELP text: backslash and newline escaped. */
export function escapeHelp(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

/** A sample value as prom-client writes it. */
export function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

/** `{a="x",b="y"}` for the label names and values given. */
export function labelSet(names: readonly string[], values: readonly string[]): string {
  let s = '{';
  for (let i = 0; i < names.length; i++) s += `${i ? ',' : ''}${names[i]}="${escapeLabelValue(values[i]!)}"`;
  return `${s}}`;
}

/**
 * One family: HELP, TYPE, and a sample per row whose `value` is a number (null: no sample).
 * `labels` are complete label sets (from labelSet); the same set twice would be a duplicate
 * series, which the format forbids, so only the first is written.
 */
export function family<R>(
  name: string,
  type: 'gauge' | 'counter',
  help: string,
  rows: readonly R[],
  labels: readonly string[],
  value: (row: R) => number | null,
): string {
  const lines = [`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`];
  const seen = new Set<string>();
  for (let i = 0; i < rows.length; i++) {
    const v = value(rows[i]!);
    if (v === null) continue;
    const l = labels[i]!;
    if (seen.has(l)) continue;
    seen.add(l);
    lines.push(`${name}${l} ${formatValue(v)}`);
  }
  return lines.join('\n');
}
