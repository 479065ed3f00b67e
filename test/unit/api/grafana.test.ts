// contrib/grafana/ballast.json must keep working as metrics change: every series its queries
// name is one the daemon exports, with labels it has, and the layout is a valid grid.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createMetrics } from '../../../src/api/metrics/index.js';
import type { DaemonPort } from '../../../src/api/port.js';

const dash = JSON.parse(readFileSync(new URL('../../../contrib/grafana/ballast.json', import.meta.url), 'utf8'));

/** The families and label names the daemon registers (a driver with a connection, so that every family exists). */
function exported(): Map<string, Set<string>> {
  const port = { onUpdate: () => () => {}, connection: () => ({ connected: true, reconnects: 0 }) } as unknown as DaemonPort;
  const out = new Map<string, Set<string>>();
  for (const m of createMetrics(port).getMetricsAsArray()) {
    const labels = new Set<string>(['instance', 'job', ...((m as unknown as { labelNames: string[] }).labelNames ?? [])]);
    if (String(m.type) === 'histogram') labels.add('le');
    out.set(m.name, labels);
    if (String(m.type) === 'histogram') for (const s of ['_bucket', '_sum', '_count']) out.set(m.name + s, labels);
  }
  return out;
}

function queries(): string[] {
  const exprs: string[] = dash.panels.flatMap((p: { targets?: { expr: string }[] }) => (p.targets ?? []).map((t) => t.expr));
  for (const v of dash.templating.list) if (v.type === 'query') exprs.push(v.query.query);
  return exprs;
}

test('every metric and label the Grafana dashboard queries is exported', () => {
  const known = exported();
  const exprs = queries();
  assert.ok(exprs.length >= 15, `queries: ${exprs.length}`);
  for (const e of exprs) {
    const names = e.match(/\bballast_[a-z0-9_]+/g) ?? [];
    assert.ok(names.length > 0, `${e} names a ballast metric`);
    for (const n of names) {
      assert.ok(known.has(n), `${n} (in ${e}) is exported`);
      const labels = known.get(n)!;
      for (const sel of e.matchAll(new RegExp(`${n}\\{([^}]*)\\}`, 'g'))) {
        for (const [, label] of sel[1]!.matchAll(/([a-z_]+)\s*=~?/g)) assert.ok(labels.has(label!), `${n} has label ${label}`);
      }
      // rate() and increase() belong on counters.
      if (new RegExp(`(rate|increase)\\(${n}\\b`).test(e)) assert.match(n, /_total$|_bucket$/, `${n} is a counter`);
    }
  }
});

test('the dashboard layout: unique ids, panels inside the 24-column grid, none overlapping', () => {
  const ids = dash.panels.map((p: { id: number }) => p.id);
  assert.equal(new Set(ids).size, ids.length);
  const cells = new Set<string>();
  for (const p of dash.panels) {
    const { x, y, w, h } = p.gridPos;
    assert.ok(x >= 0 && w > 0 && x + w <= 24, `${p.title} fits the grid`);
    for (let i = x; i < x + w; i++)
      for (let j = y; j < y + h; j++) {
        assert.ok(!cells.has(`${i},${j}`), `${p.title} overlaps another panel`);
        cells.add(`${i},${j}`);
      }
    for (const t of p.targets ?? []) assert.equal(t.datasource.uid, '$' + '{datasource}', 'every query uses the chosen data source');
  }
});
