// `ballast run` (spawned, hypervisor.driver = "libvirt") with the SHIPPED policies/balloon.policy,
// copied unchanged, on two real lab guests. A `00_tuning.policy` next to it sets the host
// pressure threshold to 2, above any free share (at most 1), so the lab host counts as under
// pressure however idle it is; then it is deleted (hot reload) and the pressure is lifted. Shown:
//  1. the guests are inflated toward their floors: balloon_cur (through the libvirt driver)
//     falls well below balloon_max, and the guest's own MemTotal (its console) falls with it;
//  2. no guest ever goes below its floor: every target the daemon set is checked against
//     max(min_guest, balloon_min, used + headroom) recomputed from the very sample the daemon
//     decided on (engine.record_file; used leaves page cache out when the guest reports
//     MemAvailable), and every sample seen keeps headroom available;
//  3. with 00_tuning.policy deleted, the guests grow back to balloon_max.
// The shipped policy acts on every guest of the host, so this test runs only while its own two
// guests are the only domains on libvirtd (it waits a while, then skips loudly), and it stops
// the daemon at once if another domain appears mid-run. KSM is off in the config: the real
// KSM is never touched.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { acquireLab, skipLoudly, spawnDaemon, writeDaemonConfig } from './fixture.js';
import { LibvirtHypervisor } from '../../src/hypervisor/libvirt/index.js';
import type { GuestSample, Stats } from '../../src/types.js';

const MiB = 1024; // KiB
const GUEST_MIB = 384;
const MIN_GUEST_MIB = 128;
const HEADROOM_MIB = 64;
// The guests hold a fixed working set so that "used + headroom" (not the configured minimum)
// is what bounds them; idle afterwards, so the two shared cores stay free.
const WORKLOAD = 'alloc:64,idle:3600';
// Above any possible free share: an idle 24 GiB machine is 99% free.
const THRESHOLD = 2;
const shipped = join(process.cwd(), 'policies', 'balloon.policy');

/** The host's free share as the shipped policy reads it: (MemFree + Buffers + Cached) / MemTotal. */
function hostFreeShare(): number {
  const m = new Map<string, number>();
  for (const line of readFileSync('/proc/meminfo', 'utf8').split('\n')) {
    const r = line.match(/^(\w+):\s+(\d+)/);
    if (r) m.set(r[1], Number(r[2]));
  }
  return ((m.get('MemFree') ?? 0) + (m.get('Buffers') ?? 0) + (m.get('Cached') ?? 0)) / (m.get('MemTotal') ?? 1);
}

/** What the guard counts as the guest's used memory (KiB): without page cache, balloon_cur -
 *  mem_usable (MemAvailable), when the guest reports it and it is not below mem_unused; else
 *  balloon_cur - mem_unused. */
function usedOf(s: Stats): number | null {
  const cur = s.balloon_cur,
    unused = s.mem_unused,
    usable = s.mem_usable;
  if (typeof cur !== 'number' || typeof unused !== 'number') return null;
  return typeof usable === 'number' && usable >= unused ? Math.max(0, cur - usable) : Math.max(0, cur - unused);
}

/** The guard's floor for one sample, from the config's values (KiB). */
function floorOf(s: Stats): number | null {
  const max = s.balloon_max;
  const used = usedOf(s);
  if (typeof max !== 'number' || used === null) return null;
  const bmin = typeof s.balloon_min === 'number' ? s.balloon_min : 0;
  const f = Math.max(MIN_GUEST_MIB * MiB, bmin, used + HEADROOM_MIB * MiB);
  return Math.min(Math.ceil(f), max);
}

const mib = (kib: number) => Math.round(kib / MiB);

class ForeignGuest extends Error {}

test('ballast run (libvirt) + shipped balloon.policy under host pressure: inflates to the floors, never below, grows back when the pressure is lifted', {
  timeout: 300_000,
}, async (t) => {
  const share = hostFreeShare();
  if (share < 0.3) return skipLoudly(t, `host free share ${share.toFixed(3)}: the host really is short of memory, the guests could not be shown growing back`);

  const lab = await acquireLab(t, {
    guests: 2,
    memMiB: GUEST_MIB,
    group: 'runpressure',
    workload: WORKLOAD,
    meminfoS: 1,
    statsPeriodS: 1,
    bootTimeoutMs: 240_000,
  });
  if (!lab) return;
  const names = lab.guests.map((g) => g.name);
  const ours = (n: string) => names.includes(n);
  const dir = mkdtempSync(join(tmpdir(), 'ballast-run-pressure-'));
  const observer = new LibvirtHypervisor({ statsPeriodSec: 0 });
  let daemon: ChildProcess | null = null;
  let foreign: string | null = null;
  t.after(async () => {
    if (daemon && daemon.exitCode === null && daemon.signalCode === null) daemon.kill('SIGKILL');
    await observer.close();
    await lab.release();
    rmSync(dir, { recursive: true, force: true });
  });
  const stopForForeign = (name: string, how: string) => {
    // Before the daemon starts, other domains are waited for (below), not treated as an abort.
    if (!daemon || foreign || ours(name)) return;
    foreign = `${name} (${how})`;
    // The shipped policy would act on it too: stop the daemon before it can.
    if (daemon && daemon.exitCode === null) daemon.kill('SIGTERM');
  };
  observer.onEvent((e) => {
    if (e.kind === 'started') stopForForeign(e.name, 'started while the daemon ran');
  });

  const until = async <T>(what: string, ms: number, f: () => Promise<T | null | undefined | false> | T | null | undefined | false): Promise<T> => {
    const end = Date.now() + ms;
    for (;;) {
      if (foreign) throw new ForeignGuest(foreign);
      const v = await f();
      if (v) return v;
      if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  };

  await observer.connect();
  /** Fresh samples of our guests, in names order; also watches for any other domain. */
  const samples: { at: number; g: GuestSample }[] = [];
  const ourSamples = async (): Promise<GuestSample[] | null> => {
    const all = await observer.collect();
    for (const g of all) if (!ours(g.name)) stopForForeign(g.name, 'seen in a collection');
    const mine = names.map((n) => all.find((g) => g.name === n));
    if (mine.some((g) => !g || g.stale || typeof g.stats.mem_unused !== 'number')) return null;
    for (const g of mine) samples.push({ at: Date.now(), g: g! });
    return mine as GuestSample[];
  };

  // The shipped policy acts on every guest: run only while ours are the only domains.
  const others = async () => (await observer.collect()).filter((g) => !ours(g.name)).map((g) => g.name);
  let busy = await others();
  if (busy.length) {
    console.error(`run-pressure: other domains run on libvirtd (${busy.join(', ')}): waiting up to 120 s for them to end`);
    const end = Date.now() + 120_000;
    while (busy.length && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 2000));
      busy = await others();
    }
    if (busy.length)
      return skipLoudly(t, `other domains still run on libvirtd after 120 s (${busy.join(', ')}): the shipped balloon policy would act on them too`);
  }

  const before = await until('balloon stats of both guests', 60_000, ourSamples);
  const totalBefore = names.map((n) => lab.consoleOf(n).meminfo.at(-1)!.totalKiB);
  for (const g of before) assert.equal(g.stats.balloon_cur, GUEST_MIB * MiB, `${g.name} starts at its maximum`);

  const pdir = join(dir, 'policies');
  mkdirSync(pdir);
  copyFileSync(shipped, join(pdir, 'balloon.policy'));
  assert.match(
    readFileSync(shipped, 'utf8'),
    /\(defvar balloon_pressure_threshold /,
    'the shipped policy still names its threshold balloon_pressure_threshold',
  );
  const tuning = join(pdir, '00_tuning.policy');
  writeFileSync(tuning, `# the lab host counts as under pressure\n(defvar balloon_pressure_threshold ${THRESHOLD})\n`);
  const recordFile = join(dir, 'record.jsonl');
  const cfg = writeDaemonConfig(dir, {
    engine: { history_length: 3, policy_dir: pdir, record_file: recordFile },
    safeguards: { min_guest_mib: MIN_GUEST_MIB, headroom_mib: HEADROOM_MIB, rollback_window: 0 },
    ksm: { restore_on_exit: false },
    shutdown: { balloons: 'leave' },
  });

  const t0 = Date.now();
  const run = spawnDaemon(cfg, (rec) => {
    if (rec.event === 'guest_appeared' && typeof rec.guest === 'string') stopForForeign(rec.guest, 'the daemon saw it appear');
  });
  daemon = run.proc;
  const { logs, exited, logText } = run;
  const withLog = (e: unknown): never => {
    if (e instanceof ForeignGuest) throw e;
    throw new Error(`${(e as Error).message}\ndaemon log tail:\n${logText().slice(-5000)}`);
  };

  try {
    // 1. Under pressure: inflated toward the floors.
    let firstInflation = 0;
    const atFloor = await until('both guests to be inflated to their floors', 120_000, async () => {
      if (!firstInflation && logs.some((l) => l.event === 'action')) firstInflation = Date.now();
      const s = await ourSamples();
      if (!s) return null;
      // At the floor: within 2 % of balloon_max of max(min_guest, used + headroom) for that sample.
      const done = s.every((g) => g.stats.balloon_cur! - floorOf(g.stats)! <= 0.02 * g.stats.balloon_max!);
      return done ? s : null;
    }).catch(withLog);
    const floorMs = Date.now() - (firstInflation || t0);
    const startToInflationMs = (firstInflation || Date.now()) - t0;
    for (const g of atFloor) {
      const cur = g.stats.balloon_cur!,
        max = g.stats.balloon_max!;
      assert.ok(cur <= max - 128 * MiB, `${g.name}: balloon_cur ${mib(cur)} MiB is well below balloon_max ${mib(max)} MiB`);
    }
    // The guests themselves see less memory: MemTotal falls by (nearly) what the balloon took.
    const totalsAfter = await Promise.all(
      names.map((n, i) =>
        lab.waitConsole(
          n,
          (c) => {
            const m = c.meminfo.at(-1);
            const took = GUEST_MIB * MiB - atFloor[i].stats.balloon_cur!;
            return m && totalBefore[i] - m.totalKiB >= 0.9 * took ? m.totalKiB : undefined;
          },
          30_000,
        ),
      ),
    );

    // Hold the floor for a few cycles (the daemon keeps deciding; none may go below).
    await new Promise((r) => setTimeout(r, 4000));
    const held = await until('samples while held', 10_000, ourSamples);

    // 3. Pressure lifted: 00_tuning.policy deleted, the daemon reloads, the guests grow back.
    const loadedBefore = logs.filter((l) => l.event === 'policy_loaded').length;
    const tLift = Date.now();
    unlinkSync(tuning);
    await until(
      'the daemon to reload the policy without 00_tuning.policy',
      30_000,
      () => logs.filter((l) => l.event === 'policy_loaded').length > loadedBefore,
    ).catch(withLog);
    const liftedAt = Date.parse(String(logs.filter((l) => l.event === 'policy_loaded').at(-1)!.ts)) / 1000;
    const grown = await until('both guests to grow back to balloon_max', 120_000, async () => {
      const s = await ourSamples();
      return s?.every((g) => g.stats.balloon_cur! >= g.stats.balloon_max! - 2 * MiB) ? s : null;
    }).catch(withLog);
    const growMs = Date.now() - tLift;
    const totalsGrown = await Promise.all(
      names.map((n, i) =>
        lab.waitConsole(
          n,
          (c) => {
            const m = c.meminfo.at(-1);
            return m && m.totalKiB >= totalBefore[i] - 4 * MiB ? m.totalKiB : undefined;
          },
          30_000,
        ),
      ),
    );

    daemon.kill('SIGTERM');
    const code = await Promise.race([exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 20_000))]);
    if (foreign) throw new ForeignGuest(foreign);
    assert.equal(code, 0, `clean exit on SIGTERM (log tail:\n${logText().slice(-2000)})`);

    // 2. Never below the floor. Every balloon action the daemon applied, checked against the
    // floor recomputed from the sample that cycle decided on (the evaluation record).
    const records = readFileSync(recordFile, 'utf8')
      .trim()
      .split('\n')
      .map(
        (l) =>
          JSON.parse(l) as {
            cycle: number;
            time: number;
            guests: { props: Record<string, unknown>; stats: Stats[] }[];
            result: { guests: { name: string; controls: Record<string, unknown> }[] };
          },
      );
    const byCycle = new Map(records.map((r) => [r.cycle, r]));
    const actions = logs.filter((l) => l.event === 'action' && l.control === 'balloon_target');
    assert.ok(actions.length >= 4, `the daemon ballooned (${actions.length} actions)`);
    const touchedOthers = logs.filter(
      (l) => (l.event === 'action' || l.event === 'veto' || l.event === 'action_failed') && typeof l.entity === 'string' && !ours(l.entity as string),
    );
    assert.deepEqual(touchedOthers, [], 'the daemon acted on no other guest');
    let minMargin = Infinity;
    let inflations = 0,
      deflations = 0,
      lateInflations = 0,
      clamps = 0,
      clampsByUse = 0;
    let guardPasses = 0;
    for (const a of actions) {
      assert.equal(a.result, 'applied', `action applied: ${JSON.stringify(a)}`);
      if (a.guard_pass === true) {
        // The guards alone between policy cycles, on a sample newer than any evaluation record:
        // they only ever raise a guest to its floor (or roll an inflation back).
        guardPasses++;
        assert.ok((a.to as number) > (a.from as number), `a guard pass only raises: ${JSON.stringify(a)}`);
        assert.match((a.reason as string[]).join('; '), /below floor: raised|^rollback/, `a guard pass says why it raised: ${JSON.stringify(a)}`);
        continue;
      }
      const rec = byCycle.get(a.cycle as number);
      assert.ok(rec, `evaluation record of cycle ${String(a.cycle)}`);
      const g = rec!.guests.find((x) => x.props.name === a.entity);
      assert.ok(g, `cycle ${String(a.cycle)} evaluated ${String(a.entity)}`);
      const s = g!.stats.at(-1)!;
      assert.equal(a.from, s.balloon_cur, `action of cycle ${String(a.cycle)} starts from the recorded sample`);
      const floor = floorOf(s);
      assert.ok(floor !== null, `cycle ${String(a.cycle)}: ${String(a.entity)} had balloon stats`);
      const to = a.to as number;
      assert.ok(
        to >= floor!,
        `${String(a.entity)} cycle ${String(a.cycle)}: target ${to} KiB is below its floor ${floor} KiB (sample ${JSON.stringify(s)}; reasons ${JSON.stringify(a.reason)})`,
      );
      assert.ok(to <= s.balloon_max!, `target within balloon_max`);
      minMargin = Math.min(minMargin, to - floor!);
      // Where the daemon says it clamped to the floor, its floor is the one recomputed here.
      const clamp = (a.reason as string[]).map((r) => r.match(/^clamped up to floor (\d+) MiB \((.*)\)$/)).find((m) => m);
      if (clamp) {
        clamps++;
        assert.ok(Math.abs(Number(clamp[1]) - floor! / MiB) <= 1, `logged floor ${clamp[1]} MiB = recomputed ${mib(floor!)} MiB`);
        if (clamp[2].startsWith('used ')) clampsByUse++;
      }
      if (to < (a.from as number)) {
        inflations++;
        // Once the pressure is lifted the shipped policy only grows guests.
        if (rec!.time > liftedAt + 0.05) lateInflations++;
      } else deflations++;
    }
    assert.equal(lateInflations, 0, 'no inflation after the pressure was lifted');
    // The policy asked for less than the floor and the guard held the line (no applied target
    // below it, above), with used + headroom (not the configured minimum) as the binding term:
    // the guests' working sets count. Counted from what the policy asked, for each guest: how
    // many of those requests show up as a logged clamp depends on whether the last 5% step
    // lands more than the smallest change above the floor.
    const belowFloorAsks = new Map(names.map((n) => [n, 0]));
    for (const r of records) {
      for (const g of r.guests) {
        const name = String(g.props.name);
        const asked = r.result.guests.find((x) => x.name === name)?.controls.balloon_target;
        const s = g.stats.at(-1)!;
        const floor = floorOf(s);
        const byUse = floor !== null && usedOf(s)! + HEADROOM_MIB * MiB > MIN_GUEST_MIB * MiB;
        if (ours(name) && typeof asked === 'number' && floor !== null && byUse && asked < floor) belowFloorAsks.set(name, belowFloorAsks.get(name)! + 1);
      }
    }
    for (const [n, k] of belowFloorAsks)
      assert.ok(k >= 1, `${n}: the policy asked for less than the used + headroom floor (${k} times; ${clampsByUse} of ${clamps} logged clamps by use)`);
    assert.ok(inflations >= 2 && deflations >= 2, `inflations ${inflations}, deflations ${deflations} (and ${guardPasses} raises by guard passes)`);
    // And what the guests reported: each kept at least the headroom available (MemAvailable:
    // free memory and cache it can drop; a few MiB of slack for what the guest's use moved
    // between the decision and the sample) and never fell under the configured minimum.
    let minUnused = Infinity;
    for (const { g } of samples) {
      assert.ok(g.stats.balloon_cur! >= MIN_GUEST_MIB * MiB, `${g.name}: balloon_cur ${g.stats.balloon_cur} KiB under min_guest`);
      const avail = typeof g.stats.mem_usable === 'number' && g.stats.mem_usable >= g.stats.mem_unused! ? g.stats.mem_usable : g.stats.mem_unused!;
      minUnused = Math.min(minUnused, avail);
    }
    // The guard's floor holds at decision time (checked above from the evaluation records);
    // between a decision and the next sample the guest's own use moves (a TCG guest's kernel
    // allocated 17 MiB in one interval in a CI run), so the sample keeps at least half the headroom.
    assert.ok(minUnused >= (HEADROOM_MIB / 2) * MiB, `every guest kept most of the headroom available (least seen ${mib(minUnused)} MiB)`);
    for (const r of records) {
      for (const g of r.guests) {
        const s = g.stats.at(-1)!;
        assert.ok(typeof s.balloon_cur !== 'number' || s.balloon_cur >= MIN_GUEST_MIB * MiB, `recorded ${String(g.props.name)} above min_guest`);
      }
    }

    console.error(
      `run-pressure: host free share ${share.toFixed(3)}, threshold forced to ${THRESHOLD}; ` +
        names
          .map(
            (n, i) =>
              `${n}: balloon ${GUEST_MIB} -> ${mib(atFloor[i].stats.balloon_cur!)} MiB (floor ${mib(floorOf(atFloor[i].stats)!)} MiB, used ${mib(usedOf(atFloor[i].stats)!)} MiB), ` +
              `MemTotal ${mib(totalBefore[i])} -> ${mib(totalsAfter[i])} -> ${mib(totalsGrown[i])} MiB, held at ${mib(held[i].stats.balloon_cur!)} MiB, back to ${mib(grown[i].stats.balloon_cur!)} MiB`,
          )
          .join('; ') +
        `; first inflation ${(startToInflationMs / 1000).toFixed(1)} s after spawning the daemon, floor reached ${(floorMs / 1000).toFixed(1)} s after it, grown back ${(growMs / 1000).toFixed(1)} s after deleting 00_tuning.policy; ` +
        `${actions.length} actions (${inflations} inflations, ${deflations} deflations), ${clamps} clamped up to the floor (${clampsByUse} by used + headroom), policy asks below the floor ${[...belowFloorAsks.values()].join('/')}, least target margin above the floor ${mib(minMargin)} MiB, least unused seen ${mib(minUnused)} MiB`,
    );
  } catch (e) {
    if (!(e instanceof ForeignGuest)) throw e;
    if (daemon.exitCode === null) daemon.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 15_000))]);
    const touched = logs.filter((l) => l.event === 'action' && typeof l.entity === 'string' && !ours(l.entity as string));
    if (touched.length) console.error(`run-pressure: the daemon acted on another guest before it was stopped: ${JSON.stringify(touched)}`);
    return skipLoudly(
      t,
      `another domain appeared on libvirtd during the run (${e.message}): the daemon was stopped, the shipped policy must not act on other guests`,
    );
  }
});
