// Faults on real lab guests under `ballast run` (libvirt), one row of the fault table each:
// - a guest destroyed while the daemon is moving balloons: its control is dropped, its going
//   is logged once, the other guests go on;
// - a guest without a balloon device: never ballooned, reported stale (API, /metrics);
// - the daemon SIGKILLed mid-way through inflating, then started again: it reads the balloons
//   as they are, no guest ends below its floor, and it takes them back up.
// Policies touch only this file's guests, by name.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { acquireLab, spawnDaemon, until, writeDaemonConfig, type DaemonRun } from './fixture.js';
import { virsh } from '../../src/lab/guests.js';
import { LibvirtHypervisor } from '../../src/hypervisor/libvirt/index.js';

const MEM_MIB = 256;
const FLOOR_MIB = 160;

function get(sock: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: sock, path }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => {
        body += c;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

function config(dir: string, maxStepPercent: number): string {
  return writeDaemonConfig(dir, {
    engine: { history_length: 2 },
    safeguards: { min_guest_mib: FLOOR_MIB, headroom_mib: 0, max_step_percent: maxStepPercent, rollback_window: 0 },
    shutdown: { balloons: 'leave' },
    api: { socket: join(dir, 'api.sock') },
  });
}

/** Every guest named gets balloon_target = `kib` (with `wobble`, 8 MiB less once it is there: the balloons keep moving). */
function policy(dir: string, names: string[], kib: number, wobble: boolean): void {
  writeFileSync(
    join(dir, 'policies', '50_faults.policy'),
    `(defvar target ${kib})
(with Guests guest
  (if (or ${names.map((n) => `(== (guest.Prop "name") "${n}")`).join(' ')})
    (guest.Control "balloon_target" ${wobble ? '(if (== guest.balloon_cur target) (- target 8192) target)' : 'target'})
    0))
`,
  );
}

test('faults on lab guests: destroyed mid-run, no balloon device, daemon SIGKILLed and restarted', { timeout: 10 * 60_000 }, async (t) => {
  const lab = await acquireLab(t, { guests: 2, memMiB: MEM_MIB, workload: '', meminfoS: 1, statsPeriodS: 1, bootTimeoutMs: 240_000 });
  if (!lab) return;
  const [kept, doomed] = lab.guests.map((g) => g.name) as [string, string];
  const [noBalloon] = (await lab.startGuests({ count: 1, names: [`${lab.group}-nob`], memMiB: MEM_MIB, workload: '', balloon: false, wait: false })).map(
    (g) => g.name,
  ) as [string];
  const dir = mkdtempSync(join(tmpdir(), 'ballast-faults-'));
  mkdirSync(join(dir, 'policies'));
  const observer = new LibvirtHypervisor({ statsPeriodSec: 0 });
  let run: DaemonRun | null = null;
  t.after(async () => {
    if (run && run.proc.exitCode === null) run.proc.kill('SIGKILL');
    await observer.close();
    await virsh(['destroy', noBalloon]).catch(() => undefined);
    await lab.release();
    rmSync(dir, { recursive: true, force: true });
  });
  await observer.connect();
  const balloonOf = async (name: string) => (await observer.collect()).find((g) => g.name === name)?.stats.balloon_cur ?? null;
  const actions = (r: DaemonRun, guest: string) => r.logs.filter((l) => l.event === 'action' && l.entity === guest && l.control === 'balloon_target');

  // Row: guest destroyed between stats and actuation.
  policy(dir, [kept, doomed, noBalloon], 224 * 1024, true);
  run = spawnDaemon(config(dir, 100));
  const r1 = run;
  await until('both balloons to move', 90_000, () => actions(r1, kept).length >= 2 && actions(r1, doomed).length >= 1).catch((e) => {
    throw new Error(`${(e as Error).message}\n${r1.logText().slice(-3000)}`);
  });
  await virsh(['destroy', doomed]);
  const keptBefore = actions(r1, kept).length;
  await until('the kept guest to be ballooned again after the destroy', 30_000, () => actions(r1, kept).length >= keptBefore + 2);
  await until('the destroyed guest to be logged as gone', 30_000, () => r1.logs.some((l) => l.event === 'guest_vanished' && l.guest === doomed));
  assert.equal(r1.proc.exitCode, null, 'the daemon runs on');
  const after = r1.logs.slice(r1.logs.findIndex((l) => l.event === 'guest_vanished' && l.guest === doomed));
  assert.equal(after.filter((l) => l.entity === doomed || l.guest === doomed).length, 1, 'its going is said once; nothing is tried on it afterwards');
  const errorsAboutIt = r1.logs.filter((l) => l.level === 'error' && JSON.stringify(l).includes(doomed));
  assert.ok(errorsAboutIt.length <= 1, `at most one error about the destroyed guest: ${JSON.stringify(errorsAboutIt)}`);

  // Row: a guest without a balloon device: excluded from balloon control, reported.
  assert.equal(actions(r1, noBalloon).filter((l) => l.result === 'applied').length, 0, 'never ballooned');
  const guests = JSON.parse((await get(join(dir, 'api.sock'), '/api/v1/guests')).body) as { name: string; stale?: string; props: Record<string, unknown> }[];
  const nob = guests.find((g) => g.name === noBalloon);
  assert.ok(nob, `the balloon-less guest is listed: ${guests.map((g) => g.name).join(', ')}`);
  assert.ok(nob.stale, 'and marked stale (out of balloon control), with the reason');
  assert.equal(nob.props.balloon_model, 'none');
  const metrics = (await get(join(dir, 'api.sock'), '/metrics')).body;
  assert.match(metrics, new RegExp(`ballast_guest_stale\\{name="${noBalloon}",uuid="[^"]+"\\} 1`));

  // Row: SIGKILL mid-inflation, then a restart that deflates: state re-read, floor kept.
  run.proc.kill('SIGTERM');
  await run.exited;
  policy(dir, [kept], FLOOR_MIB * 1024, false);
  run = spawnDaemon(config(dir, 10)); // 10% steps: several cycles to the floor
  const r2 = run;
  await until(
    'inflation under way',
    60_000,
    async () => actions(r2, kept).some((l) => l.result === 'applied') && ((await balloonOf(kept)) ?? Infinity) < MEM_MIB * 1024,
  );
  r2.proc.kill('SIGKILL');
  await r2.exited;
  const mid = await balloonOf(kept);
  assert.ok(mid !== null && mid >= FLOOR_MIB * 1024 && mid < MEM_MIB * 1024, `killed mid-way: ${mid} KiB, between the floor and the maximum`);
  policy(dir, [kept], 240 * 1024, false);
  run = spawnDaemon(config(dir, 100));
  const r3 = run;
  await until('the restarted daemon to take the guest back up to 240 MiB', 60_000, async () => (await balloonOf(kept)) === 240 * 1024).catch((e) => {
    throw new Error(`${(e as Error).message}\n${r3.logText().slice(-3000)}`);
  });
  const first = actions(r3, kept)[0]!;
  // The guest's balloon driver goes on toward the last target set after the daemon dies, so the
  // balloon the restarted daemon reads lies between what was seen at the kill and that target;
  // never the maximum a daemon without state would assume.
  const lastSet = actions(r2, kept)
    .filter((l) => l.result === 'applied')
    .at(-1)!.to as number;
  const from = first.from as number;
  assert.ok(
    from <= mid! && from >= lastSet,
    `the restarted daemon started from the balloon as it was (${from} KiB; at the kill ${mid}, last target ${lastSet})`,
  );
  for (const l of [...r2.logs, ...r3.logs].filter((x) => x.event === 'action' && x.control === 'balloon_target')) {
    assert.ok((l.to as number) >= FLOOR_MIB * 1024, `never below the floor: ${JSON.stringify(l)}`);
  }
  run.proc.kill('SIGTERM');
  assert.equal(await run.exited, 0);
});
