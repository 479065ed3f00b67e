// contrib/ballast.service: systemd's own checker accepts it (where systemd-analyze exists),
// and the hardening the daemon is documented to run under is there.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const unit = readFileSync(new URL('../../contrib/ballast.service', import.meta.url), 'utf8');
const directives = new Map(
  unit
    .split('\n')
    .filter((l) => /^[A-Za-z]+=/.test(l))
    .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
);

test('the unit is hardened: no new privileges, read-only system but for what ballast writes, few capabilities, SIGHUP reload', () => {
  assert.equal(directives.get('NoNewPrivileges'), 'yes');
  assert.equal(directives.get('ProtectSystem'), 'strict');
  assert.deepEqual(directives.get('ReadWritePaths')!.split(' ').sort(), ['-/run/libvirt', '-/sys/fs/cgroup', '-/sys/kernel/mm/ksm']);
  assert.equal(directives.get('RuntimeDirectory'), 'ballast', 'the API socket directory, /run/ballast');
  assert.ok(!directives.get('CapabilityBoundingSet')!.includes('CAP_SYS_MODULE'));
  assert.equal(directives.get('ExecReload'), '/bin/kill -HUP $MAINPID');
  assert.equal(directives.get('KillSignal'), 'SIGTERM');
});

test('systemd-analyze verify accepts the unit', (t) => {
  const probe = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
  if (probe.error) {
    t.skip('systemd-analyze is not installed here');
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'ballast-unit-'));
  try {
    // The unit names /usr/bin/ballast, which a test machine does not have: point it at node.
    const path = join(dir, 'ballast.service');
    writeFileSync(path, unit.replace('ExecStart=/usr/bin/ballast', `ExecStart=${process.execPath}`));
    const r = spawnSync('systemd-analyze', ['verify', path], { encoding: 'utf8' });
    const problems = (r.stdout + r.stderr).split('\n').filter((l) => l.includes('ballast.service'));
    assert.deepEqual(problems, [], r.stdout + r.stderr);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
