// The simulator's speed: simulated guest-seconds per CPU-second, for the model alone
// (SimWorld.advance) and with the real engine and the default policy (runSimulated), at 32
// and 1,000 guests. Ratios: against real time (1 guest-second per second per guest), and the
// per-guest cost at 1,000 guests against the one at 32 measured in the same run (how the
// model scales).
import { readFileSync } from 'node:fs';
import { cpuUsage } from 'node:process';
import { SimWorld } from '../src/sim/world.js';
import { memknobsScenario } from '../src/sim/scenarios.js';
import { runSimulated } from '../src/daemon/sim-run.js';
import { compilePolicyText } from '../src/engine/policy-adapter.js';

function scenario(guests: number) {
  // The paper's proportions (2 GiB guests, 1.5 GiB of host per guest, 1 CPU per 2 guests).
  return memknobsScenario({ guests, guestMiB: 2048, hostMiB: guests * 1536, cpus: Math.max(1, guests / 2), seed: 1 });
}

function cpuSeconds(): number {
  const u = cpuUsage();
  return (u.user + u.system) / 1e6;
}

async function measure(guests: number, simS: number, withEngine: boolean): Promise<number> {
  const world = new SimWorld(scenario(guests));
  world.advance(60); // past start-up allocations
  const policy = compilePolicyText(readFileSync('policies/default.policy', 'utf8'));
  const c0 = cpuSeconds();
  if (withEngine) await runSimulated({ world, policy, durationS: simS });
  else world.advance(simS);
  const cpu = cpuSeconds() - c0;
  return (guests * simS) / cpu;
}

export default async function main(): Promise<void> {
  const rows: [string, number, number, boolean][] = [
    ['model, 32 guests', 32, 3600, false],
    ['model, 1000 guests', 1000, 300, false],
    ['engine + policy, 32 guests', 32, 3600, true],
    ['engine + policy, 1000 guests', 1000, 300, true],
  ];
  const got = new Map<string, number>();
  for (const [name, guests, simS, eng] of rows) {
    const rate = await measure(guests, simS, eng);
    got.set(name, rate);
    process.stdout.write(
      `${name.padEnd(30)} ${Math.round(rate).toLocaleString('en-US').padStart(12)} guest-s per CPU-s` +
        `  (${Math.round(rate / guests).toLocaleString('en-US')}x real time for the whole host)\n`,
    );
  }
  const ratio = (a: string, b: string) => (got.get(a)! / got.get(b)!).toFixed(2);
  process.stdout.write(
    `per-guest speed at 1000 vs 32 guests: model ${ratio('model, 1000 guests', 'model, 32 guests')}, ` +
      `with engine ${ratio('engine + policy, 1000 guests', 'engine + policy, 32 guests')} (1.00 = linear scaling)\n`,
  );
  process.stdout.write(
    `engine + policy vs model alone: 32 guests ${ratio('engine + policy, 32 guests', 'model, 32 guests')}, ` +
      `1000 guests ${ratio('engine + policy, 1000 guests', 'model, 1000 guests')}\n`,
  );
  const exp = (got.get('engine + policy, 32 guests')! / 32 / 3600) ** -1 * 3;
  process.stdout.write(`one experiment (32 guests x 1 h simulated, 3 configurations) takes about ${exp.toFixed(1)} CPU-s\n`);
}
