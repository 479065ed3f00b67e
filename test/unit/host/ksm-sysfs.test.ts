// The KSM backend on a fixture directory, with the kernel's refusals injected.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KsmSysfs, KsmWriteError, type SysfsIo } from '../../../src/host/ksm-sysfs.js';

function ksmDir(extra: Record<string, string> = {}): string {
  const root = mkdtempSync(join(tmpdir(), 'ballast-ksm-'));
  const dir = join(root, 'sys/kernel/mm/ksm');
  mkdirSync(dir, { recursive: true });
  const files = {
    run: '0\n',
    pages_to_scan: '100\n',
    sleep_millisecs: '20\n',
    merge_across_nodes: '1\n',
    pages_shared: '0\n',
    advisor_mode: '[none] scan-time\n',
    smart_scan: '1\n',
    ...extra,
  };
  for (const [k, v] of Object.entries(files)) writeFileSync(join(dir, k), v);
  return root;
}
const file = (root: string, k: string) => readFileSync(join(root, 'sys/kernel/mm/ksm', k), 'utf8').trim();

/** Makes writes to some files fail with an errno, like the kernel would. */
function failing(codes: Record<string, string>): SysfsIo & { writes: string[] } {
  const writes: string[] = [];
  return {
    writes,
    read: (p) => readFile(p, 'utf8'),
    async write(p, d) {
      const k = p.split('/').pop()!;
      writes.push(`${k}=${d}`);
      if (codes[k]) throw Object.assign(new Error(`${codes[k]}: ${p}`), { code: codes[k] });
      // The advisor file is a selection: the kernel shows the choice in brackets.
      await writeFile(p, k === 'advisor_mode' ? (d === 'none' ? '[none] scan-time' : 'none [scan-time]') : d);
    },
  };
}

test('writes knobs, reads them back, and reads the counters as ksm_* fields', async (t) => {
  const root = ksmDir();
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const io = failing({});
  const k = new KsmSysfs({ root, io });
  await k.write({ run: 1, pages_to_scan: 300, sleep_millisecs: 50, advisor_mode: 'scan-time', smart_scan: 0 });
  assert.equal(file(root, 'run'), '1');
  assert.equal(file(root, 'pages_to_scan'), '300');
  assert.equal(file(root, 'advisor_mode'), 'none [scan-time]');
  assert.equal(io.writes.at(-1), 'run=1', 'run is written last');
  const s = await k.read();
  assert.equal(s.ksm_run, 1);
  assert.equal(s.ksm_sleep_millisecs, 50);
  assert.equal(s.ksm_advisor_mode, 1);
  // Values already in place are not written again.
  io.writes.length = 0;
  await k.write({ run: 1, pages_to_scan: 300 });
  assert.deepEqual(io.writes, []);
});

test('restore puts back what was found, and only what ballast changed', async (t) => {
  const root = ksmDir();
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const k = new KsmSysfs({ root, io: failing({}) });
  await k.write({ run: 1, pages_to_scan: 1000 });
  await k.write({ pages_to_scan: 64, advisor_mode: 'scan-time' });
  assert.deepEqual(k.changed(), { run: '0', pages_to_scan: '100', advisor_mode: 'none' });
  writeFileSync(join(root, 'sys/kernel/mm/ksm/sleep_millisecs'), '77'); // someone else's change
  await k.restore();
  assert.equal(file(root, 'run'), '0');
  assert.equal(file(root, 'pages_to_scan'), '100');
  assert.equal(file(root, 'advisor_mode'), '[none] scan-time');
  assert.equal(file(root, 'sleep_millisecs'), '77', 'untouched knobs stay');
  assert.deepEqual(k.changed(), {});
});

test('EPERM / EROFS / EBUSY: clear messages, other knobs still written, refused ones retried next cycle', async (t) => {
  const root = ksmDir({ pages_shared: '500\n' });
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const codes: Record<string, string> = { run: 'EPERM', merge_across_nodes: 'EBUSY', sleep_millisecs: 'EROFS' };
  const io = failing(codes);
  const k = new KsmSysfs({ root, io });
  const err = await k.write({ run: 1, merge_across_nodes: 0, sleep_millisecs: 10, pages_to_scan: 200 }).catch((e: unknown) => e);
  assert.ok(err instanceof KsmWriteError);
  assert.match(err.message, /run: permission denied/);
  assert.match(err.message, /merge_across_nodes: .*while pages are shared \(EBUSY\)/);
  assert.match(err.message, /read-only sysfs/);
  assert.deepEqual(err.failures.map((f) => f.code).sort(), ['EBUSY', 'EPERM', 'EROFS']);
  assert.equal(file(root, 'pages_to_scan'), '200', 'the knob the kernel accepted is set');
  // Next cycle the kernel allows run and sleep_millisecs: they are retried with the new settings.
  delete codes.run;
  delete codes.sleep_millisecs;
  io.writes.length = 0;
  await assert.rejects(k.write({ pages_to_scan: 300 }), /merge_across_nodes/);
  assert.equal(file(root, 'run'), '1');
  assert.equal(file(root, 'sleep_millisecs'), '10');
  assert.equal(file(root, 'pages_to_scan'), '300');
  delete codes.merge_across_nodes;
  await k.write({});
  assert.equal(file(root, 'merge_across_nodes'), '0');
});

test('a value that does not read back is an error; bad values are refused before any write', async (t) => {
  const root = ksmDir();
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const io: SysfsIo = { read: (p) => readFile(p, 'utf8'), write: async () => {} }; // the kernel ignores us
  const k = new KsmSysfs({ root, io });
  await assert.rejects(k.write({ pages_to_scan: 500 }), /reads back 100/);
  await assert.rejects(k.write({ run: 7 }), /run must be 0 \(stop\), 1 \(run\) or 2/);
  await assert.rejects(k.write({ pages_to_scan: -1 }), /non-negative integer/);
  await assert.rejects(k.write({ advisor_mode: 'fast' as never }), /advisor_mode must be one of none, scan-time/);
});

test('a kernel without advisor_mode / smart_scan: setting is reported as ignored, not retried', async (t) => {
  const root = ksmDir();
  t.after(() => rmSync(root, { recursive: true, force: true }));
  rmSync(join(root, 'sys/kernel/mm/ksm/advisor_mode'));
  const io = failing({});
  const k = new KsmSysfs({ root, io });
  await assert.rejects(k.write({ advisor_mode: 'scan-time', run: 1 }), /no advisor_mode knob; setting ignored/);
  assert.equal(file(root, 'run'), '1');
  await k.write({}); // nothing pending
});

test('the journal: a daemon that dies before its restore leaves the values it found, and the next one puts those back, not what the dead one left', async (t) => {
  const { root, journal } = journalFixture(t);
  // The first daemon journals before each change; it "dies" (is dropped) without restoring.
  const first = new KsmSysfs({ root });
  assert.deepEqual(await first.keepJournal(journal), {});
  assert.equal(existsSync(journal), false, 'nothing changed: no journal');
  await first.write({ run: 1, pages_to_scan: 400, sleep_millisecs: 10 });
  await first.write({ pages_to_scan: 700 });
  const j = JSON.parse(readFileSync(journal, 'utf8'));
  assert.deepEqual(j.knobs, { run: { found: '0', wrote: '1' }, pages_to_scan: { found: '100', wrote: '700' }, sleep_millisecs: { found: '20', wrote: '10' } });
  // A journal whose daemon is alive (here: a sleeping child) is not taken over.
  const live = spawn('sleep', ['5']);
  t.after(() => live.kill());
  writeFileSync(journal, JSON.stringify({ ...j, pid: live.pid }));
  await assert.rejects(new KsmSysfs({ root }).keepJournal(journal), /keeps the KSM journal/);
  writeFileSync(journal, JSON.stringify({ ...j, pid: deadPid() }));
  // Meanwhile the operator set sleep_millisecs by hand: that knob is theirs now.
  writeFileSync(join(root, 'sys/kernel/mm/ksm/sleep_millisecs'), '50\n');

  const second = new KsmSysfs({ root });
  assert.deepEqual(await second.keepJournal(journal), { run: '0', pages_to_scan: '100' });
  assert.deepEqual(second.changed(), { run: '0', pages_to_scan: '100' });
  await second.write({ pages_to_scan: 900 });
  assert.equal(JSON.parse(readFileSync(journal, 'utf8')).knobs.pages_to_scan.found, '100', 'still what the first daemon found');
  await second.restore();
  assert.deepEqual([file(root, 'run'), file(root, 'pages_to_scan'), file(root, 'sleep_millisecs')], ['0', '100', '50']);
  assert.equal(existsSync(journal), false, 'everything put back: the journal is removed');
});

test('the journal: a file that is not a journal is set aside, and one that cannot be written does not stop KSM control', async (t) => {
  const { root, state, journal } = journalFixture(t);
  writeFileSync(journal, '{"knobs": {"run": 1}');
  const k = new KsmSysfs({ root });
  assert.deepEqual(await k.keepJournal(journal), {});
  assert.equal(readFileSync(`${journal}.bad`, 'utf8'), '{"knobs": {"run": 1}');
  await k.write({ run: 1 });
  assert.deepEqual(JSON.parse(readFileSync(journal, 'utf8')).knobs, { run: { found: '0', wrote: '1' } });

  const nowhere = new KsmSysfs({ root });
  await assert.rejects(nowhere.keepJournal(join(state, 'no-such-dir', 'ksm-found.json')), /cannot keep the KSM journal/);
  await nowhere.write({ pages_to_scan: 500 });
  assert.equal(file(root, 'pages_to_scan'), '500', 'KSM is still driven');
  assert.match(nowhere.journalError ?? '', /ENOENT/);
});

/** A PID no process has: a child that has exited and been reaped. */
function deadPid(): number {
  return spawnSync('true').pid!;
}

/** KSM files and an empty state directory, removed after the test. */
function journalFixture(t: { after(fn: () => void): void }) {
  const root = ksmDir();
  const state = mkdtempSync(join(tmpdir(), 'ballast-ksm-state-'));
  t.after(() => {
    rmSync(root, { recursive: true, force: true });
    rmSync(state, { recursive: true, force: true });
  });
  return { root, state, journal: join(state, 'ksm-found.json') };
}
