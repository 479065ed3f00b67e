// Floors that know page cache from used memory, on a real guest. The guest reads a disk
// larger than its free memory: its page cache fills up and the memory it reports as unused
// falls to almost nothing. Counting cache as used (cache_step_percent = "off", MOM's notion),
// ballast cannot take anything from it. Cache-aware (the default), the balloon takes the
// cache, a step at a time, until the guest is below its page cache's size: the guest keeps
// working, nothing is OOM-killed, the guest never swaps, and no leak alert is raised.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Engine } from '../../src/engine/engine.js';
import { Loop } from '../../src/engine/loop.js';
import { AlertMonitor } from '../../src/engine/alerting.js';
import { DEFAULT_THRESHOLDS } from '../../src/host/alerts.js';
import { QmpHypervisor } from '../../src/hypervisor/qmp/index.js';
import { compilePolicyText } from '../../src/engine/policy-adapter.js';
import { memoryLogger } from '../../src/log/logger.js';
import { defaultSafeguards, type SafeguardConfig } from '../../src/controls/balloon/guard.js';
import { acquireLab, startCacheGuest } from './fixture.js';

const MiB = 1024;
const GUEST_MIB = 384;
const DISK_MIB = 256;
// The policy wants the guest at 128 MiB whatever it holds: only the guard decides how far it goes.
const POLICY = '(with Guests guest (guest.Control "balloon_target" (* 128 1024)))';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Phase {
  minBalloonKiB: number;
  maxSwapIn: number;
  leakAlerts: number;
  /** The balloon actions applied, with their reasons (for the assertion messages). */
  actions: string[];
}

/** Runs ballast on the guest for up to `seconds`, or until `done` says so. */
async function manage(socket: string, safeguards: Partial<SafeguardConfig>, seconds: number, done: (balloonKiB: number) => boolean): Promise<Phase> {
  const logger = memoryLogger();
  const hv = new QmpHypervisor({ sockets: [socket], statsPeriodS: 1 });
  const engine = new Engine({ logger, hypervisor: hv, hostSources: [], policy: compilePolicyText(POLICY), safeguards });
  // A leak window as short as the phase, so that a false alert would show in it.
  const alerts = new AlertMonitor(engine, { ...DEFAULT_THRESHOLDS, intervalS: 1, leakWindowS: 20, leakSamples: 5, leakMinRiseKiB: 16 * MiB }, logger);
  const loop = new Loop(engine, { statsIntervalS: 1, policyIntervalS: 2 });
  loop.onCollect(() => alerts.check());
  const phase: Phase = { minBalloonKiB: Infinity, maxSwapIn: 0, leakAlerts: 0, actions: [] };
  await hv.connect();
  loop.start();
  try {
    const end = Date.now() + seconds * 1000;
    while (Date.now() < end) {
      await sleep(1000);
      const g = engine.snapshot().guests[0];
      const cur = g?.stats.balloon_cur;
      if (typeof cur === 'number') phase.minBalloonKiB = Math.min(phase.minBalloonKiB, cur);
      if (typeof g?.stats.swap_in === 'number') phase.maxSwapIn = Math.max(phase.maxSwapIn, g.stats.swap_in);
      if (typeof cur === 'number' && done(cur)) break;
    }
  } finally {
    await loop.stop();
    engine.dispose();
    await hv.close();
  }
  phase.leakAlerts = logger.records.filter((r) => r.event === 'alert' && r.kind === 'guest_leak').length;
  phase.actions = logger.records
    .filter((r) => r.event === 'action' || r.event === 'rollback')
    .map((r) => `${Math.round(Number(r.from) / 1024)} -> ${Math.round(Number(r.to) / 1024)} MiB: ${(r.reason as string[]).join('; ')}`);
  return phase;
}

test('lab: a cache-heavy guest is ballooned below its page cache, without swapping, OOM kills or a leak alert', { timeout: 600_000 }, async (t) => {
  const lab = await acquireLab(t, { libvirt: false, guests: 0 });
  if (!lab) return;
  t.after(() => lab.release());
  // The whole disk read: the guest's cache holds it, and it has little memory left unused.
  const g = await startCacheGuest(t, lab, { memMiB: GUEST_MIB, diskMiB: DISK_MIB, guestAgent: false });
  const filled = await lab.waitConsole(g.consoleLog, (s) => {
    const m = s.meminfo.at(-1);
    return m && m.availKiB - m.freeKiB >= (DISK_MIB - 40) * MiB ? m : undefined;
  });
  t.diagnostic(
    `after the read: MemTotal ${Math.round(filled.totalKiB / 1024)} MiB, free ${Math.round(filled.freeKiB / 1024)} MiB, available ${Math.round(filled.availKiB / 1024)} MiB`,
  );

  // Page cache counted as used: the floor (used + 64 MiB headroom) is above what the guest has.
  const counted = await manage(g.qmpSocket, { cacheStepFraction: null }, 20, () => false);
  assert.ok(
    counted.minBalloonKiB >= (GUEST_MIB - 16) * MiB,
    `with cache counted as used the balloon stayed near the full size, min ${Math.round(counted.minBalloonKiB / 1024)} MiB; actions:\n${counted.actions.join('\n')}`,
  );

  // Cache-aware: the balloon goes below the cache's size, a step at a time.
  const target = (DISK_MIB - 56) * MiB;
  const t0 = Date.now();
  const aware = await manage(g.qmpSocket, { cacheStepFraction: defaultSafeguards.cacheStepFraction }, 180, (cur) => cur <= target);
  t.diagnostic(
    `cache counted as used: balloon min ${Math.round(counted.minBalloonKiB / 1024)} MiB; cache-aware: ${Math.round(aware.minBalloonKiB / 1024)} MiB after ${Math.round((Date.now() - t0) / 1000)} s, ${aware.actions.length} actions`,
  );
  assert.ok(
    aware.minBalloonKiB <= target,
    `cache-aware: the guest went down to ${Math.round(aware.minBalloonKiB / 1024)} MiB, not to ${target / 1024} MiB (below its ${DISK_MIB} MiB of page cache)`,
  );
  assert.equal(aware.maxSwapIn, 0, 'the guest never swapped in');
  assert.equal(counted.leakAlerts + aware.leakAlerts, 0, 'no leak alert');
  // The guest is alive and working at its new size: its workload reports after the squeeze,
  // and nothing was OOM-killed (the workload would have exited).
  const ratesBefore = lab.consoleOf(g.consoleLog).rates.length;
  const after = await lab.waitConsole(g.consoleLog, (s) => (s.rates.length >= ratesBefore + 2 ? s : undefined), 30_000);
  assert.equal(after.workloadExits, 0, 'the workload never exited (no OOM kill)');
  const m = after.meminfo.at(-1)!;
  assert.ok(m.totalKiB <= target + 48 * MiB, `the guest sees its smaller size: MemTotal ${Math.round(m.totalKiB / 1024)} MiB`);
});
