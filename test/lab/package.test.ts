// The Debian package, end to end on this machine as root: `npm run package`'s script builds the
// .deb, lintian finds no error in it, dpkg installs it, the installed program runs (--version,
// doctor, policy check, ksm status), systemd accepts the installed unit, and removing the
// package keeps the config while purging leaves nothing. Everything is undone even when an
// assertion fails.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';

const ROOT = new URL('../../', import.meta.url).pathname;
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string; scripts: Record<string, string> };

function skipLoudly(t: TestContext, reason: string): void {
  console.error(`LAB SKIPPED: ${reason}`);
  t.skip(`LAB SKIPPED: ${reason}`);
}

function sh(cmd: string, args: string[], timeout = 300_000): SpawnSyncReturns<string> {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout, cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  return r;
}

function ok(cmd: string, args: string[]): string {
  const r = sh(cmd, args);
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')} exited ${r.status}\n${r.stdout}${r.stderr}`);
  return r.stdout;
}

/** Exists while this test may have a package of its own installed. */
const MARKER = '/var/tmp/ballast-package-test.installing';

/** The package's state in dpkg's database ("not-installed" when dpkg never saw it). */
function state(): 'installed' | 'config-files' | 'not-installed' {
  const status = sh('dpkg-query', ['-W', `-f=\${Status}`, 'ballast']).stdout;
  return / ok installed$/.test(status) ? 'installed' : / config-files$/.test(status) ? 'config-files' : 'not-installed';
}

test('the .deb: builds offline, passes lintian, installs, runs, keeps its config on remove, purges clean', async (t) => {
  if (process.getuid?.() !== 0) return skipLoudly(t, 'installing a package needs root');
  for (const tool of ['dpkg-deb', 'lintian', 'systemd-analyze']) {
    if (sh('sh', ['-c', `command -v ${tool}`]).status !== 0) return skipLoudly(t, `${tool} is not installed (bash lab/install-deps.sh)`);
  }
  // A run killed between install and purge (a CI job cut off, a session's end) leaves its
  // package behind; its marker says the package is this test's own, so it may go. Anything
  // else is an operator's: never overwrite or purge what they installed or wrote by hand.
  if (existsSync(MARKER)) {
    if (state() !== 'not-installed') {
      console.error(`lab: a ballast package left by an interrupted run of this test (${MARKER}): purging it`);
      ok('dpkg', ['-P', 'ballast']);
    }
    rmSync(MARKER, { force: true });
  }
  assert.equal(state(), 'not-installed', 'a ballast package is already on this machine: dpkg -P ballast first');
  assert.ok(!existsSync('/etc/ballast'), '/etc/ballast exists (a hand install?): move it away first');

  const out = mkdtempSync(join(tmpdir(), 'ballast-deb-test-'));
  t.after(() => {
    if (state() !== 'not-installed') {
      const r = sh('dpkg', ['-P', 'ballast']);
      if (r.status !== 0) console.error(`cleanup: dpkg -P ballast exited ${r.status}: ${r.stderr}`);
    }
    if (state() === 'not-installed') rmSync(MARKER, { force: true });
    rmSync(out, { recursive: true, force: true });
  });

  assert.match(pkg.scripts.package ?? '', /scripts\/package-deb\.mjs/, 'npm run package runs the packaging script');
  const built = ok(process.execPath, [join(ROOT, 'scripts/package-deb.mjs'), '--out', out]).trim();
  const deb = join(out, `ballast_${pkg.version}_all.deb`);
  assert.equal(built, deb);

  const info = ok('dpkg-deb', ['-f', deb, 'Package', 'Version', 'Architecture', 'Depends']);
  assert.match(info, /^Package: ballast$/m);
  assert.match(info, new RegExp(`^Version: ${pkg.version.replace(/\./g, '\\.')}$`, 'm'));
  assert.match(info, /^Architecture: all$/m);
  assert.match(info, /^Depends: nodejs \(>= 20\)$/m);
  const conffiles = ok('sh', ['-c', `dpkg-deb --ctrl-tarfile '${deb}' | tar -xO ./conffiles`]);
  assert.deepEqual(conffiles.trim().split('\n').sort(), [
    '/etc/ballast/ballast.toml',
    '/etc/ballast/policies/default.policy',
    '/etc/ballast/policies/vmem.policy',
  ]);
  // Exactly the production dependencies: what npm itself says, nothing from devDependencies.
  const contents = ok('dpkg-deb', ['-c', deb]);
  const shipped = new Set([...contents.matchAll(/\.\/usr\/lib\/ballast\/(node_modules\/(?:@[^/]+\/)?[^/]+)\/package\.json$/gm)].map((m) => m[1]));
  const production = ok('npm', ['ls', '--omit=dev', '--parseable', '--all'])
    .trim()
    .split('\n')
    .slice(1)
    .map((p) => p.slice(p.indexOf('node_modules/')));
  assert.deepEqual([...shipped].sort(), [...new Set(production)].sort());
  assert.ok(!shipped.has('node_modules/typescript') && !shipped.has('node_modules/tsx'));

  const lint = sh('lintian', ['--pedantic', '-I', deb]);
  const tags = lint.stdout.split('\n').filter((l) => /^[EWIPX]: /.test(l));
  console.error(`lintian: ${tags.length} tags\n${tags.join('\n')}`);
  assert.deepEqual(
    tags.filter((l) => l.startsWith('E: ')),
    [],
    lint.stdout + lint.stderr,
  );
  assert.ok(lint.status === 0, `lintian exited ${lint.status}: ${lint.stderr}`);

  writeFileSync(MARKER, `${process.pid}\n`);
  ok('dpkg', ['-i', deb]);
  assert.equal(state(), 'installed');
  assert.equal(ok('/usr/bin/ballast', ['--version']).trim(), pkg.version);

  // doctor exits 1 when something blocks ballast on this host (e.g. no libvirtd): the point
  // here is that the installed program runs every check and reports, not this host's state.
  const doctor = sh('/usr/bin/ballast', ['doctor']);
  assert.ok(doctor.status === 0 || doctor.status === 1, `doctor exited ${doctor.status}\n${doctor.stdout}${doctor.stderr}`);
  assert.match(doctor.stdout, /config: \/etc\/ballast\/ballast\.toml/, 'doctor reads the packaged config');
  for (const check of ['hypervisor', 'ksm', 'cgroup', 'swap', 'psi']) assert.match(doctor.stdout, new RegExp(`^\\S+\\s+${check}\\s`, 'm'), doctor.stdout);
  assert.match(doctor.stdout, /\d+ ok, \d+ warn, \d+ fail/);

  ok('/usr/bin/ballast', ['policy', 'check', '/etc/ballast/policies/default.policy', '/usr/lib/ballast/policies/balloon.policy']);
  // Every policy the package installs for the daemon parses.
  ok('/usr/bin/ballast', ['policy', 'check', '/etc/ballast/policies/default.policy', '/etc/ballast/policies/vmem.policy']);
  assert.match(ok('/usr/bin/ballast', ['ksm', 'status']), /^KSM: /m);

  // systemd-analyze verify needs no running systemd (this also works in a container whose PID
  // 1 is not systemd); it fails on a non-executable ExecStart, so it also checks /usr/bin/ballast.
  const unit = '/usr/lib/systemd/system/ballast.service';
  assert.match(readFileSync(unit, 'utf8'), /^ExecStart=\/usr\/bin\/ballast run --config \/etc\/ballast\/ballast\.toml /m);
  const verify = sh('systemd-analyze', ['verify', '--man=no', unit]);
  const problems = (verify.stdout + verify.stderr).split('\n').filter((l) => l.includes('ballast.service'));
  assert.deepEqual(problems, [], verify.stdout + verify.stderr);
  assert.equal(verify.status, 0, verify.stdout + verify.stderr);

  ok('dpkg', ['-r', 'ballast']);
  assert.ok(!existsSync('/usr/bin/ballast'), '/usr/bin/ballast is removed');
  assert.ok(!existsSync('/usr/lib/ballast'), 'the program is removed');
  assert.ok(existsSync('/etc/ballast/ballast.toml'), 'the config stays after remove (conffile)');
  assert.equal(state(), 'config-files');

  ok('dpkg', ['-P', 'ballast']);
  assert.ok(!existsSync('/etc/ballast'), 'purge removes the config');
  assert.equal(state(), 'not-installed');
});
