// MOM's mom.conf read into ballast's config, and `ballast run --mom-config` started from it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, parseConfigObject } from '../../../src/config/load.js';
import { momConfigFrom, parseIni } from '../../../src/config/mom-conf.js';
import { call } from '../api/fixture.js';

// Written for this test in mom.conf's format, with the keys an oVirt host's file has.
const OVIRT_LIKE = `# comment
[main]
main-loop-interval: 15
host-monitor-interval: 15
guest-monitor-interval: 15
guest-manager-interval: 15
hypervisor-interface: libvirt
policy-engine-interval: 15
controllers: Balloon, KSM, CpuTune, IoTune
sample-history-length: 10
plot-dir:
rpc-port: /run/vdsm/mom-vdsm.sock
policy-dir: /etc/vdsm/mom.d

[vdsm]
host=127.0.0.1

[logging]
log: /var/log/vdsm/mom.log
verbosity: info
max-bytes: 2097152
backup-count: 5

[host]
collectors: HostMemory, HostKSM, HostCpu

[guest]
collectors: GuestMemoryOptional, GuestBalloonOptional,
  GuestCpuTune
`;

test('mom.conf: configparser syntax (both separators, continuation, DEFAULT, case-insensitive keys)', () => {
  const ini = parseIni('[DEFAULT]\nshared = 1\n[main]\nPolicy-Dir = /x\nrpc-port: 8888\n; a comment\nlong: a,\n  b\n[other]\n');
  assert.equal(ini.get('main')!.get('policy-dir'), '/x');
  assert.equal(ini.get('main')!.get('rpc-port'), '8888');
  assert.equal(ini.get('main')!.get('long'), 'a,\nb');
  assert.equal(ini.get('other')!.get('shared'), '1');
  assert.throws(
    () => parseIni('key: before any section\n'),
    (e: unknown) => e instanceof ConfigError && /before any \[section\]/.test(e.message),
  );
  assert.throws(() => parseIni('[main]\nnot a key line\n', 'x.conf'), /x\.conf:2: not a "key: value" line/);
});

test("mom.conf: an oVirt host's keys become ballast's, with notes for what ballast does without", () => {
  const m = momConfigFrom(parseIni(OVIRT_LIKE), '/etc/vdsm/mom.conf');
  const c = parseConfigObject(m.raw);
  assert.equal(c.hypervisor.driver, 'libvirt');
  assert.equal(c.engine.stats_interval, 15);
  assert.equal(c.engine.policy_interval, 15);
  assert.equal(c.engine.history_length, 10);
  assert.equal(c.engine.policy_dir, '/etc/vdsm/mom.d');
  assert.equal(c.mom_rpc.socket, '/run/vdsm/mom-vdsm.sock');
  assert.equal(c.ksm.enabled, true);
  assert.equal(c.log.level, 'info');
  for (const want of [
    /main-loop-interval: not needed/,
    /IoTune is not in this build/,
    /logging\.log: ballast logs to stderr/,
    /\[vdsm\]: not used/,
    /guest\.collectors/,
  ]) {
    assert.ok(
      m.notes.some((n) => want.test(n)),
      `a note matching ${want}: ${m.notes.join(' | ')}`,
    );
  }
  const tcp = momConfigFrom(parseIni('[main]\nrpc-port: 8888\nverbosity: 5\ncontrollers: Balloon\n'), 'm.conf');
  assert.equal(tcp.raw.mom_rpc!.port, 8888);
  assert.equal(tcp.raw.ksm!.enabled, false);
  assert.equal(momConfigFrom(parseIni('[main]\nrpc-port: -1\n'), 'm.conf').raw.mom_rpc!.port, undefined, '-1 disables');
  assert.equal(momConfigFrom(parseIni('[main]\npolicy: p/one.policy\n'), '/etc/mom/mom.conf').policyFiles![0], '/etc/mom/p/one.policy');
});

test('mom.conf: what ballast cannot honour is refused, naming the key and what to use instead', () => {
  const refuse = (text: string, want: RegExp) =>
    assert.throws(
      () => momConfigFrom(parseIni(text), 'm.conf'),
      (e: unknown) => e instanceof ConfigError && want.test(e.message),
      text,
    );
  refuse('[main]\nhypervisor-interface: vdsmjsonrpcclient\n', /main\.hypervisor-interface: .*set "hypervisor-interface: libvirt"/);
  refuse('[main]\nhypervisor-interface: xen\n', /main\.hypervisor-interface: "xen" is not supported/);
  refuse('[main]\ncontrollers: Balloon, Magic\n', /main\.controllers: unknown controller "magic"/);
  refuse('[main]\npolicy-engine-interval: soon\n', /main\.policy-engine-interval: expected a number/);
  refuse('[main]\nrpc-port: 70000\n', /main\.rpc-port: port 70000/);
  refuse('[logging]\nverbosity: loud\n', /logging\.verbosity: expected/);
  // All at once, as with ballast's own config.
  assert.throws(
    () => momConfigFrom(parseIni('[main]\nhypervisor-interface: vdsm\nsample-history-length: x\n'), 'm.conf'),
    (e: unknown) => e instanceof ConfigError && e.problems.length === 2,
  );
});

test("ballast run --mom-config (a ballast TOML over it for the simulator) serves MOM's RPC where rpc-port says", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ballast-momconf-'));
  mkdirSync(join(dir, 'mom.d'));
  writeFileSync(join(dir, 'mom.d', '00-defines.policy'), '(defvar x 1)\n');
  writeFileSync(
    join(dir, 'mom.conf'),
    `[main]\nmain-loop-interval: 5\nhypervisor-interface: libvirt\npolicy-engine-interval: 10\nhost-monitor-interval: 5\nguest-monitor-interval: 5\ncontrollers: Balloon, KSM\nrpc-port: ${join(dir, 'mom.sock')}\npolicy-dir: mom.d\n`,
  );
  writeFileSync(
    join(dir, 'sim.toml'),
    `[hypervisor]\ndriver = "sim"\ntime_scale = 100\n[api]\nsocket = "${join(dir, 'api.sock')}"\n[ksm]\nrestore_on_exit = false\n[log]\nformat = "json"\n`,
  );
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'src/cli/main.ts', 'run', '--mom-config', join(dir, 'mom.conf'), '--config', join(dir, 'sim.toml')],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let log = '';
  child.stderr.on('data', (c: Buffer) => {
    log += c;
  });
  try {
    for (let i = 0; i < 150 && !existsSync(join(dir, 'mom.sock')); i++) await new Promise((r) => setTimeout(r, 100));
    const r = await call(join(dir, 'mom.sock'), 'POST', '/RPC2', {
      body: '<?xml version="1.0"?><methodCall><methodName>getNamedPolicies</methodName></methodCall>',
    });
    assert.match(r.body, /<name>00-defines<\/name><value><string>\(defvar x 1\)\n<\/string>/, log);
    const health = await call(join(dir, 'api.sock'), 'GET', '/api/v1/health');
    assert.match(health.json.hypervisor, /^sim/, 'the TOML chose the simulator');
    assert.match(log, /"event":"mom_config".*main-loop-interval: not needed/);
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.on('close', r));
    rmSync(dir, { recursive: true, force: true });
  }
  const refused = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'run', '--mom-config', '/nonexistent/mom.conf'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  refused.stderr.on('data', (c: Buffer) => {
    err += c;
  });
  const code = await new Promise((r) => refused.on('close', r));
  assert.equal(code, 1);
  assert.match(err, /mom\.conf/);
});
