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
  const lines = text.split('\n');
  const rows = lines.slice(lines.findIndex((l) => /processes \(\d+ shown/.test(l))).filter((l) => /^\s+\d+\s+\d+/.test(l));
  assert.equal(rows.length, 2, 'the idle process is hidden without --all');
  // rmap items per merged page: 5000 / 2990 and 50 / 10; no maps file in this tree.
  assert.match(rows[0]!, /200\s+2990\s+11\.7 MiB\s+9000000\s+1\.7\s+-\s+process\s+scene-server/);
  assert.match(rows[1]!, /100\s+10 .*\s5\.0\s.*madvise\s+qemu-small/);
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

test('grouped by cgroup: a container, a service and a VM summed; the cost rule per process and per group', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'ballast-ksmgr-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  cpSync(join(LIVE, 'sys'), join(root, 'sys'), { recursive: true });
  mkdirSync(join(root, 'proc/sys/vm'), { recursive: true });
  writeFileSync(join(root, 'proc/sys/vm/max_map_count'), '1000\n');
  const docker = '/system.slice/docker-4f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff.scope';
  const proc = (pid: number, comm: string, cgroup: string, merging: number, rmap: number, profit: number, maps: number) => {
    const dir = join(root, 'proc', String(pid));
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'comm'), comm + '\n');
    writeFileSync(join(dir, 'cgroup'), cgroup);
    writeFileSync(
      join(dir, 'ksm_stat'),
      `ksm_rmap_items ${rmap}\nksm_merging_pages ${merging}\nksm_process_profit ${profit}\nksm_merge_any: yes\nksm_mergeable: yes\n`,
    );
    writeFileSync(join(dir, 'maps'), '7f0000000000-7f0000001000 rw-p 00000000 00:00 0\n'.repeat(maps));
  };
  // Two workers of one container (v2 path), one service on a hybrid host (v1 memory path), a
  // VM, and a process whose KSM costs more than it saves (ksm_process_profit as the kernel
  // computes it: merged pages x 4096 - rmap items x 64).
  proc(10, 'worker', `0::${docker}\n`, 1000, 1100, 1000 * 4096 - 1100 * 64, 12);
  proc(11, 'worker', `0::${docker}\n`, 500, 600, 500 * 4096 - 600 * 64, 850);
  proc(20, 'scanner', '4:memory:/system.slice/scanner.service\n1:name=systemd:/system.slice/scanner.service\n0::/\n', 10, 6400, 10 * 4096 - 6400 * 64, 3);
  proc(30, 'qemu-system-x86', '0::/machine.slice/machine-qemu\\x2d1\\x2dweb\\x2d1.scope/libvirt/emulator\n', 300, 310, 300 * 4096 - 310 * 64, 40);
  proc(40, 'bash', '0::/user.slice/user-0.slice/session-3.scope\n', 0, 0, 0, 5);
  const s = await gatherKsmStatus(root);
  assert.equal(s.max_map_count, 1000);
  assert.equal(s.rmap_break_even, 64);
  assert.deepEqual(
    s.groups.map((g) => [g.kind, g.name, g.processes, g.merging_pages, g.rmap_items, g.costs_more]),
    [
      ['container', 'docker 4f1e2d3c4b5a', 2, 1500, 1700, false],
      ['vm', 'web-1', 1, 300, 310, false],
      ['service', 'scanner.service', 1, 10, 6400, true],
    ],
    'the session KSM does not touch is no group',
  );
  const container = s.groups[0]!;
  assert.equal(container.profit_bytes, 1500 * 4096 - 1700 * 64);
  assert.equal(container.rmap_per_page!.toFixed(3), (1700 / 1500).toFixed(3));
  const scanner = s.processes.find((p) => p.pid === 20)!;
  assert.equal(scanner.rmap_per_page, 640);
  assert.equal(scanner.costs_more, true);
  assert.equal(scanner.cgroup, '/system.slice/scanner.service', 'the v1 memory path when the v2 tree is empty');
  assert.equal(s.processes.find((p) => p.pid === 11)!.map_count, 850);
  const text = formatKsmStatus(s);
  assert.match(text, /by cgroup \(3 that KSM touches\)/);
  assert.match(text, /1500\s+5\.9 MiB\s+6035200\s+1\.1\s+2\s+container\s+docker 4f1e2d3c4b5a \(\/system\.slice\/docker-4f1e/);
  assert.match(text, /10\s+0\.0 MiB\s+-368640\s+640 !\s+1\s+service\s+scanner\.service/);
  assert.match(text, /\b11\s+500\s.*\s850\s+process\s+worker \(85% of vm\.max_map_count\)/);
  assert.match(text, /\b20\s+10\s.*640 !\s+3\s+process\s+scanner$/m);
});
