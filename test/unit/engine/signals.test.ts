// `ballast run` and the signals an operator (or a log rotation script) sends, and a stop that
// must finish whatever the hypervisor is doing: a libvirtd that accepts and never answers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

interface Rec {
  event: string;
  [k: string]: unknown;
}

function daemon(config: string) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'run', '--config', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  const records: Rec[] = [];
  let raw = '';
  let buf = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (c: string) => {
    raw += c;
    buf += c;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      try {
        records.push(JSON.parse(line) as Rec);
      } catch {
        // not JSON: kept in raw
      }
    }
  });
  const exited = new Promise<{ code: number | null; at: number }>((resolve) => child.on('exit', (code) => resolve({ code, at: Date.now() })));
  const until = async (pred: (r: Rec) => boolean, ms = 20_000) => {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      const r = records.find(pred);
      if (r) return r;
      await new Promise((res) => setTimeout(res, 50));
    }
    throw new Error(`timed out; log:\n${raw}`);
  };
  return { child, records, exited, until, raw: () => raw };
}

function simConfig(dir: string): string {
  mkdirSync(join(dir, 'policies'));
  writeFileSync(join(dir, 'policies', '10.policy'), '(defvar x 1)\n');
  const config = join(dir, 'ballast.toml');
  writeFileSync(
    config,
    `[hypervisor]\ndriver = "sim"\ntime_scale = 50\n[engine]\npolicy_dir = "${join(dir, 'policies')}"\n[api]\nsocket = "${join(dir, 'api.sock')}"\n[ksm]\nrestore_on_exit = false\n[log]\nformat = "json"\n`,
  );
  return config;
}

test('signals: SIGHUP reloads policies, SIGUSR1/SIGUSR2 are ignored (no debugger), SIGQUIT stops cleanly', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ballast-signals-'));
  const d = daemon(simConfig(dir));
  try {
    await d.until((r) => r.event === 'started');
    writeFileSync(join(dir, 'policies', '20.policy'), '(defvar y 2)\n');
    d.child.kill('SIGHUP');
    await d.until((r) => r.event === 'signal' && r.signal === 'SIGHUP');
    await d.until((r) => r.event === 'policy_loaded' && Array.isArray(r.files) && (r.files as string[]).includes('20.policy'));
    d.child.kill('SIGUSR1');
    d.child.kill('SIGUSR2');
    await d.until((r) => r.event === 'signal' && r.signal === 'SIGUSR2');
    await d.until((r) => r.event === 'signal' && r.signal === 'SIGUSR1');
    assert.doesNotMatch(d.raw(), /Debugger listening/);
    assert.equal(d.child.exitCode, null, 'still running');
    const sent = Date.now();
    d.child.kill('SIGQUIT');
    const { code, at } = await d.exited;
    assert.equal(code, 0, d.raw());
    assert.ok(at - sent < 10_000, `stopped in ${at - sent} ms`);
    assert.ok(d.records.some((r) => r.event === 'stopping') && d.records.some((r) => r.event === 'stopped'));
  } finally {
    d.child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('SIGHUP re-reads the config: a bad one is refused naming every bad key (the running one stays); safeguards and log level apply live, the rest is listed for a restart', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ballast-sighup-'));
  const config = simConfig(dir);
  const good = readFileSync(config, 'utf8');
  const d = daemon(config);
  try {
    await d.until((r) => r.event === 'started');
    writeFileSync(config, `${good}[safeguards]\nmin_guest_mib = "lots"\nno_such_key = 1\n`);
    d.child.kill('SIGHUP');
    const refused = await d.until((r) => r.event === 'config_refused');
    assert.match(String(refused.error), /safeguards\.min_guest_mib/);
    assert.match(String(refused.error), /no_such_key/);
    assert.equal(d.child.exitCode, null, 'still running');

    writeFileSync(
      config,
      good.replace('[engine]\n', '[engine]\nstats_interval = 7\n').replace('[log]', '[safeguards]\nmin_guest_mib = 300\n[log]\nlevel = "debug"'),
    );
    // A policy that aborts every cycle: an error once, then debug lines, which show once debug is on.
    writeFileSync(join(dir, 'policies', '20.policy'), '(defvar z (+ 1 "a"))\n');
    d.child.kill('SIGHUP');
    const reloaded = await d.until((r) => r.event === 'config_reloaded');
    assert.deepEqual(reloaded.applied, ['log.level', 'safeguards.min_guest_mib']);
    assert.deepEqual(reloaded.restart_needed, ['engine.stats_interval']);
    await d.until((r) => r.event === 'policy_aborted' && (r as { level?: string }).level === 'debug', 20_000);
    assert.equal(
      d.records.filter((r) => r.event === 'policy_aborted' && (r as { level?: string }).level === 'error').length,
      1,
      'the same abort is an error once',
    );
  } finally {
    d.child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('SIGTERM while libvirtd accepts but never answers: the daemon stops within seconds and never starts', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ballast-hung-'));
  const sockets: Socket[] = [];
  const hung = createServer((s) => {
    sockets.push(s);
  }); // accepts, reads, never answers
  const path = join(dir, 'libvirt-sock');
  await new Promise<void>((r) => hung.listen(path, r));
  const config = join(dir, 'ballast.toml');
  mkdirSync(join(dir, 'policies'));
  writeFileSync(
    config,
    `[hypervisor]\ndriver = "libvirt"\nsocket = "${path}"\n[engine]\npolicy_dir = "${join(dir, 'policies')}"\n[api]\nsocket = "${join(dir, 'api.sock')}"\n[ksm]\nenabled = false\nrestore_on_exit = false\n[log]\nformat = "json"\n`,
  );
  const d = daemon(config);
  try {
    await d.until((r) => r.event === 'starting');
    await new Promise((r) => setTimeout(r, 500));
    const sent = Date.now();
    d.child.kill('SIGTERM');
    const { at } = await d.exited;
    assert.ok(at - sent < 8_000, `exited ${at - sent} ms after SIGTERM:\n${d.raw()}`);
    const stopping = d.records.findIndex((r) => r.event === 'stopping');
    assert.ok(stopping >= 0, d.raw());
    assert.ok(!d.records.slice(stopping).some((r) => r.event === 'started'), `nothing starts after stopping:\n${d.raw()}`);
    assert.ok(
      d.records.some((r) => r.event === 'stopped'),
      d.raw(),
    );
  } finally {
    d.child.kill('SIGKILL');
    for (const s of sockets) s.destroy();
    hung.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
