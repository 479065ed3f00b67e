import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatKsmStatus, gatherKsmStatus, parseKsmStat, statusFromFiles } from '../../../src/host/ksm-status.js';

const LIVE = join(import.meta.dirname, 'fixtures', 'live');
const REPO = join(import.meta.dirname, '..', '..', '..');

test("parseKsmStat: this kernel's format; older kernels' shorter file; not a ksm_stat", () => {
  const live = 'ksm_rmap_items 0\nksm_zero_pages 0\nksm_merging_pages 0\nksm_process_profit 0\nksm_merge_any: no\nksm_mergeable: no\n';
  assert.deepEqual(parseKsmStat(live), { merging_pages: 0, rmap_items: 0, zero_pages: 0, process_profit: 0, merge_any: false, mergeable: false });
  assert.deepEqual(parseKsmStat('ksm_rmap_items 9\nksm_merging_pages 5\n'), {
    merging_pages: 5,
    rmap_items: 9,
    zero_pages: null,
    process_profit: null,
    merge_any: null,
    mergeable: null,
  });
  assert.equal(parseKsmStat('hello'), null);
});

test('status from the live sysfs files: state, knobs (advisor as a word), counters', () => {
  const files: Record<string, string> = {};
  for (const f of ['run', 'pages_to_scan', 'advisor_mode', 'pages_sharing', 'general_profit', 'full_scans'])
    files[f] = readFileSync(join(LIVE, 'sys/kernel/mm/ksm', f), 'utf8');
  const s = statusFromFiles(files);
  assert.equal(s.state, 'stopped');
  assert.equal(s.knobs.advisor_mode, 'none');
  assert.equal(s.saved_kib, 0);
  assert.equal(statusFromFiles({ run: '2\n' }).state, 'unmerging');
  assert.equal(statusFromFiles({}).available, false);
});

function tree(): string {
  const root = mkdtempSync(join(tmpdir(), 'ballast-ksmst-'));
  cpSync(join(LIVE, 'sys'), join(root, 'sys'), { recursive: true });
  cpSync(join(LIVE, 'proc/37'), join(root, 'proc/37'), { recursive: true });
  writeFileSync(join(root, 'sys/kernel/mm/ksm/run'), '1\n');
  writeFileSync(join(root, 'sys/kernel/mm/ksm/pages_sharing'), '3000\n');
  const proc = (pid: number, comm: string, stat: string) => {
    mkdirSync(join(root, 'proc', String(pid)), { recursive: true });
    writeFileSync(join(root, 'proc', String(pid), 'comm'), comm + '\n');
    writeFileSync(join(root, 'proc', String(pid), 'ksm_stat'), stat);
  };
  proc(100, 'qemu-small', 'ksm_rmap_items 50\nksm_merging_pages 10\nksm_process_profit 1000\nksm_merge_any: no\nksm_mergeable: yes\n');
  proc(200, 'scene-server', 'ksm_rmap_items 5000\nksm_merging_pages 2990\nksm_process_profit 9000000\nksm_merge_any: yes\nksm_mergeable: yes\n');
  proc(300, 'idle', 'ksm_rmap_items 0\nksm_merging_pages 0\nksm_process_profit 0\nksm_merge_any: no\nksm_mergeable: no\n');
  return root;
}

test('processes sorted by merging pages, largest first; text view and CLI --json on a recorded tree', async (t) => {
  const root = tree();
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const s = await gatherKsmStatus(root);
  assert.equal(s.state, 'running');
  assert.equal(s.ksmd.pid, 37);
  assert.equal(s.per_process_source, 'ksm_stat');
  assert.deepEqual(
    s.processes.map((p) => p.pid),
    [200, 100, 300],
  );
  const text = formatKsmStatus(s, { top: 5 });
  assert.match(text, /KSM: running/);
  assert.match(text, /saved 11\.7 MiB/);
  const rows = text.split('\n').filter((l) => /^\s+\d+\s+\d+/.test(l));
  assert.equal(rows.length, 2, 'the idle process is hidden without --all');
  assert.match(rows[0]!, /200\s+2990\s+11\.7 MiB\s+9000000\s+process\s+scene-server/);
  assert.match(rows[1]!, /100\s+10 .*madvise\s+qemu-small/);
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'ksm', 'status', '--json', '--root', root, '--top', '1'], {
    cwd: REPO,
    encoding: 'utf8',
  });
  assert.equal(r.status, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.deepEqual(
    j.processes.map((p: { comm: string }) => p.comm),
    ['scene-server'],
  );
  assert.equal(j.counters.pages_sharing, 3000);
  const bad = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'ksm', 'status', '--top', 'x'], { cwd: REPO, encoding: 'utf8' });
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /--top must be a non-negative integer/);
});

test('kernel without per-process counters or without KSM says so', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'ballast-ksmst-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(join(root, 'proc/5'), { recursive: true });
  const none = await gatherKsmStatus(root);
  assert.match(formatKsmStatus(none), /not available on this kernel/);
  mkdirSync(join(root, 'sys/kernel/mm/ksm'), { recursive: true });
  writeFileSync(join(root, 'sys/kernel/mm/ksm/run'), '0\n');
  assert.match(formatKsmStatus(await gatherKsmStatus(root)), /no per-process KSM counters/);
});
