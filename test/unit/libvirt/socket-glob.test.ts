import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compileSocketGlob, matchSockets, SocketGlobError } from '../../../src/hypervisor/libvirt/socket-glob.js';

const root = mkdtempSync(join(tmpdir(), 'socket-glob-'));
const servers: Server[] = [];
after(async () => {
  for (const s of servers) await new Promise((r) => s.close(r));
  rmSync(root, { recursive: true, force: true });
});

async function socketAt(path: string): Promise<void> {
  mkdirSync(join(path, '..'), { recursive: true });
  const s = createServer();
  await new Promise<void>((res, rej) => {
    s.once('error', rej);
    s.listen(path, () => res());
  });
  servers.push(s);
}

test('compile: bad patterns are refused with the reason', () => {
  const cases: [string, RegExp][] = [
    ['pods/*/sock', /absolute path/],
    ['/pods/**/sock', /\*\* \(any depth\) is not supported/],
    ['/pods/[ab]/sock', /only \* and \? are wildcards/],
    ['/pods/{a,b}/sock', /only \* and \? are wildcards/],
    ['/pods//sock', /empty path segment/],
    ['/pods/*/sock/', /empty path segment/],
    ['/pods/../sock', /\.\. segments/],
    ['/pods/a/*', /last segment must name the socket/],
  ];
  for (const [p, re] of cases)
    assert.throws(
      () => compileSocketGlob(p),
      (e: Error) => e instanceof SocketGlobError && re.test(e.message) && e.message.includes(p),
      p,
    );
  const g = compileSocketGlob('/var/lib/kubelet/pods/*/volumes/kubernetes.io~empty-dir/libvirt-runtime/virtqemud-sock');
  assert.equal(g.base, '/var/lib/kubelet/pods');
  assert.equal(g.rest.length, 5);
});

test('match: only sockets, one wildcard part per segment, sorted, missing branches skipped', async () => {
  const base = join(root, 'kubelet', 'pods');
  const vol = (uid: string) => join(base, uid, 'volumes', 'kubernetes.io~empty-dir', 'libvirt-runtime');
  await socketAt(join(vol('uid-b'), 'virtqemud-sock'));
  await socketAt(join(vol('uid-a'), 'virtqemud-sock'));
  mkdirSync(vol('uid-file'), { recursive: true });
  writeFileSync(join(vol('uid-file'), 'virtqemud-sock'), 'not a socket');
  mkdirSync(join(base, 'uid-novolume', 'volumes'), { recursive: true }); // a pod without the volume
  await socketAt(join(vol('uid-c'), 'other-sock')); // another socket name in the same volume
  const g = compileSocketGlob(`${base}/*/volumes/kubernetes.io~empty-dir/libvirt-runtime/virtqemud-sock`);
  const m = await matchSockets(g);
  assert.deepEqual(m, [
    { path: join(vol('uid-a'), 'virtqemud-sock'), parts: ['uid-a'] },
    { path: join(vol('uid-b'), 'virtqemud-sock'), parts: ['uid-b'] },
  ]);
  // ? and a partial * within a segment; two wildcard segments give two parts.
  const two = await matchSockets(compileSocketGlob(`${base}/uid-?/volumes/*/libvirt-runtime/virtqemud-sock`));
  assert.deepEqual(
    two.map((x) => x.parts),
    [
      ['uid-a', 'kubernetes.io~empty-dir'],
      ['uid-b', 'kubernetes.io~empty-dir'],
    ],
  );
  const names = await matchSockets(compileSocketGlob(`${vol('uid-c')}/*-sock`));
  assert.deepEqual(
    names.map((x) => x.parts),
    [['other-sock']],
    'a part is the whole segment the wildcard stood in',
  );
});

test('match: a pattern without wildcards is its one socket, or nothing', async () => {
  const p = join(root, 'plain', 'libvirt-sock');
  assert.deepEqual(await matchSockets(compileSocketGlob(p)), []);
  await socketAt(p);
  assert.deepEqual(await matchSockets(compileSocketGlob(p)), [{ path: p, parts: [] }]);
});

test('match: the fixed directory missing is an error naming it, not "no sockets"', async () => {
  const g = compileSocketGlob(join(root, 'nowhere', 'pods') + '/*/sock');
  await assert.rejects(
    matchSockets(g),
    (e: Error) => e instanceof SocketGlobError && e.message.includes(join(root, 'nowhere', 'pods')) && /does not exist/.test(e.message),
  );
  writeFileSync(join(root, 'afile'), '');
  await assert.rejects(matchSockets(compileSocketGlob(join(root, 'afile') + '/*/sock')), /is not a directory/);
});
