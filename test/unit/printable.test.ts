// `ballast doctor` prints what libvirtd and QEMU said (guest names in its findings): a guest
// named with terminal escapes must not reach the terminal as escapes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatDoctor } from '../../src/doctor/format.js';

test("ballast doctor's table escapes control characters in findings and fixes", () => {
  const table = formatDoctor([{ id: 'guest.balloon', status: 'warn', message: 'guest esc\x1b]0;PWNED\x07 has no balloon', fix: 'add one to \x9b2J\u202evm' }]);
  assert.match(table, /guest esc\\x1b\]0;PWNED\\x07 has no balloon/);
  assert.match(table, /fix: add one to \\x9b2J\\u202evm/);
  // biome-ignore lint/suspicious/noControlCharactersInRegex: these are the characters meant
  assert.doesNotMatch(table, /[\x00-\x09\x0b-\x1f\x7f-\x9f\u202e]/);
});

test('ballast ksm status escapes process and cgroup names (any user names its own process)', async () => {
  const { formatKsmStatus } = await import('../../src/host/ksm-status.js');
  const proc = {
    pid: 42,
    comm: 'x\x1b[2Jy',
    cgroup: '/m',
    merging_pages: 10,
    rmap_items: 20,
    process_profit: 1,
    merge_any: false,
    mergeable: true,
    map_count: 5,
    rmap_per_page: 2,
    costs_more: false,
  };
  const text = formatKsmStatus({
    available: true,
    state: 'running',
    knobs: { run: 1 },
    counters: {},
    saved_kib: 0,
    ksmd: { pid: 1, cpu_seconds: 0 },
    processes: [proc],
    groups: [
      {
        cgroup: '/machine.slice/vm\x07',
        kind: 'vm',
        name: 'vm\x07',
        processes: 1,
        merging_pages: 10,
        rmap_items: 20,
        profit_bytes: 1,
        rmap_per_page: 2,
        costs_more: false,
      },
    ],
    per_process_source: 'ksm_stat',
    rmap_break_even: 64,
    max_map_count: 65530,
  } as never);
  assert.match(text, /x\\x1b\[2Jy/);
  assert.match(text, /vm\\x07/);
  // biome-ignore lint/suspicious/noControlCharactersInRegex: these are the characters meant
  assert.doesNotMatch(text, /[\x00-\x09\x0b-\x1f\x7f-\x9f]/);
});
