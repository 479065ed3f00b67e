// pidAlive on real processes: the live one, a reaped one, and a zombie (exited, not reaped).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { pidAlive } from '../../../src/host/process.js';

const state = (pid: number): string | null => {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return s.slice(s.lastIndexOf(')') + 2, s.lastIndexOf(')') + 3);
  } catch {
    return null;
  }
};

test('pidAlive: this process is alive; a reaped child and nonsense PIDs are not', () => {
  assert.equal(pidAlive(process.pid), true);
  const done = spawnSync('true');
  assert.equal(pidAlive(done.pid!), false);
  for (const bad of [0, -1, 1.5, Number.NaN]) assert.equal(pidAlive(bad), false, String(bad));
});

test('pidAlive: a zombie (exited, its parent never reaps it) counts as gone', async (t) => {
  // perl forks a child that exits at once and never waits for it (perl-base is Essential on
  // Debian). Not `sh -c 'sleep 0 & exec sleep 5'`: dash reaps a background child that has
  // already exited when it next waits for anything, the likely cause of one CI failure.
  const parent = spawn('perl', ['-e', '$| = 1; my $c = fork(); exit 0 if $c == 0; print "$c\\n"; sleep 30'], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => parent.kill());
  const zombie = await new Promise<number>((resolve) => parent.stdout.once('data', (b: Buffer) => resolve(Number(b.toString().trim()))));
  for (let i = 0; i < 250 && state(zombie) !== 'Z'; i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(state(zombie), 'Z', 'the child became a zombie');
  assert.equal(pidAlive(zombie), false);
  assert.equal(pidAlive(parent.pid!), true);
});
