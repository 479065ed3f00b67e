// Each HostSource reading a fixture tree through its root path, as the engine calls it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MeminfoSource } from '../../../src/host/meminfo.js';
import { VmstatSource } from '../../../src/host/vmstat.js';
import { PsiSource } from '../../../src/host/psi.js';
import { NumaSource } from '../../../src/host/numa.js';
import { HugepagesSource } from '../../../src/host/hugepages.js';
import { CpuSource } from '../../../src/host/cpu.js';
import { KsmSource } from '../../../src/host/ksm.js';
import { hostSources } from '../../../src/host/index.js';

const LIVE = join(import.meta.dirname, 'fixtures', 'live');

function tree(): string {
  const dir = mkdtempSync(join(tmpdir(), 'ballast-host-'));
  cpSync(LIVE, dir, { recursive: true });
  return dir;
}

test("vmstat source: first sample has no deltas, the second has the counters' growth", async (t) => {
  const root = tree();
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const src = new VmstatSource(root);
  const first = await src.collect();
  assert.equal(first.swap_in, null);
  writeFileSync(join(root, 'proc/vmstat'), 'pswpin 50\npswpout 70\npgfault 9000000\npgmajfault 2000\n');
  const base = { pswpin: 0, pswpout: 0 };
  const second = await src.collect();
  assert.equal(second.swap_in, 50 - base.pswpin);
  assert.equal(second.swap_out, 70 - base.pswpout);
  assert.ok((second.major_fault as number) > 0);
});

test('psi source: absent file gives nulls, not an error', async (t) => {
  const root = tree();
  t.after(() => rmSync(root, { recursive: true, force: true }));
  rmSync(join(root, 'proc/pressure'), { recursive: true });
  const nulls = { psi_some_avg10: null, psi_some_avg60: null, psi_full_avg10: null, psi_full_avg60: null };
  const ioNulls = { psi_io_some_avg10: null, psi_io_some_avg60: null, psi_io_full_avg10: null, psi_io_full_avg60: null };
  assert.deepEqual(await new PsiSource(root).collect(), { ...nulls, ...ioNulls });
});

test('psi source: memory and I/O pressure, each under its own names', async (t) => {
  const root = tree();
  t.after(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(join(root, 'proc/pressure'), { recursive: true });
  writeFileSync(join(root, 'proc/pressure/memory'), 'some avg10=0.50 avg60=0.20 avg300=0.10 total=1\nfull avg10=0.10 avg60=0.05 avg300=0.00 total=1\n');
  writeFileSync(
    join(root, 'proc/pressure/io'),
    'some avg10=42.00 avg60=11.29 avg300=10.90 total=555254390\nfull avg10=30.00 avg60=4.44 avg300=5.39 total=419074301\n',
  );
  assert.deepEqual(await new PsiSource(root).collect(), {
    psi_some_avg10: 0.5,
    psi_some_avg60: 0.2,
    psi_full_avg10: 0.1,
    psi_full_avg60: 0.05,
    psi_io_some_avg10: 42,
    psi_io_some_avg60: 11.29,
    psi_io_full_avg10: 30,
    psi_io_full_avg60: 4.44,
  });
});

test('ksm source: counters, shareable = summed guest RSS, ksmd cpu from its tick delta', async (t) => {
  const root = tree();
  t.after(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(join(root, 'proc/2000'));
  writeFileSync(join(root, 'proc/2000/status'), 'Name:\tqemu-system-x86\nVmRSS:\t  300000 kB\n');
  let clock = 100;
  const src = new KsmSource({ root, guestPids: () => [1234, 2000, 99999], now: () => clock });
  const a = await src.collect();
  assert.equal(a.ksm_run, 0);
  assert.equal(a.ksm_pages_to_scan, 100);
  assert.equal(a.ksm_shareable, 2160 + 300000, 'missing pid 99999 counts 0');
  assert.equal(a.ksmd_cpu_usage, null);
  // ksmd used 25 ticks (0.25 s) in 5 s: 5% of a CPU.
  writeFileSync(join(root, 'proc/37/stat'), '37 (ksmd) S 2 0 0 0 -1 2097216 0 0 0 0 20 5 0 0 25 5 1 0 27 0 0');
  clock = 105;
  const b = await src.collect();
  assert.equal(b.ksmd_cpu_usage, 5);
});

test('numa, hugepages, cpu, meminfo sources on the live fixture', async () => {
  assert.equal((await new NumaSource(LIVE).collect()).numa_node_count, 1);
  assert.equal((await new HugepagesSource(LIVE).collect()).hugepage_size, 2048);
  assert.deepEqual(await new CpuSource(LIVE).collect(), { cpu_count: 2 });
  assert.equal((await new MeminfoSource(LIVE).collect()).mem_available, 24684084);
});

test('hostSources on the live system: every MOM host field is there, memory in KiB', async () => {
  const merged: Record<string, number | null> = {};
  for (const s of hostSources({ guestPids: () => [process.pid] })) Object.assign(merged, await s.collect());
  for (const f of [
    'mem_available',
    'mem_free',
    'mem_unused',
    'anon_pages',
    'swap_in',
    'swap_out',
    'swap_total',
    'swap_usage',
    'major_fault',
    'minor_fault',
    'ksm_run',
    'ksm_pages_to_scan',
    'ksm_sleep_millisecs',
    'ksm_pages_shared',
    'ksm_pages_sharing',
    'ksm_pages_unshared',
    'ksm_pages_volatile',
    'ksm_full_scans',
    'ksm_shareable',
    'ksmd_cpu_usage',
    'cpu_count',
  ]) {
    assert.ok(f in merged, `missing ${f}`);
  }
  assert.ok((merged.ksm_shareable as number) > 1000, 'our own RSS counted');
  assert.ok((merged.mem_free as number) <= (merged.mem_available as number));
});

test('ksm source: the directory is listed once, again after a file failed to read, and now and then', async (t) => {
  const root = tree();
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const ksm = join(root, 'sys/kernel/mm/ksm');
  const src = new KsmSource({ root });
  assert.equal((await src.collect()).ksm_pages_to_scan, 100);
  // A new attribute is not looked for at every collection...
  writeFileSync(join(ksm, 'brand_new_counter'), '5\n');
  assert.equal((await src.collect()).ksm_brand_new_counter, undefined);
  // ...but a known one that fails to read makes the next collection list the directory again.
  rmSync(join(ksm, 'pages_to_scan'));
  assert.equal((await src.collect()).ksm_pages_to_scan, null);
  const relisted = await src.collect();
  assert.equal(relisted.ksm_brand_new_counter, 5);
  assert.equal(relisted.ksm_pages_to_scan, null);
  // And every 60 collections it is listed anyway.
  writeFileSync(join(ksm, 'later_counter'), '7\n');
  let seen: unknown;
  for (let i = 0; i < 60 && seen === undefined; i++) seen = (await src.collect()).ksm_later_counter;
  assert.equal(seen, 7);
});

test('ksm source: counters and the knobs policies drive are read at every collection, the other settings every 15th', async (t) => {
  const root = tree();
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const ksm = join(root, 'sys/kernel/mm/ksm');
  writeFileSync(join(ksm, 'use_zero_pages'), '0\n');
  writeFileSync(join(ksm, 'merge_across_nodes'), '1\n');
  const src = new KsmSource({ root });
  assert.equal((await src.collect()).ksm_use_zero_pages, 0);
  writeFileSync(join(ksm, 'use_zero_pages'), '1\n');
  writeFileSync(join(ksm, 'merge_across_nodes'), '0\n');
  writeFileSync(join(ksm, 'pages_to_scan'), '555\n');
  const next = await src.collect();
  assert.equal(next.ksm_pages_to_scan, 555, 'a policy knob: read now');
  assert.equal(next.ksm_merge_across_nodes, 0, 'a policy knob: read now');
  assert.equal(next.ksm_use_zero_pages, 0, 'a setting: the last value read, until its next read');
  const seen: unknown[] = [];
  for (let i = 0; i < 15; i++) seen.push((await src.collect()).ksm_use_zero_pages);
  assert.equal(seen.at(-1), 1, 'read again within 15 collections');
  assert.ok(seen.indexOf(1) >= 12, `not read again before its turn (${seen.join(',')})`);
});

test('numa: the node listing is kept between collections; a node that goes away is dropped and the list read again', async () => {
  const root = tree();
  const node = (n: number, free: number) => {
    mkdirSync(join(root, `sys/devices/system/node/node${n}`), { recursive: true });
    writeFileSync(join(root, `sys/devices/system/node/node${n}/meminfo`), `Node ${n} MemTotal: 2000 kB\nNode ${n} MemFree: ${free} kB\n`);
  };
  node(1, 500);
  const src = new NumaSource(root);
  const a = await src.collect();
  assert.equal(a.numa_node_count, 2);
  assert.equal(a.node1_mem_free, 500);
  node(1, 400);
  assert.equal((await src.collect()).node1_mem_free, 400, 'the files are read every collection');
  rmSync(join(root, 'sys/devices/system/node/node1'), { recursive: true });
  const b = await src.collect();
  assert.equal(b.numa_node_count, 1);
  assert.equal(b.node1_mem_free, undefined);
  node(2, 700);
  assert.equal((await src.collect()).node2_mem_free, 700, 'listed again after a node went away');
  rmSync(root, { recursive: true, force: true });
});
