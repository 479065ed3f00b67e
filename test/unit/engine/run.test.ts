// `ballast run` as an operator runs it: a spawned process with hypervisor = sim, JSON logs on
// stderr, policies hot-reloaded from a directory, stopped by SIGTERM.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

interface Rec {
  event: string;
  level: string;
  [k: string]: unknown;
}

function setup(extra = ''): { dir: string; config: string; policies: string } {
  const dir = mkdtempSync(join(tmpdir(), 'ballast-run-'));
  const policies = join(dir, 'policies');
  spawnSync('mkdir', [policies]);
  copyFileSync('policies/default.policy', join(policies, '50_default.policy'));
  const config = join(dir, 'ballast.toml');
  writeFileSync(
    config,
    `
[hypervisor]
driver = "sim"
scenario = "demo"
time_scale = 250
[engine]
stats_interval = 5
policy_interval = 10
policy_dir = "${policies}"
record_file = "evaluations.jsonl"
[api]
socket = "${dir}/api.sock"
[log]
format = "json"
${extra}
`,
  );
  return { dir, config, policies };
}

/** Spawns the daemon; resolves records as they come; `until` waits for a matching record. */
function start(config: string) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'run', '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  const records: Rec[] = [];
  const bad: string[] = [];
  let buf = '';
  const waiters: { pred: (r: Rec) => boolean; resolve: (r: Rec) => void }[] = [];
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => {
    buf += chunk;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      let rec: Rec;
      try {
        rec = JSON.parse(line) as Rec;
      } catch {
        bad.push(line);
        continue;
      }
      records.push(rec);
      for (const w of [...waiters])
        if (w.pred(rec)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(rec);
        }
    }
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const until = (pred: (r: Rec) => boolean, ms = 20_000) => {
    const found = records.find(pred);
    if (found) return Promise.resolve(found);
    return new Promise<Rec>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`timed out; records so far:\n${records.map((r) => JSON.stringify(r)).join('\n')}\n${bad.join('\n')}`)),
        ms,
      );
      waiters.push({
        pred,
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
      });
    });
  };
  return { child, records, bad, exited, until };
}

test('ballast run (sim): acts with reasons, hot-reloads policies, stops cleanly on SIGTERM', async () => {
  // The threshold puts the simulated host in low_available from its first sample.
  const { dir, config, policies } = setup('[alerts]\navailable_percent = 99\n');
  const d = start(config);
  try {
    await d.until((r) => r.event === 'started');
    const alert = await d.until((r) => r.event === 'alert' && r.kind === 'low_available');
    assert.equal(alert.entity, 'host');
    assert.equal(alert.threshold, 0.99);
    await d.until((r) => r.event === 'policy_loaded');
    const action = await d.until((r) => r.event === 'action' && r.control === 'balloon_target');
    assert.ok(Array.isArray(action.reason) && (action.reason as string[]).length > 0, 'every action has its reason');

    // a bad policy file is refused with FILE:LINE:COL, the daemon keeps running on the last good one
    const bad = join(policies, '60_bad.policy');
    writeFileSync(bad, '(defvar x 1)\n(Host.Control "ksm_run" @)\n');
    const refused = await d.until((r) => r.event === 'policy_refused');
    assert.match(String(refused.error), /60_bad\.policy:2:25: /);
    const cyclesBefore = d.records.filter((r) => r.event === 'action').length;
    await d.until((r) => r.event === 'action' && d.records.filter((x) => x.event === 'action').length > cyclesBefore + 1);

    d.child.kill('SIGTERM');
    const code = await d.exited;
    assert.equal(code, 0);
    const events = d.records.map((r) => r.event);
    const stopping = d.records.find((r) => r.event === 'stopping')!;
    assert.equal(stopping.reason, 'signal SIGTERM');
    assert.ok(events.indexOf('balloons_left') > events.indexOf('stopping'));
    assert.ok(events.indexOf('ksm_restored') > events.indexOf('stopping'), 'KSM settings put back (ksm.restore_on_exit)');
    assert.equal(events.at(-1), 'stopped');
    assert.equal((d.records.at(-1)!.alerts as Record<string, number>).low_available, 1, 'raised once, not once per collection');
    assert.deepEqual(
      d.bad.filter((l) => l.trim() !== ''),
      [],
      'every stderr line is a JSON record',
    );
    assert.ok(!d.records.some((r) => r.event === 'task_error'));

    // engine.record_file: every evaluation, replayable by `ballast policy eval` with the same result
    const lines = readFileSync(join(dir, 'evaluations.jsonl'), 'utf8').trim().split('\n');
    assert.ok(lines.length >= 3, `recorded ${lines.length} evaluations`);
    const last = JSON.parse(lines.at(-1)!) as {
      cycle: number;
      host: unknown;
      guests: unknown[];
      result: { guests: { name: string; controls: Record<string, number> }[]; host: { controls: unknown } };
    };
    assert.equal(last.guests.length, last.result.guests.length);
    const snap = join(dir, 'snap.json');
    writeFileSync(snap, lines.at(-1)!);
    const ev = spawnSync(
      process.execPath,
      ['--import', 'tsx', 'src/cli/main.ts', 'policy', 'eval', '--policy', join(policies, '50_default.policy'), '--input', snap],
      { encoding: 'utf8' },
    );
    assert.equal(ev.status, 0, ev.stderr);
    const replay = JSON.parse(ev.stdout) as typeof last.result;
    assert.deepEqual(
      replay.guests.map((g) => [g.name, g.controls]),
      last.result.guests.map((g) => [g.name, g.controls]),
    );
    assert.deepEqual(replay.host.controls, last.result.host.controls);
  } finally {
    d.child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('ballast run: shutdown.balloons = "restore" deflates every guest on SIGINT', async () => {
  const { dir, config } = setup('[shutdown]\nballoons = "restore"\n');
  const d = start(config);
  try {
    await d.until((r) => r.event === 'action' && r.control === 'balloon_target' && (r.to as number) < (r.from as number));
    d.child.kill('SIGINT');
    assert.equal(await d.exited, 0);
    const restores = d.records.filter((r) => r.event === 'action' && (r.reason as string[])[0]?.startsWith('shutdown.balloons'));
    assert.ok(restores.length > 0, 'ballooned guests are deflated on stop');
  } finally {
    d.child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('ballast run: a config error names the key and nothing starts', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ballast-run-'));
  try {
    const config = join(dir, 'bad.toml');
    writeFileSync(config, '[engine]\npolicy_interval = -10\n[hypervisor]\ndriver = "vmware"\n');
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'run', '--config', config], { encoding: 'utf8' });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /config error: engine\.policy_interval: expected seconds from 0\.5 to 3600/);
    assert.match(r.stderr, /config error: hypervisor\.driver: expected one of "libvirt", "qmp", "sim"/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
