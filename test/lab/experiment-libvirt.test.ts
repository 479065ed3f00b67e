// `ballast experiment lab-memknobs --via libvirt` at its smallest: two guests under a libvirtd
// of the run's own, inside the memory domain, with ballast as a `ballast run` process of its
// own (its libvirt driver), then Proxmox VE's rule on the same kind of guests through
// ballast's libvirt driver (as it runs beside momd). No momd: CI cannot fetch MOM. Asserts
// only what must hold: the guests ran their workloads in the domain, ballast's balloons
// moved, no OOM kill under ballast, the manager process's CPU time and memory were measured,
// pvestatd's rounds ran and set balloons without an error, and nothing was left behind.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { runLabExperiment, LabUnavailable } from '../../src/experiments/lab-memknobs/experiment.js';
import { memoryCgroupMount } from '../../src/experiments/lab-memknobs/domain.js';
import { formatLabTable } from '../../src/experiments/lab-memknobs/format.js';
import { RUN_DIR } from '../../src/lab/paths.js';

function skipLoudly(t: { skip: (m: string) => void }, reason: string): void {
  console.error(`LAB SKIPPED: ${reason}`);
  t.skip(`LAB SKIPPED: ${reason}`);
}

test('lab-memknobs --via libvirt, 2 guests: ballast as its own process moves balloons, kills nothing, and its cost is measured; proxmox drives the same guests', {
  timeout: 14 * 60_000,
}, async (t) => {
  let result;
  try {
    result = await runLabExperiment({
      // Small and quick: 2 x 256 MiB guests in a domain of 2/3 of what they may hold (469 MiB),
      // a 40 s cycle with a 6-step ramp, 20 s of warm-up and 60 s measured.
      scale: { guests: 2, memMiB: 256, durationS: 60, warmupS: 20, limitRatio: 2 / 3, periodS: 40, qemuOverheadMiB: 96, rampSteps: 6 },
      repeat: 1,
      configs: ['ballast', 'proxmox'],
      via: 'libvirt',
      thp: 'host',
      progressEveryS: 30,
      say: (m) => console.error(m),
    });
  } catch (e) {
    if (e instanceof LabUnavailable) return skipLoudly(t, `lab-memknobs --via libvirt: ${e.message}`);
    throw e;
  }
  console.error(formatLabTable(result));
  assert.equal(result.via, 'libvirt');
  const run = result.runs.find((r) => r.config === 'ballast')!;
  assert.equal(run.guests.length, 2);
  assert.ok(
    run.guests.every((g) => g.pagesPerS > 0),
    `every guest's workload wrote pages: ${run.guests.map((g) => g.pagesPerS).join(', ')}`,
  );
  assert.ok((run.qemuRssMiB ?? 0) > 0, 'the QEMUs were found (their RSS sampled)');
  // The QEMUs were moved into the domain: it holds their memory (each guest's peak working
  // set alone is 166 MiB).
  assert.ok(run.counters.peakUsageKiB > 200 * 1024, `the domain was charged for the guests (peak ${Math.round(run.counters.peakUsageKiB / 1024)} MiB)`);
  assert.ok(run.manager, 'the ballast row has a manager report');
  assert.ok(run.manager!.balloonActions > 0, `ballast moved balloons (${run.manager!.balloonActions} actions in the window)`);
  assert.equal(run.oomKills, 0, `no OOM kill: ${JSON.stringify(run.guests)}`);
  const p = run.managerProcess;
  assert.ok(p && p.manager === 'ballast', 'ballast ran as a process of its own');
  assert.equal(p!.errors, 0, `its log had no errors (${p!.log ?? 'removed'})`);
  assert.ok(p!.usage.cpuS !== null && p!.usage.cpuS > 0, `its CPU time was measured (${p!.usage.cpuS} s)`);
  assert.ok(p!.usage.rssMeanMiB !== null && p!.usage.rssMeanMiB > 10, `its RSS was measured (${p!.usage.rssMeanMiB} MiB)`);
  // pvestatd's rule through the libvirt driver: a round every 10 s, and with the domain above
  // its 80% goal it shrinks the guests (100 MiB a round at most, down to half of memory).
  const pve = result.runs.find((r) => r.config === 'proxmox')!;
  assert.ok(pve?.manager, 'the proxmox row has a manager report');
  assert.ok(pve.manager!.cycles >= 4, `pvestatd's rounds ran (${pve.manager!.cycles} in 60 s)`);
  assert.equal(pve.manager!.driverErrors, 0, 'every round read the guests');
  assert.equal(pve.manager!.controllerErrors, 0, 'every balloon target was set');
  assert.ok(pve.manager!.balloonActions > 0, `it set balloons (${pve.manager!.balloonActions})`);
  assert.ok(
    pve.guests.every((g) => g.pagesPerS > 0),
    'the guests ran their workloads under it',
  );
  // Nothing left behind: the run's daemon directory and the domain cgroup are gone.
  assert.deepEqual(
    readdirSync(RUN_DIR).filter((f) => f.startsWith('lv-') || f.startsWith('mgr-')),
    [],
    `the run's libvirtd and manager directories were removed from ${RUN_DIR}`,
  );
  const mount = await memoryCgroupMount();
  if (mount)
    assert.deepEqual(
      readdirSync(mount.mountPoint).filter((d) => d.startsWith(`ballast-lab-experiment-${process.pid}-`)),
      [],
    );
});
