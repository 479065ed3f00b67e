// Proxmox VE VM configs (qm.conf(5) layout): the keys ballast reads, the parts it must not
// read (snapshot sections, the description's comment lines), and garbled files.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parsePveConfig, PveConfigError, readPveConfig } from '../../../src/hypervisor/qmp/pve-config.js';

const CONF = [
  '#web server%3A front',
  '#second description line: memory: 1',
  'agent: 1',
  'balloon: 2048',
  'boot: order=scsi0;net0',
  'cores: 2',
  'memory: 4096',
  'name: web1',
  'net0: virtio=BC:24:11:00:00:01,bridge=vmbr0',
  'scsi0: local-lvm:vm-101-disk-0,size=32G',
  'shares: 500',
  'vmgenid: 1e2f0c4a-0000-4000-8000-000000000000',
  '',
  '[before-upgrade]',
  'balloon: 0',
  'memory: 8192',
  'name: web1-old',
  'snaptime: 1700000000',
  '',
].join('\n');

test('the keys ballast reads, before the first section; comments and other keys skipped', () => {
  assert.deepEqual(parsePveConfig(CONF, '101.conf'), { memoryMiB: 4096, balloonMiB: 2048, shares: 500, name: 'web1', lock: null });
});

test('memory as a property string, absent keys and their meaning, CRLF, a lock', () => {
  assert.equal(parsePveConfig('memory: current=3072\n', 'x').memoryMiB, 3072);
  assert.equal(parsePveConfig('memory: 3072,foo=1\n', 'x').memoryMiB, 3072);
  assert.deepEqual(parsePveConfig('name: a\r\nlock: migrate\r\n', 'x'), { memoryMiB: 512, balloonMiB: null, shares: null, name: 'a', lock: 'migrate' });
  assert.equal(parsePveConfig('memory: 1024\nballoon: 0\n', 'x').balloonMiB, 0);
  // Control characters never reach a log line or the API.
  assert.equal(parsePveConfig('name: a\u0007b\u001b[31m\n', 'x').name, 'ab[31m');
});

test('garbled configs: a clear error naming the file and line', () => {
  const bad: [string, RegExp][] = [
    ['memory: 1024\nthis is not a config line\n', /^f\.conf:2: not a "key: value" line: "this is not a config line"$/],
    ['memory: lots\n', /^f\.conf:1: memory must be a whole number from 16 to/],
    ['memory: current=1024,current=2048\n', /memory gives its size twice/],
    ['memory: max=4096\n', /memory has no size/],
    ['memory: 1024\nballoon: -5\n', /^f\.conf:2: balloon must be a whole number/],
    ['memory: 1024\nballoon: 2048\n', /^f\.conf:2: balloon 2048 MiB is more than the VM's memory 1024 MiB/],
    ['shares: 60000\n', /shares must be a whole number from 0 to 50000/],
    ['balloon: 100\nmemory: 1024\nballoon: 200\n', /^f\.conf:3: balloon is set twice \(first on line 1\)/],
    ['\u0000\u0001binary', /not a "key: value" line: "\?\?binary"/],
  ];
  for (const [text, re] of bad)
    assert.throws(
      () => parsePveConfig(text, 'f.conf'),
      (e: Error) => e instanceof PveConfigError && re.test(e.message),
      text,
    );
});

test('reading <vmid>.conf: missing, oversized, not a VM id', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ballast-pve-conf-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, '101.conf'), CONF);
  writeFileSync(join(dir, '102.conf'), `memory: 1024\n#${'x'.repeat(1024 * 1024)}\n`);
  assert.equal((await readPveConfig(dir, '101')).name, 'web1');
  await assert.rejects(readPveConfig(dir, '103'), /103\.conf: no such file/);
  await assert.rejects(readPveConfig(dir, '102'), /102\.conf: more than 1048576 bytes/);
  await assert.rejects(readPveConfig(dir, '../101'), /not a Proxmox VE VM id/);
});
