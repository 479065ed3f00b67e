// The pure parsers, on files captured from this machine (fixtures/live) and on edge cases.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { keyValue, parseKeyValues } from '../../../src/host/files.js';
import { parseMeminfo, meminfoStats } from '../../../src/host/meminfo.js';
import { parseVmstat, vmstatDeltas } from '../../../src/host/vmstat.js';
import { parsePsi } from '../../../src/host/psi.js';
import { parseNodeMeminfo, numaStats } from '../../../src/host/numa.js';
import { hugepageStats } from '../../../src/host/hugepages.js';
import { parseCpuList } from '../../../src/host/cpu.js';
import { parseStatCpuTicks, parseStatComm, parseStatusRss, parseStatusTgid } from '../../../src/host/process.js';
import { ksmFieldsFromFiles, parseSelection } from '../../../src/host/ksm-sysfs.js';
import { cpuPercent } from '../../../src/host/ksm.js';

const LIVE = join(import.meta.dirname, 'fixtures', 'live');
const live = (p: string) => readFileSync(join(LIVE, p), 'utf8');

test("meminfo: MOM fields from this machine's /proc/meminfo", () => {
  const kv = parseMeminfo(live('proc/meminfo'));
  const s = meminfoStats(kv);
  assert.equal(s.mem_available, 24684084);
  assert.equal(s.mem_unused, 24126608);
  assert.equal(s.mem_free, 24126608 + 3196 + 343592);
  assert.equal(s.anon_pages, 32528);
  assert.equal(s.swap_total, 0);
  assert.equal(s.swap_usage, 0);
});

test('meminfo: swap usage is total minus free; missing fields are null; no MemTotal is an error', () => {
  const s = meminfoStats(parseMeminfo('MemTotal: 1000 kB\nMemFree: 100 kB\nSwapTotal: 500 kB\nSwapFree: 120 kB\n'));
  assert.equal(s.swap_usage, 380);
  assert.equal(s.mem_free, 100); // no Buffers/Cached lines: only MemFree
  assert.equal(s.anon_pages, null);
  assert.throws(() => parseMeminfo('garbage\n'), /no MemTotal/);
});

test('vmstat: live counters parse; deltas are null first, then per interval, minor excludes major', () => {
  const c = parseVmstat(live('proc/vmstat'));
  assert.ok(c.pgfault > 0 && c.pgmajfault > 0);
  assert.deepEqual(vmstatDeltas(null, c), { swap_in: null, swap_out: null, major_fault: null, minor_fault: null });
  const next = { pswpin: c.pswpin + 7, pswpout: c.pswpout + 3, pgmajfault: c.pgmajfault + 2, pgfault: c.pgfault + 102 };
  assert.deepEqual(vmstatDeltas(c, next), { swap_in: 7, swap_out: 3, major_fault: 2, minor_fault: 100 });
  assert.equal(vmstatDeltas(next, c).swap_in, null, 'a counter going backwards is not a negative rate');
  assert.throws(() => parseVmstat('nr_free_pages 1\n'), /pswpin/);
});

test('vmstat deltas are never negative and sum across intervals (property)', () => {
  const counters = fc
    .record({ pswpin: fc.nat(), pswpout: fc.nat(), pgmajfault: fc.nat(1000), pgfault: fc.nat() })
    .map((c) => ({ ...c, pgfault: c.pgfault + c.pgmajfault }));
  const inc = fc.record({ pswpin: fc.nat(1e6), pswpout: fc.nat(1e6), pgmajfault: fc.nat(1e6), minor: fc.nat(1e6) });
  fc.assert(
    fc.property(counters, inc, inc, (a, d1, d2) => {
      const b = {
        pswpin: a.pswpin + d1.pswpin,
        pswpout: a.pswpout + d1.pswpout,
        pgmajfault: a.pgmajfault + d1.pgmajfault,
        pgfault: a.pgfault + d1.pgmajfault + d1.minor,
      };
      const c = {
        pswpin: b.pswpin + d2.pswpin,
        pswpout: b.pswpout + d2.pswpout,
        pgmajfault: b.pgmajfault + d2.pgmajfault,
        pgfault: b.pgfault + d2.pgmajfault + d2.minor,
      };
      const x = vmstatDeltas(a, b),
        y = vmstatDeltas(b, c),
        z = vmstatDeltas(a, c);
      for (const k of ['swap_in', 'swap_out', 'major_fault', 'minor_fault']) {
        assert.ok((x[k] as number) >= 0);
        assert.equal((x[k] as number) + (y[k] as number), z[k]);
      }
      assert.equal(x.minor_fault, d1.minor);
    }),
  );
});

test('psi: live file, real numbers, missing lines null, garbage ignored', () => {
  assert.deepEqual(parsePsi(live('proc/pressure/memory')), { psi_some_avg10: 0, psi_some_avg60: 0, psi_full_avg10: 0, psi_full_avg60: 0 });
  assert.deepEqual(parsePsi('some avg10=1.50 avg60=0.25 avg300=0.10 total=12345\n'), {
    psi_some_avg10: 1.5,
    psi_some_avg60: 0.25,
    psi_full_avg10: null,
    psi_full_avg60: null,
  });
  assert.deepEqual(parsePsi('some avg10=x avg60=\n\u0000\u0001'), { psi_some_avg10: null, psi_some_avg60: null, psi_full_avg10: null, psi_full_avg60: null });
});

test('numa: node meminfo of this machine and a two-node host', () => {
  const n0 = parseNodeMeminfo(live('sys/devices/system/node/node0/meminfo'));
  assert.equal(n0.node, 0);
  assert.equal(n0.memFree, 3597920);
  const n1 = parseNodeMeminfo('Node 1 MemTotal:  2000 kB\nNode 1 MemFree:   500 kB\n');
  assert.deepEqual(numaStats([n0, n1]), { numa_node_count: 2, node0_mem_free: 3597920, node0_mem_total: 4155596, node1_mem_free: 500, node1_mem_total: 2000 });
  assert.throws(() => parseNodeMeminfo('MemFree: 1 kB'), /Node N/);
});

test('hugepages: pool and THP fields, used = (total - free) * size', () => {
  const live0 = hugepageStats(parseMeminfo(live('proc/meminfo')));
  assert.deepEqual(live0, {
    hugepages_total: 0,
    hugepages_free: 0,
    hugepages_rsvd: 0,
    hugepages_surp: 0,
    hugepage_size: 2048,
    hugetlb_total: 0,
    hugetlb_used: 0,
    anon_huge_pages: 0,
  });
  const s = hugepageStats(
    parseMeminfo(
      'MemTotal: 100 kB\nAnonHugePages: 4096 kB\nHugePages_Total: 10\nHugePages_Free: 4\nHugePages_Rsvd: 1\nHugePages_Surp: 0\nHugepagesize: 2048 kB\n',
    ),
  );
  assert.equal(s.hugetlb_used, 6 * 2048);
  assert.equal(s.hugetlb_total, 10 * 2048);
  assert.equal(s.anon_huge_pages, 4096);
});

test('cpu list ranges', () => {
  assert.equal(parseCpuList(live('sys/devices/system/cpu/online')), 2);
  assert.equal(parseCpuList('0-3,6,8-9\n'), 7);
  assert.equal(parseCpuList('0'), 1);
  assert.throws(() => parseCpuList('3-1'), /backwards/);
  assert.throws(() => parseCpuList('a-b'), /cannot read/);
});

test('process stat and status: ksmd ticks, names with spaces and parentheses, RSS, Tgid', () => {
  assert.equal(parseStatCpuTicks(live('proc/37/stat')), 0);
  assert.equal(parseStatComm(live('proc/37/stat')), 'ksmd');
  const odd = '4242 (qemu (x) 1) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0 1 1 1';
  assert.equal(parseStatCpuTicks(odd), 325);
  assert.equal(parseStatComm(odd), 'qemu (x) 1');
  assert.throws(() => parseStatCpuTicks('garbage'), /parentheses/);
  assert.equal(parseStatusRss(live('proc/1234/status')), 2160);
  assert.ok((parseStatusTgid(live('proc/1234/status')) ?? 0) > 0);
  assert.equal(parseStatusRss('Name:\tkthreadd\nState:\tS\n'), null, 'kernel threads have no VmRSS');
});

test('ksm sysfs files -> ksm_* fields; advisor_mode as an index; MOM fields always present', () => {
  const files: Record<string, string> = {};
  for (const f of [
    'run',
    'pages_to_scan',
    'sleep_millisecs',
    'pages_shared',
    'full_scans',
    'general_profit',
    'advisor_mode',
    'smart_scan',
    'merge_across_nodes',
  ]) {
    files[f] = live(`sys/kernel/mm/ksm/${f}`);
  }
  const s = ksmFieldsFromFiles(files);
  assert.equal(s.ksm_run, 0);
  assert.equal(s.ksm_pages_to_scan, 100);
  assert.equal(s.ksm_sleep_millisecs, 20);
  assert.equal(s.ksm_advisor_mode, 0);
  assert.equal(s.ksm_smart_scan, 1);
  assert.equal(s.ksm_pages_volatile, null, 'absent file -> null, not missing');
  assert.equal(ksmFieldsFromFiles({ advisor_mode: 'none [scan-time]\n' }).ksm_advisor_mode, 1);
  assert.equal(ksmFieldsFromFiles({}).ksm_run, null);
  assert.equal(parseSelection('[none] scan-time'), 'none');
  assert.equal(parseSelection('none'), null);
});

test('ksmd cpu percent from ticks', () => {
  assert.equal(cpuPercent(null, 100, 5), null);
  assert.equal(cpuPercent(100, 150, 5), 10); // 50 ticks = 0.5 s of CPU in 5 s
  assert.equal(cpuPercent(150, 100, 5), null);
  assert.equal(cpuPercent(100, 100, 0), null);
});

test('guest RAM RSS: the smallest anonymous mapping at least as big as the guest, not the process RSS', async () => {
  const { parseGuestRamRss } = await import('../../../src/host/process.js');
  const map = (start: number, mib: number, rssKiB: number, tail = '00:00 0') =>
    `${start.toString(16)}-${(start + mib * 1048576).toString(16)} rw-p 00000000 ${tail}\nSize:           ${mib * 1024} kB\nRss:            ${rssKiB} kB\nAnonHugePages:  0 kB\n`;
  const smaps = [
    map(0x7f0000000000, 1024, 47 * 1024), // TCG code buffer
    map(0x7f4000000000, 256, 96 * 1024), // guest RAM
    map(0x7f5000000000, 300, 5 * 1024, '08:01 1234 /usr/lib/x86_64-linux-gnu/libfoo.so'), // a file
    map(0x7f6000000000, 14, 14 * 1024), // heap arena
  ].join('');
  assert.equal(parseGuestRamRss(smaps, 256 * 1024), 96 * 1024);
  assert.equal(parseGuestRamRss(smaps, 2048 * 1024), null, 'no mapping big enough');
  assert.equal(parseGuestRamRss('garbage\nmore garbage', 1024), null);
});

test('parseKeyValues: the last integer of a line (optionally "kB") and the key before one separator', () => {
  const kv = parseKeyValues(
    [
      'MemTotal:       24684084 kB',
      'nr_free_pages 6031652',
      'Node 0 MemFree:  123 kB',
      '  indented_key   -42  ',
      'Hugepagesize:    2048 kB',
      'name:\tqemu', // not a number: skipped
      'two::colons 5', // a key holds no ':'
      'a:b 5',
      'nokey',
      ':9',
      'x 1 2', // the value is the last token
      'y-5', // no separator
      'z 7 kB extra',
      'w 8kB',
    ].join('\n'),
  );
  assert.deepEqual(Object.fromEntries(kv), {
    MemTotal: 24684084,
    nr_free_pages: 6031652,
    'Node 0 MemFree': 123,
    indented_key: -42,
    Hugepagesize: 2048,
    'x 1': 2,
  });
});

test('parseKeyValues: every live file parses to what a per-line regular expression gives', () => {
  const byRegex = (text: string) => {
    const out = new Map<string, number>();
    for (const line of text.split('\n')) {
      const m = /^\s*([^:\s][^:]*?)\s*[:\s]\s*(-?\d+)(?:\s+kB)?\s*$/.exec(line);
      if (m) out.set(m[1]!, Number(m[2]));
    }
    return out;
  };
  for (const f of ['proc/meminfo', 'proc/vmstat']) assert.deepEqual(parseKeyValues(live(f)), byRegex(live(f)), f);
  const tok = fc.constantFrom('Mem', 'Node', '0', '12', '-3', ':', ' ', '\t', 'kB', ' kB', '(file)', '\r');
  fc.assert(
    fc.property(
      fc.array(
        fc.array(tok, { maxLength: 8 }).map((a) => a.join('')),
        { maxLength: 6 },
      ),
      (lines) => {
        const text = lines.join('\n');
        assert.deepEqual(parseKeyValues(text), byRegex(text));
      },
    ),
    { numRuns: 2000 },
  );
});

test('keyValue: one key of a key-value text, as parseKeyValues reads it, from the first line whose key it is', () => {
  const text = ['MemTotal:       2000 kB', 'Mem: 7', 'pgfault 10', 'pgmajfault 3', 'xpgfault 99', 'Mem 1 2', 'name:\tqemu', 'Tgid:\t42', 'Mem: 8'].join('\n');
  assert.equal(keyValue(text, 'MemTotal'), 2000);
  assert.equal(keyValue(text, 'Mem'), 7, 'not MemTotal, not "Mem 1", the first "Mem" line');
  assert.equal(keyValue(text, 'pgfault'), 10);
  assert.equal(keyValue(text, 'pgmajfault'), 3);
  assert.equal(keyValue(text, 'Tgid'), 42);
  assert.equal(keyValue(text, 'name'), undefined, 'not a number');
  assert.equal(keyValue(text, 'Total'), undefined, 'only at the start of a line');
  assert.equal(keyValue(text, 'nokey'), undefined);
  assert.equal(keyValue('', 'x'), undefined);
  // Every key of the live files (none repeats, none is indented) reads as parseKeyValues has it.
  for (const f of ['proc/meminfo', 'proc/vmstat', 'sys/devices/system/node/node0/meminfo']) {
    const t = live(f);
    for (const [k, v] of parseKeyValues(t)) assert.equal(keyValue(t, k), v, `${f}: ${k}`);
  }
  // Random texts: the first line (not indented) whose key is k gives k's value.
  const tok = fc.constantFrom('Mem', 'Node', '0', '12', '-3', ':', ' ', '\t', 'kB', ' kB', '\r');
  fc.assert(
    fc.property(
      fc.array(
        fc.array(tok, { minLength: 1, maxLength: 8 }).map((a) => a.join('')),
        { maxLength: 6 },
      ),
      (lines) => {
        const text = lines.join('\n');
        const first = new Map<string, number>();
        for (const line of lines) {
          const kv = parseKeyValues(line);
          for (const [k, v] of kv) if (line.startsWith(k) && !first.has(k)) first.set(k, v);
        }
        for (const [k, v] of first) assert.equal(keyValue(text, k), v, JSON.stringify({ text, k }));
      },
    ),
    { numRuns: 2000 },
  );
});
