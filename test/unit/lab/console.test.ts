import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConsole, parseConsoleLine, summarizeConsole, balloonReady, validateWorkloadSpec } from '../../../src/lab/console.js';
import { BALLOON_MODULES } from '../../../src/lab/build.js';

const LOG = [
  '[    0.000000] Linux version 6.1.0-56-cloud-amd64',
  'BALLAST boot t=1.85 name=t1 kernel=6.1.0-56-cloud-amd64\r',
  ...BALLOON_MODULES.map((m, i) => `BALLAST module t=1.${90 + i} name=${m} status=loaded`),
  'BALLAST balloon t=2.04 status=bound device=virtio0',
  'BALLAST ready t=5.25',
  'BALLAST meminfo t=5.28 total_kib=223632 free_kib=189500 avail_kib=192760',
  'BALLAST workload-start t=5.296 spec=alloc:32,touch:4,loop report_s=2.0',
  'BALLAST phase t=5.303 idx=0 op=alloc arg=32 ws_kib=0',
  'BALLAST rate t=5.367 idx=0 op=alloc pages=8192 secs=0.063 pages_per_s=129064 ws_kib=32768',
  'BALLAST meminfo t=7.32 total_kib=223632 free_kib=15[    7.1] virtio_balloon: oops',
  'BALLAST rate t=7.368 idx=1 op=touch pages=16491264 secs=2.000 pages_per_s=8245570 ws_kib=32768',
].join('\n');

test('parseConsoleLine reads kind, time and fields; ignores kernel lines', () => {
  assert.equal(parseConsoleLine('[    0.1] hello'), null);
  const l = parseConsoleLine('garbage before BALLAST meminfo t=3.5 total_kib=10 free_kib=5 avail_kib=6\r');
  assert.deepEqual(l, { kind: 'meminfo', t: 3.5, fields: { t: '3.5', total_kib: '10', free_kib: '5', avail_kib: '6' } });
  assert.equal(parseConsoleLine('BALLAST ready')?.t, null);
});

test('a ballast line cut into by another writer is dropped, not misread', () => {
  assert.equal(parseConsoleLine('BALLAST meminfo t=7.32 total_kib=1 free_kib=15[    7.1] virtio_balloon: x'), null);
  assert.equal(parseConsoleLine('BALLAST rate t=abc'), null);
  assert.equal(parseConsoleLine('BALLAST Bad-Kind x=1'), null);
});

test('summarizeConsole: modules, balloon, meminfo and rates', () => {
  const s = summarizeConsole(parseConsole(LOG));
  assert.equal(s.booted, true);
  assert.equal(s.kernel, '6.1.0-56-cloud-amd64');
  assert.equal(balloonReady(s, BALLOON_MODULES), true);
  assert.equal(s.ready, true);
  assert.equal(s.workloadStarted, true);
  assert.equal(s.meminfo.length, 1, 'the garbled meminfo line is dropped');
  assert.deepEqual(s.meminfo[0], { t: 5.28, totalKiB: 223632, freeKiB: 189500, availKiB: 192760 });
  assert.deepEqual(
    s.rates.map((r) => [r.op, r.pagesPerS]),
    [
      ['alloc', 129064],
      ['touch', 8245570],
    ],
  );
  assert.equal(s.phases[0].arg, 32);
});

test('summarizeConsole keeps only the last boot, and a failed module is not ready', () => {
  const second = LOG.replace(/name=virtio_balloon status=loaded/, 'name=virtio_balloon status=failed err=x');
  const s = summarizeConsole(parseConsole(LOG + '\n' + second.split('\n').slice(0, 9).join('\n')));
  assert.equal(s.modules.virtio_balloon, 'failed');
  assert.equal(balloonReady(s, BALLOON_MODULES), false);
  assert.equal(s.meminfo.length, 0);
});

test('validateWorkloadSpec accepts the workload grammar and names a bad step', () => {
  assert.equal(validateWorkloadSpec('idle:5,alloc:64,touch:10,free,loop'), 'idle:5,alloc:64,touch:10,free,loop');
  assert.equal(validateWorkloadSpec(''), '');
  assert.throws(() => validateWorkloadSpec('alloc:64,loop,idle:3'), /"loop"/);
  assert.throws(() => validateWorkloadSpec('alloc:-1'), /alloc:-1/);
  assert.throws(() => validateWorkloadSpec('touch 5'), /touch 5/);
  // the clock's steps: touch and idle until a time in the cycle, the next cycle P s after this one
  assert.equal(validateWorkloadSpec('alloc:64,touch@2,idle@6,loop@30'), 'alloc:64,touch@2,idle@6,loop@30');
  assert.throws(() => validateWorkloadSpec('alloc@64,loop'), /alloc@64/);
  assert.throws(() => validateWorkloadSpec('alloc:64,loop@30,idle:3'), /"loop@30"/);
});
