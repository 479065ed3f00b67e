import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { newcArchive } from '../../../src/lab/cpio.js';

const entries = [
  { type: 'dir' as const, path: 'bin' },
  { type: 'file' as const, path: 'bin/hello', data: Buffer.from('hi\n'), mode: 0o755 },
  { type: 'symlink' as const, path: 'bin/sh', target: 'hello' },
  { type: 'dir' as const, path: 'dev' },
  { type: 'chardev' as const, path: 'dev/console', major: 5, minor: 1 },
];

test('newcArchive: headers, 4-byte alignment and trailer', () => {
  const a = newcArchive(entries);
  assert.equal(a.length % 4, 0);
  assert.equal(a.subarray(0, 6).toString(), '070701');
  assert.match(a.toString('latin1'), /TRAILER!!!\0/);
  // The file's header: mode 0100755, size 3.
  const text = a.toString('latin1');
  const at = text.indexOf('bin/hello\0');
  const header = text.slice(at - 110, at);
  assert.equal(parseInt(header.slice(14, 22), 16), 0o100755);
  assert.equal(parseInt(header.slice(54, 62), 16), 3);
});

test('newcArchive: the cpio tool lists what we wrote', (t) => {
  const a = newcArchive(entries);
  const r = spawnSync('cpio', ['-itv', '--quiet'], { input: a, encoding: 'utf8' });
  if (r.error) return t.skip('cpio tool not installed');
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  assert.equal(lines.length, 5);
  assert.match(lines[1], /^-rwxr-xr-x .* bin\/hello$/);
  assert.match(lines[2], /^lrwxrwxrwx .* bin\/sh -> hello$/);
  assert.match(lines[4], /^crw------- .* 5,\s+1 .* dev\/console$/);
});

test('newcArchive refuses bad and duplicate paths', () => {
  assert.throws(() => newcArchive([{ type: 'dir', path: '../x' }]), /bad cpio path/);
  assert.throws(
    () =>
      newcArchive([
        { type: 'dir', path: 'a' },
        { type: 'dir', path: 'a' },
      ]),
    /duplicate/,
  );
});
