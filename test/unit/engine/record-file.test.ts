// engine.record_file under faults: a full disk or a missing directory is logged once (and its
// recovery once), the loop goes on, and the file never holds half a record.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { startSimDaemon } from '../api/fixture.js';

test('record_file on a full disk (/dev/full): record_failed once, cycles go on, balloons still move', async (t) => {
  if (!existsSync('/dev/full')) {
    t.skip('no /dev/full on this machine');
    return;
  }
  let file = '';
  const d = await startSimDaemon({
    policies: { '10_b': '(with Guests guest (guest.Control "balloon_target" (* 0.9 guest.balloon_max)))\n' },
    tweak: (c) => {
      file = join(c.api.socket, '..', 'full.jsonl');
      symlinkSync('/dev/full', file);
      c.engine.record_file = file;
    },
  });
  try {
    await d.cycles(4);
    const failed = d.log.records.filter((r) => r.event === 'record_failed');
    assert.equal(failed.length, 1, 'logged once, not every cycle');
    assert.match(String(failed[0]!.error), /ENOSPC/);
    assert.ok(d.port.counters().cycles >= 4);
    assert.ok(
      d.port.actions().some((a) => a.control === 'balloon_target' && a.result === 'applied'),
      'the loop still acts',
    );
  } finally {
    await d.stop();
  }
});

test('record_file in a directory that appears later: failing, then recovered; every line in the file is whole JSON', async () => {
  let dir = '';
  const d = await startSimDaemon({
    policies: { '10_v': '(Host.SetVar "seen" 1)\n' },
    tweak: (c) => {
      dir = join(c.api.socket, '..', 'later');
      c.engine.record_file = join(dir, 'rec.jsonl');
    },
  });
  try {
    await d.cycles(2);
    assert.equal(d.log.records.filter((r) => r.event === 'record_failed').length, 1);
    assert.match(String(d.log.records.find((r) => r.event === 'record_failed')!.error), /ENOENT/);
    mkdirSync(dir);
    await d.cycles(3);
    const rec = d.log.records.find((r) => r.event === 'record_recovered');
    assert.ok(rec, 'recovery logged');
    assert.ok((rec.lost_records as number) >= 2);
    const lines = readFileSync(join(dir, 'rec.jsonl'), 'utf8').split('\n').filter(Boolean);
    assert.ok(lines.length >= 2);
    for (const l of lines) assert.equal(typeof JSON.parse(l).cycle, 'number');
  } finally {
    await d.stop();
  }
});
