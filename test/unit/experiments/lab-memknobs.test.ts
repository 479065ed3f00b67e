// The lab experiment's pure parts: workload plan, domain size, console-derived metrics,
// counter summaries, spreads and ratios, the console tail, the table, the cleanup order.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { validateWorkloadSpec, parseConsoleLine } from '../../../src/lab/console.js';
import { deadOwner } from '../../../src/experiments/lab-memknobs/stale.js';
import {
  ALL_CONFIGS,
  CONFIG_TITLES,
  CONFIGS,
  checkConfigs,
  checkScale,
  configParts,
  DEFAULT_SCALE,
  domainLimitMiB,
  guestWorkload,
  planGuests,
  swapSizeMiB,
  vmemLayout,
} from '../../../src/experiments/lab-memknobs/plan.js';
import { parseSwapPreset, PRESETS, throttleLines } from '../../../src/experiments/lab-memknobs/swap-device.js';
import { clearStaleKsm } from '../../../src/experiments/lab-memknobs/setup.js';
import { qemuArgs } from '../../../src/lab/qemu.js';
import { guestCmdline } from '../../../src/lab/guests.js';
import { defaultCpuPerGuest, quotaUs } from '../../../src/experiments/lab-memknobs/cpu-cap.js';
import { v1Mount } from '../../../src/experiments/lab-memknobs/domain.js';
import {
  hugePageShare,
  minGuestTotalKiB,
  keptWorkloadPages,
  oomKills,
  peaksReached,
  ratio,
  spread,
  summarizeCounters,
  workloadPages,
  workloadTouchSeconds,
  workloadTrouble,
  type CounterSample,
  type TimedLine,
} from '../../../src/experiments/lab-memknobs/metrics.js';
import { managerPolicies, MOM_STYLE_PSI_SAFEGUARDS, MOM_STYLE_SAFEGUARDS } from '../../../src/experiments/lab-memknobs/manager.js';
import { defaultSafeguards, guardBalloon } from '../../../src/controls/balloon/guard.js';
import { History } from '../../../src/engine/history.js';
import { ConsoleTail } from '../../../src/experiments/lab-memknobs/console-tail.js';
import { parseSmapsRollup, readHugeSample, readKsmSample, summarizeKsm } from '../../../src/experiments/lab-memknobs/counters.js';
import { parsePsiTotals } from '../../../src/psi.js';
import { swapAreas } from '../../../src/experiments/lab-memknobs/swap.js';
import { summarize, LabUnavailable, thpChoice } from '../../../src/experiments/lab-memknobs/experiment.js';
import { acquireExperimentLock } from '../../../src/experiments/lab-memknobs/lock.js';
import { fmtSpread, formatLabTable } from '../../../src/experiments/lab-memknobs/format.js';
import { Cleanup } from '../../../src/experiments/lab-memknobs/cleanup.js';
import type { RunResult } from '../../../src/experiments/lab-memknobs/run.js';

test('plan: every guest runs the same valid schedule, staggered evenly over the period', () => {
  const plans = planGuests({ ...DEFAULT_SCALE });
  assert.equal(plans.length, 4);
  assert.deepEqual(
    plans.map((p) => p.delayS),
    [0, 30, 60, 90],
  );
  assert.equal(new Set(plans.map((p) => p.workload)).size, 1);
  for (const p of plans) assert.equal(validateWorkloadSpec(p.workload), p.workload);
  for (const steps of [12, 6]) {
    const w = guestWorkload(384, 120, steps);
    assert.equal(w.baseMiB, 64);
    assert.equal(w.peakMiB, 250);
    const allocs = [...w.spec.matchAll(/alloc:(\d+)/g)].map((m) => Number(m[1]));
    // base, `steps` increasing steps ending at the peak, back to base
    assert.equal(allocs.length, steps + 2);
    assert.equal(allocs[0], 64);
    assert.equal(allocs[steps], 250);
    assert.equal(allocs.at(-1), 64);
    for (let i = 1; i <= steps; i++) assert.ok(allocs[i]! > allocs[i - 1]!);
    // growth per ~4 s step: (250 - 64) / steps MiB
    for (let i = 1; i <= steps; i++) assert.ok(Math.abs(allocs[i]! - allocs[i - 1]! - 186 / steps) <= 1);
    // a clock: the cycle starts again 120 s after it began, whatever the guest's delays
    assert.ok(w.spec.endsWith(',loop@120'));
    assert.ok(!/(touch|idle):/.test(w.spec), 'every touch and idle ends at a set time in the cycle');
    // the set times only move forward, and the ramp's touches are 1 s every 4 s
    const marks = [...w.spec.matchAll(/(touch|idle|loop)@(\d+)/g)].map((m) => Number(m[2]));
    for (let i = 1; i < marks.length; i++) assert.ok(marks[i]! > marks[i - 1]!, `${marks[i - 1]} then ${marks[i]}`);
    // the peak is touched once per cycle (the hold, 8 s), right after the last ramp step
    assert.match(w.spec, new RegExp(`alloc:250,touch@${w.activeS - 2},alloc:64,touch@${w.activeS},loop@120$`));
    assert.equal(w.activeS, 2 + (steps - 1) * 4 + 10);
    assert.equal(w.restS, 120 - w.activeS);
  }
});

test('plan: the domain limit is the ratio of guest memory plus QEMU overhead; swap covers the rest', () => {
  assert.equal(domainLimitMiB(DEFAULT_SCALE), 1280); // 2/3 x 4 x (384 + 96)
  assert.equal(domainLimitMiB({ ...DEFAULT_SCALE, guests: 2, memMiB: 256 }), 469);
  assert.ok(swapSizeMiB(DEFAULT_SCALE) >= 4 * 480 - 1280 + 256);
  assert.equal(swapSizeMiB(DEFAULT_SCALE) % 64, 0);
  assert.throws(() => checkScale({ ...DEFAULT_SCALE, guests: 0 }), /--guests/);
  assert.throws(() => checkScale({ ...DEFAULT_SCALE, memMiB: 1024 }), /--mem/);
  assert.throws(() => checkScale({ ...DEFAULT_SCALE, durationS: 5 }), /--duration/);
  assert.throws(() => checkScale({ ...DEFAULT_SCALE, warmupS: -1 }), /--warmup must be 0..1800 s, got -1/);
  assert.doesNotThrow(() => checkScale({ ...DEFAULT_SCALE, warmupS: 120 }));
  assert.throws(() => checkScale({ ...DEFAULT_SCALE, limitRatio: 0 }), /--limit-ratio/);
  assert.throws(() => checkScale({ ...DEFAULT_SCALE, periodS: 60 }), /--period must be a whole number of seconds, at least 61 with 12 ramp steps/);
  assert.doesNotThrow(() => checkScale({ ...DEFAULT_SCALE, periodS: 60, rampSteps: 6 }));
  assert.throws(() => checkScale({ ...DEFAULT_SCALE, rampSteps: 0 }), /--ramp-steps/);
  assert.doesNotThrow(() => checkScale({ ...DEFAULT_SCALE, cacheMiB: 96 }));
  assert.throws(() => checkScale({ ...DEFAULT_SCALE, cacheMiB: 193 }), /--cache must be a whole number of MiB, 0..192 \(half the guest's memory\), got 193/);
  assert.throws(() => checkScale({ ...DEFAULT_SCALE, cacheMiB: -1 }), /--cache/);
  assert.deepEqual(checkScale({ ...DEFAULT_SCALE }), DEFAULT_SCALE);
});

const L = (at: number, text: string): TimedLine => ({ at, line: parseConsoleLine(text)! });

test('metrics: pages, OOM kills and balloon depth inside the window only', () => {
  const lines = [
    L(9, 'BALLAST rate t=1 idx=1 op=touch pages=500 secs=2 pages_per_s=250 ws_kib=1'),
    L(10, 'BALLAST rate t=2 idx=1 op=touch pages=1000 secs=2 pages_per_s=500 ws_kib=1'),
    L(12, 'BALLAST rate t=4 idx=2 op=alloc pages=300 secs=2 pages_per_s=150 ws_kib=1'),
    L(13, 'BALLAST meminfo t=5 total_kib=200000 free_kib=1 avail_kib=1'),
    L(14, 'BALLAST workload-exit t=6 status=137'),
    L(14, 'BALLAST qga-exit t=6 status=137'),
    L(15, 'BALLAST workload-exit t=7 status=1'),
    L(15, 'BALLAST alloc-failed t=7 idx=2 want_kib=2 ws_kib=1 errno=12'),
    L(16, 'BALLAST meminfo t=8 total_kib=150000 free_kib=1 avail_kib=1'),
    L(20, 'BALLAST rate t=9 idx=1 op=touch pages=7777 secs=2 pages_per_s=1 ws_kib=1'),
    L(20, 'BALLAST meminfo t=9 total_kib=100000 free_kib=1 avail_kib=1'),
  ];
  assert.equal(workloadPages(lines, 10, 20), 1300);
  assert.equal(workloadTouchSeconds(lines, 10, 20), 2, 'touch steps only, inside the window');
  assert.equal(workloadTouchSeconds(lines, 0, 30), 6);
  assert.equal(oomKills(lines, 10, 20), 2);
  assert.equal(oomKills(lines, 15, 20), 0, 'a non-SIGKILL exit is not an OOM kill');
  assert.deepEqual(workloadTrouble(lines, 10, 20), { exits: 2, allocFailed: 1 });
  assert.equal(minGuestTotalKiB(lines, 10, 20), 150000);
  assert.equal(minGuestTotalKiB(lines, 30, 40), null);
  const phases = [
    L(1, 'BALLAST phase t=1 idx=10 op=touch arg=1 ws_kib=200000'),
    L(2, 'BALLAST phase t=2 idx=11 op=alloc arg=250 ws_kib=200000'),
    L(3, 'BALLAST phase t=3 idx=12 op=touch arg=8 ws_kib=256000'),
    L(50, 'BALLAST phase t=50 idx=12 op=touch arg=8 ws_kib=255500'),
  ];
  assert.equal(peaksReached(phases, 0, 100, 256000), 2);
  // The process killed at 14 s loses the 1,300 pages it wrote in the window; the one that
  // exited with 1 had written nothing; the last one is still running at the window's end.
  assert.equal(keptWorkloadPages(lines, 10, 20), 0);
  assert.equal(keptWorkloadPages(lines, 10, 21), 7777);
  const survived = [L(11, 'BALLAST rate t=1 idx=1 op=touch pages=40 secs=2 pages_per_s=20 ws_kib=1'), L(12, 'BALLAST workload-exit t=2 status=0')];
  assert.equal(keptWorkloadPages(survived, 10, 20), 40, 'a normal exit keeps its work');
  assert.equal(keptWorkloadPages(survived, 11.5, 20), 0, 'pages before the window do not count');
  assert.equal(peaksReached(phases, 0, 10, 256000), 1);
});

function sample(at: number, o: Partial<CounterSample> = {}): CounterSample {
  return {
    at,
    usageKiB: 100,
    limitHits: 0,
    swapKiB: 0,
    majorFaults: 0,
    domainSwapIn: null,
    domainSwapOut: null,
    hostSwapIn: 0,
    hostSwapOut: 0,
    psiSomeUs: 0,
    psiFullUs: 0,
    ...o,
  };
}

test('metrics: counter summary takes deltas, peaks and seconds at the limit', () => {
  const s = summarizeCounters([
    sample(0, { hostSwapIn: 10, hostSwapOut: 20, majorFaults: 5, psiSomeUs: 1_000_000 }),
    sample(1, { limitHits: 3, usageKiB: 400, swapKiB: 50 }),
    sample(2, { limitHits: 3, usageKiB: 300, swapKiB: 70 }),
    sample(3.5, { limitHits: 9, hostSwapIn: 110, hostSwapOut: 520, majorFaults: 25, psiSomeUs: 3_500_000, swapKiB: 60 }),
  ]);
  assert.equal(s.hostSwapIn, 100);
  assert.equal(s.hostSwapOut, 500);
  assert.equal(s.domainMajorFaults, 20);
  assert.equal(s.domainSwapOut, null);
  assert.equal(s.pressureS, 2.5); // intervals (0,1] and (2,3.5]
  assert.equal(s.psiSomeS, 2.5);
  assert.equal(s.peakSwapKiB, 70);
  assert.equal(s.peakUsageKiB, 400);
  assert.throws(() => summarizeCounters([sample(0)]), /two counter samples/);
});

test('metrics: spread and ratio', () => {
  assert.deepEqual(spread([3, 1, 2]), { min: 1, median: 2, max: 3, n: 3 });
  assert.deepEqual(spread([4, 1, null, 2, 3]), { min: 1, median: 2.5, max: 4, n: 4 });
  assert.equal(spread([null, undefined, NaN]), null);
  assert.equal(ratio(5, 10), 0.5);
  assert.equal(ratio(5, 0), null);
  assert.equal(ratio(null, 3), null);
});

test('counters: PSI totals and /proc/swaps parsing', () => {
  assert.deepEqual(parsePsiTotals('some avg10=0.00 avg60=0.00 avg300=0.00 total=1234\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=56\n'), {
    some: 1234,
    full: 56,
  });
  assert.deepEqual(parsePsiTotals(null), { some: null, full: null });
  assert.deepEqual(swapAreas('Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n'), []);
  assert.deepEqual(swapAreas('Filename Type Size Used Priority\n/var/tmp/x.swap file 65532 0 -2\n/dev/zram0 partition 1024 0 100\n'), [
    { name: '/var/tmp/x.swap', sizeKiB: 65532 },
    { name: '/dev/zram0', sizeKiB: 1024 },
  ]);
});

test('console tail: complete lines only, each stamped when read, across appends', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ballast-tail-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const f = join(dir, 'c.console');
  const tail = new ConsoleTail(f);
  assert.deepEqual(tail.poll(1), [], 'a missing file is no lines yet');
  writeFileSync(f, 'kernel noise\nBALLAST ready t=1.0\nBALLAST rate t=2 idx=1 op=touch pa');
  assert.deepEqual(
    tail.poll(5).map((l) => [l.at, l.line.kind]),
    [[5, 'ready']],
  );
  appendFileSync(f, 'ges=10 secs=2 pages_per_s=5 ws_kib=4\n[ 1.2] oom\nBALLAST workload-exit t=3 status=137\n');
  const got = tail.poll(7);
  assert.deepEqual(
    got.map((l) => [l.at, l.line.kind]),
    [
      [7, 'rate'],
      [7, 'workload-exit'],
    ],
  );
  assert.equal(got[0]!.line.fields.pages, '10');
  assert.equal(tail.lines.length, 3);
  assert.deepEqual(tail.poll(9), []);
});

function run(config: RunResult['config'], repetition: number, throughput: number, swapOut: number, oom = 0): RunResult {
  return {
    config,
    repetition,
    throughput,
    keptThroughput: oom ? throughput / 2 : throughput,
    touchS: throughput / 10,
    peaks: 3,
    oomKills: oom,
    swapIn: swapOut / 2,
    swapOut,
    swapSource: 'host /proc/vmstat pswpin/pswpout',
    pressureS: swapOut / 100,
    counters: summarizeCounters([sample(0), sample(1)]),
    hugeShare: config.startsWith('none') ? 0.8 : 0.3,
    qemuRssMiB: 1000,
    guests: [],
    manager:
      config === 'none'
        ? null
        : {
            cycles: 1,
            balloonActions: 3,
            rollbacks: 0,
            vetoes: 0,
            policyErrors: 0,
            controllerErrors: 0,
            driverErrors: 0,
            ksmRunSeen: false,
            belowFloorLeft: 0,
            ksmRestoreError: null,
            guestPsiPeak: config === 'mom+psi' ? 31.5 : null,
            psiStops: config === 'mom+psi' ? 6 : 0,
            vmemActions: config.includes('vmem') ? 9 : 0,
            vmemUnplugs: config.includes('vmem') ? 5 : 0,
          },
    windowS: 1,
    bootS: 1,
  };
}

test("summary: spreads per configuration and ratios to the same repetition's no-manager run", () => {
  const runs = [run('none', 1, 100, 1000), run('ballast', 1, 110, 500), run('none', 2, 200, 2000), run('ballast', 2, 180, 200), run('mom', 2, 50, 0, 4)];
  const [none, ballast, mom] = summarize(runs, ['none', 'ballast', 'mom']);
  assert.equal(none!.throughputVsNone, null);
  assert.deepEqual(ballast!.throughput, { min: 110, median: 145, max: 180, n: 2 });
  assert.equal(ballast!.throughputVsNone!.min, 0.9);
  assert.ok(Math.abs(ballast!.throughputVsNone!.max - 1.1) < 1e-9);
  assert.deepEqual(ballast!.swapOutVsNone, { min: 0.1, median: 0.3, max: 0.5, n: 2 });
  assert.deepEqual(ballast!.touchS, { min: 11, median: 14.5, max: 18, n: 2 });
  assert.deepEqual(mom!.oomKills, { min: 4, median: 4, max: 4, n: 1 });
  assert.deepEqual(mom!.keptThroughputVsNone, { min: 0.125, median: 0.125, max: 0.125, n: 1 }, 'kept: a killed workload loses its work');
  assert.deepEqual(mom!.swapOutVsNone, { min: 0, median: 0, max: 0, n: 1 });
  assert.equal(fmtSpread({ min: 1, median: 2, max: 3, n: 3 }), '2 (1–3)');
  assert.equal(fmtSpread({ min: 2, median: 2, max: 2, n: 1 }), '2');
  assert.equal(fmtSpread(null), '-');
  const table = formatLabTable({
    experiment: 'lab-memknobs',
    scale: DEFAULT_SCALE,
    repeat: 2,
    domainLimitMiB: 1280,
    cgroupVersion: 1,
    swap: { mode: 'file', totalMiB: 896, source: 'host /proc/vmstat pswpin/pswpout', preset: 'host' },
    workload: { spec: 'x', delaysS: [0, 30] },
    manager: { statsIntervalS: 2, policyIntervalS: 4 },
    cpuPerGuest: null,
    thp: 'host',
    runs,
    summary: summarize(runs, ['none', 'mom', 'ballast']),
  });
  const rows = table.split('\n');
  const ballastRow = rows.find((l) => l.startsWith('ballast '))!;
  assert.match(ballastRow, /0\.30x \(0\.10x–0\.50x\)/);
  assert.match(rows.find((l) => l.startsWith('mom '))!, / 4 /);
  assert.match(table, /limited to 1280 MiB/);
  assert.match(table, /guests share the CPUs/);
});

test('cleanup: newest first, a failing step does not stop the others, run-now steps are forgotten', async () => {
  const done: string[] = [];
  const said: string[] = [];
  const c = new Cleanup((m) => said.push(m));
  c.add({ what: 'swap', run: async () => void done.push('swap') });
  c.add({
    what: 'cgroup',
    run: async () => {
      throw new Error('busy');
    },
  });
  const now = c.add({ what: 'manager', run: async () => void done.push('manager') });
  c.add({ what: 'guests', run: async () => void done.push('guests') });
  await now();
  await now(); // once only
  assert.deepEqual(done, ['manager']);
  const errors = await c.runAll();
  assert.deepEqual(done, ['manager', 'guests', 'swap']);
  assert.deepEqual(errors, ['cgroup: busy']);
  assert.equal(said.length, 1);
  assert.deepEqual(await c.runAll(), []);
});

test("lock: one experiment at a time; a dead owner's lock is taken over", (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ballast-lock-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'experiment.lock');
  const release = acquireExperimentLock(path);
  assert.equal(readFileSync(path, 'utf8').trim(), String(process.pid));
  release();
  assert.ok(!existsSync(path));
  // a live owner (our parent process) holds it
  writeFileSync(path, `${process.ppid}\n`);
  assert.throws(
    () => acquireExperimentLock(path),
    (e: unknown) => e instanceof LabUnavailable && /another lab experiment \(PID \d+\) is running/.test((e as Error).message),
  );
  // a dead owner's lock is stale
  writeFileSync(path, '999999999\n');
  const again = acquireExperimentLock(path);
  assert.equal(readFileSync(path, 'utf8').trim(), String(process.pid));
  again();
});

const cli = (args: string[]) =>
  spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'experiment', 'lab-memknobs', ...args], {
    encoding: 'utf8',
    // Never a real run from a unit test, even if the parsing were wrong.
    env: { ...process.env, BALLAST_LAB: '0' },
  });

test('CLI: bad options are refused with their name before anything starts; simulated-only options too', () => {
  const cases: [string[], RegExp][] = [
    [['--guests', '0'], /--guests must be 1\.\.8, got 0/],
    [['--guests', 'abc'], /--guests must be a whole number/],
    [['--mem', '2048'], /--mem must be 128\.\.512 MiB/],
    [['--limit-ratio', 'x'], /--limit-ratio must be a number/],
    [['--configs', 'none,foo'], /--configs: unknown "foo"/],
    [['--swap', 'floppy'], /--swap must be one of host, nvme, ssd, hdd, got "floppy"/],
    [['--cache', '300'], /--cache must be a whole number of MiB, 0\.\.192/],
    [['--configs', 'none,ballast+vmem', '--mem', '200'], /virtio-mem rows need 128 MiB of base memory .* --mem must be at least 256 MiB, got 200/],
    [['--seed', '3'], /--seed is an option of the simulated experiments, not of lab-memknobs/],
    [[], /lab-memknobs cannot run here: BALLAST_LAB=0/],
  ];
  for (const [args, want] of cases) {
    const r = cli(args);
    assert.equal(r.status, 1, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, want, args.join(' '));
    assert.equal(r.stdout, '');
  }
});

test('swap presets: slower classes allow fewer operations; throttle lines name the device for v1 and v2', () => {
  assert.ok(PRESETS.nvme.readIops > PRESETS.ssd.readIops && PRESETS.ssd.readIops > PRESETS.hdd.readIops);
  assert.ok(PRESETS.hdd.readIops <= 200, 'a disk seeks: at most a few hundred random operations a second');
  const t = throttleLines('7:0', PRESETS.hdd);
  assert.equal(t.v1['blkio.throttle.read_iops_device'], '7:0 120');
  assert.equal(t.v1['blkio.throttle.write_bps_device'], '7:0 150000000');
  assert.equal(t.v2, '7:0 riops=120 wiops=120 rbps=150000000 wbps=150000000');
  assert.equal(parseSwapPreset(' HDD '), 'hdd');
  assert.throws(() => parseSwapPreset('tape'), /--swap must be one of host, nvme, ssd, hdd/);
});

test('free page reporting runs: the manager and the balloon option come from the name', () => {
  assert.deepEqual(configParts('none'), { manager: 'none', fpr: false, psi: false, vmem: false, reclaim: false });
  assert.deepEqual(configParts('ballast+fpr'), { manager: 'ballast', fpr: true, psi: false, vmem: false, reclaim: false });
  assert.deepEqual(configParts('none+fpr'), { manager: 'none', fpr: true, psi: false, vmem: false, reclaim: false });
  assert.deepEqual(configParts('mom+psi'), { manager: 'mom', fpr: false, psi: true, vmem: false, reclaim: false });
  const base = { name: 'g', memMiB: 256, kernel: 'k', initrd: 'i', cmdline: 'c', qmpSocket: 's', consoleLog: 'l', qgaSocket: null };
  assert.ok(qemuArgs({ ...base, freePageReporting: true }).includes('virtio-balloon-pci,id=balloon0,free-page-reporting=on'));
  assert.ok(qemuArgs(base).includes('virtio-balloon-pci,id=balloon0'));
  // A free-page-reporting run without a manager is still compared with the plain no-manager run.
  const runs = [run('none', 1, 100, 1000), run('none+fpr', 1, 150, 400)];
  const [, fpr] = summarize(runs, ['none', 'none+fpr']);
  assert.equal(fpr!.throughputVsNone!.median, 1.5);
  assert.equal(fpr!.balloonActions, null);
  // Guest PSI columns: only for runs whose manager read it.
  const withPsi = [run('none', 1, 100, 1000), run('mom', 1, 300, 0, 8), run('mom+psi', 1, 200, 0, 2)];
  const [none, mom, momPsi] = summarize(withPsi, ['none', 'mom', 'mom+psi']);
  assert.equal(none!.guestPsiPeak, null);
  assert.equal(mom!.guestPsiPeak, null);
  assert.deepEqual(momPsi!.guestPsiPeak, { min: 31.5, median: 31.5, max: 31.5, n: 1 });
  assert.deepEqual(momPsi!.psiStops, { min: 6, median: 6, max: 6, n: 1 });
  assert.deepEqual(momPsi!.hostStallS, { min: 0, median: 0, max: 0, n: 1 });
});

test("MOM's style with the PSI safeguard: refuses inflation of a stalled guest, as ballast's guard does", () => {
  const withPsi = { ...defaultSafeguards, ...MOM_STYLE_PSI_SAFEGUARDS };
  const plain = { ...defaultSafeguards, ...MOM_STYLE_SAFEGUARDS };
  const MiB = 1024;
  const guest = (psi: number, swapIn = 0) => ({
    balloon_cur: 284 * MiB,
    balloon_max: 384 * MiB,
    balloon_min: 0,
    mem_unused: 100 * MiB,
    swap_in: swapIn,
    psi_some_avg10: psi,
  });
  const decide = (psi: number, cfg: typeof plain) => {
    const h = new History(10);
    h.push(guest(psi), 0);
    return guardBalloon({ history: h, requested: 150 * MiB, state: {}, cycle: 1, now: 1 }, cfg);
  };
  assert.equal(decide(15, withPsi).verdict, 'veto');
  assert.equal(decide(15, plain).verdict, 'apply', 'plain MOM style has no PSI safeguard');
  const calm = decide(2, withPsi);
  assert.equal(calm.verdict, 'apply');
  assert.equal(calm.target, 184 * MiB, "otherwise MOM's style: no headroom, no step limit");
  // A swap-in storm after an inflation does not roll it back here: the PSI safeguard alone.
  const h = new History(10);
  h.push(guest(0), 0);
  h.push(guest(0, 1e6), 5);
  const after = guardBalloon({ history: h, requested: 150 * MiB, state: { lastInflation: { cycle: 1, at: 2, step: 100 * MiB } }, cycle: 2, now: 6 }, withPsi);
  assert.notEqual(after.verdict, 'rollback');
});

test('cpu caps: 80% of the host split among the guests, at most one CPU each; v1 mounts found in mountinfo', () => {
  assert.equal(defaultCpuPerGuest(4, 2), 0.4);
  assert.equal(defaultCpuPerGuest(2, 2), 0.8);
  assert.equal(defaultCpuPerGuest(2, 16), 1);
  assert.equal(quotaUs(0.4), 40_000);
  const mi = [
    '35 25 0:30 / /sys/fs/cgroup/cpu rw,relatime shared:12 - cgroup cgroup rw,cpu',
    '36 25 0:31 / /sys/fs/cgroup/blkio rw,relatime shared:13 - cgroup cgroup rw,blkio',
    '37 25 0:32 / /sys/fs/cgroup/unified rw,relatime shared:14 - cgroup2 cgroup2 rw',
  ].join('\n');
  assert.equal(v1Mount('cpu', mi), '/sys/fs/cgroup/cpu');
  assert.equal(v1Mount('blkio', mi), '/sys/fs/cgroup/blkio');
  assert.equal(v1Mount('memory', mi), null);
});

test('virtio-mem rows: named in the config list, half of each guest in a device, default policy then vmem.policy', () => {
  assert.deepEqual(configParts('ballast+vmem'), { manager: 'ballast', fpr: false, psi: false, vmem: true, reclaim: false });
  assert.deepEqual(configParts('ballast+vmem+fpr'), { manager: 'ballast', fpr: true, psi: false, vmem: true, reclaim: false });
  for (const c of ALL_CONFIGS) assert.ok(CONFIG_TITLES[c], `${c} has a title`);
  assert.ok(ALL_CONFIGS.includes('ballast+vmem') && ALL_CONFIGS.includes('ballast+vmem+fpr'));
  assert.ok(!CONFIGS.some((c) => configParts(c).vmem), 'the default runs stay the three without devices');

  // The same memory per guest as the other rows: base + device = --mem, the device in whole
  // 128 MiB guest memory blocks (the guest uses no partial one), 2 MiB device blocks, plugged
  // in full at boot, the base at least 128 MiB.
  assert.deepEqual(vmemLayout(384), { baseMiB: 128, device: { maxMiB: 256, requestedMiB: 256, blockMiB: 2 } });
  for (const [mem, device] of [
    [256, 128],
    [300, 128],
    [383, 128],
    [384, 256],
    [511, 256],
    [512, 384],
  ] as const) {
    const l = vmemLayout(mem);
    assert.equal(l.device.maxMiB, device, `${mem} MiB`);
    assert.equal(l.baseMiB + l.device.maxMiB, mem, `${mem} MiB`);
    assert.equal(l.device.requestedMiB, l.device.maxMiB);
    assert.ok(l.baseMiB >= 128 && l.baseMiB < 256, `${mem}: ${JSON.stringify(l)}`);
  }
  assert.throws(() => vmemLayout(255), /--mem must be at least 256 MiB, got 255/);
  assert.doesNotThrow(() => checkConfigs({ ...DEFAULT_SCALE, memMiB: 128 }, ['none', 'ballast+fpr']), 'rows without a device boot at 128 MiB');
  assert.throws(() => checkConfigs({ ...DEFAULT_SCALE, memMiB: 128 }, ['none', 'ballast+vmem+fpr']), /--mem must be at least 256/);

  // What QEMU gets: the base as RAM, room up to the whole guest, the device with its blocks,
  // and a guest kernel that onlines hotplugged memory movable (so its blocks can be emptied).
  const l = vmemLayout(384);
  const args = qemuArgs({
    name: 'g',
    memMiB: l.baseMiB,
    kernel: 'k',
    initrd: 'i',
    cmdline: 'c',
    qmpSocket: 's',
    consoleLog: 'l',
    qgaSocket: null,
    virtioMem: l.device,
  });
  assert.equal(args[args.indexOf('-m') + 1], 'size=128M,maxmem=384M');
  assert.ok(args.includes('virtio-mem-pci,id=vmem0,memdev=vmem0mem,requested-size=256M,block-size=2M'), args.join(' '));
  // Movable, so its blocks can be emptied; no 64 MiB bounce buffer taken from the base because
  // the device sits above 4 GiB (a plain guest has neither).
  assert.match(guestCmdline({ name: 'g', virtioMem: l.device }), /memhp_default_state=online_movable swiotlb=noforce/);
  assert.doesNotMatch(guestCmdline({ name: 'g' }), /memhp|swiotlb/);

  assert.deepEqual(managerPolicies('ballast', true), ['default', 'vmem']);
  assert.deepEqual(managerPolicies('ballast', false), ['default'], 'the other ballast rows run what they ran');
  assert.deepEqual(managerPolicies('mom', false), ['balloon', 'ksm']);
});

test('huge pages: smaps_rollup parsed, the share of RSS weighted by RSS over the samples', () => {
  const rollup = `55d0c0000000-7ffd00000000 ---p 00000000 00:00 0                  [rollup]
Rss:              524288 kB
Pss:              520000 kB
Anonymous:        500000 kB
AnonHugePages:    262144 kB
Swap:                  0 kB
`;
  assert.deepEqual(parseSmapsRollup(rollup), { rssKiB: 524288, anonHugeKiB: 262144 });
  assert.deepEqual(parseSmapsRollup('Pss: 1 kB\n'), { rssKiB: null, anonHugeKiB: null });
  assert.equal(hugePageShare([]), null);
  assert.equal(hugePageShare([{ at: 0, rssKiB: 0, anonHugeKiB: 0 }]), null);
  // 100 of 1000 and 900 of 1000: 50%, whatever the order; a larger RSS weighs more.
  assert.equal(
    hugePageShare([
      { at: 0, rssKiB: 1000, anonHugeKiB: 100 },
      { at: 5, rssKiB: 1000, anonHugeKiB: 900 },
    ]),
    0.5,
  );
  assert.equal(
    hugePageShare([
      { at: 0, rssKiB: 3000, anonHugeKiB: 0 },
      { at: 5, rssKiB: 1000, anonHugeKiB: 1000 },
    ]),
    0.25,
  );
  assert.equal(hugePageShare([{ at: 0, rssKiB: 1000, anonHugeKiB: 5000 }]), 1, 'never above all of the RSS');
  // This process's own rollup reads (Linux 4.14+); a pid that is gone is skipped.
  const me = readHugeSample([process.pid, 2 ** 22 + 1]);
  if (me) assert.ok(me.rssKiB > 0 && me.anonHugeKiB >= 0 && me.anonHugeKiB <= me.rssKiB);
  assert.equal(readHugeSample([2 ** 22 + 1]), null);
});

test('summary and table: huge-page share for every row, virtio-mem actions only where there are devices', () => {
  const runs = [run('none+fpr', 1, 100, 1000), run('ballast+fpr', 1, 110, 500), run('ballast+vmem+fpr', 1, 120, 100)];
  const [none, fpr, vmem] = summarize(runs, ['none+fpr', 'ballast+fpr', 'ballast+vmem+fpr']);
  assert.deepEqual(none!.hugeShare, { min: 0.8, median: 0.8, max: 0.8, n: 1 });
  assert.deepEqual(vmem!.hugeShare, { min: 0.3, median: 0.3, max: 0.3, n: 1 });
  assert.equal(none!.vmemActions, null);
  assert.equal(fpr!.vmemActions, null);
  assert.deepEqual(vmem!.vmemActions, { min: 9, median: 9, max: 9, n: 1 });
  assert.deepEqual(vmem!.balloonActions, { min: 3, median: 3, max: 3, n: 1 });
  // A result recorded before the field existed has no share: nothing, not 0%.
  const old = { ...run('ballast', 1, 1, 1), hugeShare: undefined } as unknown as RunResult;
  assert.equal(summarize([old], ['ballast'])[0]!.hugeShare, null);
  const table = formatLabTable({
    experiment: 'lab-memknobs',
    scale: { ...DEFAULT_SCALE, cacheMiB: 96 },
    repeat: 1,
    domainLimitMiB: 1280,
    cgroupVersion: 2,
    swap: { mode: 'device', totalMiB: 896, source: 'cgroup memory.stat pswpin/pswpout', preset: 'hdd' },
    workload: { spec: 'x', delaysS: [0, 30, 60, 90] },
    manager: { statsIntervalS: 2, policyIntervalS: 4 },
    cpuPerGuest: 0.4,
    thp: 'host',
    hostThp: { enabled: 'always', defrag: 'madvise' },
    runs,
    summary: summarize(runs, ['none+fpr', 'ballast+fpr', 'ballast+vmem+fpr']),
  });
  const lines = table.split('\n');
  const header = lines.find((x) => x.startsWith('config'))!;
  assert.match(header, /balloon acts +vmem acts +RSS in huge pages/);
  assert.match(lines.find((x) => x.startsWith('none+fpr '))!, / - +80% /);
  assert.match(lines.find((x) => x.startsWith('ballast+fpr '))!, / 3 +- +30% /);
  assert.match(lines.find((x) => x.startsWith('ballast+vmem+fpr '))!, / 3 +9 +30% /);
  assert.match(table, /THP as the host has it: enabled always, defrag madvise/);
  assert.match(table, /ballast\+vmem\+fpr: ballast\+vmem, and guests hand freed pages back/);
});

test('CLI: --help lists the virtio-mem rows', () => {
  const r = cli(['--help']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout.replace(/\s+/g, ' '), /ballast\+vmem, ballast\+vmem\+fpr/);
});

test('THP settings: the bracketed choice of the sysfs file', () => {
  assert.equal(thpChoice('always [madvise] never\n'), 'madvise');
  assert.equal(thpChoice('[always] defer defer+madvise madvise never'), 'always');
  assert.equal(thpChoice('garbage'), null);
  assert.equal(thpChoice(null), null);
});

test("proxmox rows: the manager from the name; reaction times for managed rows only; none+fpr is KubeVirt's default", () => {
  assert.deepEqual(configParts('proxmox'), { manager: 'proxmox', fpr: false, psi: false, vmem: false, reclaim: false });
  assert.deepEqual(configParts('proxmox+fpr'), { manager: 'proxmox', fpr: true, psi: false, vmem: false, reclaim: false });
  assert.ok(ALL_CONFIGS.includes('proxmox') && ALL_CONFIGS.includes('proxmox+fpr'));
  const reaction = { medianS: 12, maxS: 31.5, answered: 6, unanswered: 1, pending: 1 };
  const runs = [
    { ...run('none+fpr', 1, 100, 1000), reaction: null },
    { ...run('proxmox+fpr', 1, 90, 500), reaction },
  ];
  const [none, pve] = summarize(runs, ['none+fpr', 'proxmox+fpr']);
  assert.equal(none!.reactionMedianS, null);
  assert.deepEqual(pve!.reactionMedianS, { min: 12, median: 12, max: 12, n: 1 });
  assert.deepEqual(pve!.reactionMaxS, { min: 31.5, median: 31.5, max: 31.5, n: 1 });
  assert.deepEqual(pve!.reactionUnanswered, { min: 2, median: 2, max: 2, n: 1 });
  assert.deepEqual(pve!.balloonActions, { min: 3, median: 3, max: 3, n: 1 });
  const table = formatLabTable({
    experiment: 'lab-memknobs',
    scale: DEFAULT_SCALE,
    repeat: 1,
    domainLimitMiB: 1280,
    cgroupVersion: 1,
    swap: { mode: 'file', totalMiB: 896, source: 'host /proc/vmstat pswpin/pswpout', preset: 'host' },
    workload: { spec: 'x', delaysS: [0, 30, 60, 90] },
    manager: { statsIntervalS: 2, policyIntervalS: 4 },
    cpuPerGuest: 0.4,
    thp: 'host',
    runs,
    summary: summarize(runs, ['none+fpr', 'proxmox+fpr']),
  });
  const lines = table.split('\n');
  assert.match(lines.find((x) => x.startsWith('config'))!, /reaction median s +reaction max s +ramps unanswered$/);
  assert.match(lines.find((x) => x.startsWith('none+fpr '))!, / - +- +-$/);
  assert.match(lines.find((x) => x.startsWith('proxmox+fpr '))!, / 12 +31\.5 +2$/);
  assert.match(table, /none\+fpr: no manager \+ free page reporting \(KubeVirt's default\)/);
  assert.match(table, /proxmox\+fpr: Proxmox VE's automatic ballooning/);
});

test('stale lab state: owner PIDs from swap files and cgroup names, /proc/swaps parsed', () => {
  const alive = (pid: number) => pid === 42;
  assert.equal(deadOwner('/var/tmp/ballast-lab-experiment-2097.swap', alive), 2097);
  assert.equal(deadOwner('ballast-lab-experiment-2097-ballast-1', alive), 2097);
  assert.equal(deadOwner('ballast-lab-experiment-2097', alive), 2097);
  assert.equal(deadOwner('ballast-lab-experiment-42-none+fpr-1', alive), null, 'its experiment is running');
  assert.equal(deadOwner('/var/tmp/other-2097.swap', alive), null, "not the lab's");
  assert.equal(deadOwner('ballast-lab-experiment-20970x', alive), null);
  assert.deepEqual(
    swapAreas(
      'Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n/dev/loop1                              partition\t917500\t\t0\t\t32767\n/swap.img file 100 0 -2\n',
    ).map((a) => a.name),
    ['/dev/loop1', '/swap.img'],
  );
  assert.deepEqual(swapAreas('Filename\tType\tSize\tUsed\tPriority\n'), []);
});

test("KSM's counts of exited QEMUs are cleared before a run, only when nothing live has a page merged", () => {
  const dir = mkdtempSync(join(tmpdir(), 'ballast-ksm-'));
  try {
    const said: string[] = [];
    const fixture = (run: string, shared = 4000, sharing = 10_000) => {
      writeFileSync(join(dir, 'run'), `${run}\n`);
      writeFileSync(join(dir, 'pages_shared'), `${shared}\n`);
      writeFileSync(join(dir, 'pages_sharing'), `${sharing}\n`);
    };
    fixture('0');
    clearStaleKsm(
      (m) => said.push(m),
      dir,
      () => 0,
    );
    assert.equal(readFileSync(join(dir, 'run'), 'utf8'), '0', 'run 2 written, then 0 again');
    assert.match(said[0] ?? '', /^ksm: 14000 merged pages counted for processes that exited with ksmd stopped: cleared \(run 2, then 0\)/);
    const untouched = (why: string, live: number | null, ...f: Parameters<typeof fixture>) => {
      fixture(...f);
      clearStaleKsm(
        (m) => said.push(m),
        dir,
        () => live,
      );
      assert.equal(readFileSync(join(dir, 'run'), 'utf8'), `${f[0]}\n`, why);
    };
    untouched('a live process has merged pages: run 2 would unmerge them', 300, '0');
    untouched('a kernel without ksm_merging_pages cannot tell', null, '0');
    untouched('ksmd running cleans up after exited processes itself', 0, '1');
    untouched('nothing counted', 0, '0', 0, 0);
    assert.equal(said.length, 1, 'said only when it cleared');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('KSM over a window: the share of samples it scanned in and the mean memory it saved', () => {
  assert.equal(summarizeKsm([]), null);
  assert.deepEqual(
    summarizeKsm([
      { run: false, sharing: 0 },
      { run: true, sharing: 25_600 },
      { run: true, sharing: 51_200 },
      { run: true, sharing: 51_200 },
    ]),
    { runShare: 0.75, savedMiB: 125 },
  );
  const dir = mkdtempSync(join(tmpdir(), 'ballast-ksm-'));
  try {
    writeFileSync(join(dir, 'run'), '1\n');
    writeFileSync(join(dir, 'pages_sharing'), '4096\n');
    assert.deepEqual(readKsmSample(dir), { run: true, sharing: 4096 });
    rmSync(join(dir, 'run'));
    assert.equal(readKsmSample(dir), null, 'a kernel without KSM');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
