// The daemon's footprint, measured on a spawned `ballast run` with hypervisor = sim, from
// /proc/PID/status (VmRSS, VmHWM) and /proc/PID/stat (utime + stime):
// - RSS with 1,000 simulated guests (target 60 MB or less);
// - CPU with 100 guests at the default intervals (stats 5 s, policy 10 s) over 60 s
//   (target 0.5% of one core or less).
// Baseline measured in the same run: an idle Node process (a timer and nothing else), so the
// ratios say what ballast adds to the runtime it cannot do without.
// The daemon runs the compiled JavaScript (as `npm start`/systemd do), built into
// node_modules/.cache; if that build fails it falls back to tsx and says so (tsx adds a
// loader thread and the TypeScript compiler's memory).
// Note: with hypervisor = sim the simulated world lives in the daemon's process, so its
// memory and CPU (modelling 1,000 guests) are counted too: the numbers are an upper bound
// for the daemon on a real host.
// BALLAST_BENCH_CPU_S shortens the CPU window (default 60).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const CLK_TCK = 100; // USER_HZ on Linux

export function procStatus(pid: number): { rssKiB: number; hwmKiB: number } {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (k: string) => Number(/^(\S+):\s+(\d+)/m.exec(text.split('\n').find((l) => l.startsWith(k + ':')) ?? '')?.[2] ?? NaN);
  return { rssKiB: field('VmRSS'), hwmKiB: field('VmHWM') };
}

/** Memory private to the process (not the Node binary's pages shared with every other
 *  Node process), from smaps_rollup. */
function privateKiB(pid: number): number {
  try {
    const text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    const get = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(text)?.[1] ?? 0);
    return get('Private_Dirty') + get('Private_Clean');
  } catch {
    return NaN;
  }
}

/** utime + stime of a process and its waited-for children, in seconds. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields after the comm: state(3) ... utime(14) stime(15) cutime(16) cstime(17), 1-based in proc(5)
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  return (utime + stime) / CLK_TCK;
}

/** Build the sources to JavaScript once, in a folder Node resolves node_modules from. */
export function buildDist(): string | null {
  const out = join(root, 'node_modules', '.cache', 'ballast-bench-dist');
  const r = spawnSync(
    process.execPath,
    [
      join(root, 'node_modules', 'typescript', 'bin', 'tsc'),
      '-p',
      join(root, 'tsconfig.build.json'),
      '--outDir',
      out,
      '--noEmitOnError',
      'false',
      '--sourceMap',
      'false',
    ],
    { encoding: 'utf8', cwd: root },
  );
  const main = join(out, 'cli', 'main.js');
  if (!existsSync(main)) {
    process.stdout.write(`(compiled build failed, using tsx: ${(r.stdout + r.stderr).split('\n')[0]})\n`);
    return null;
  }
  if (r.status !== 0) process.stdout.write('(note: the build reported type errors elsewhere in the tree; the emitted JavaScript is used)\n');
  return main;
}

export function setup(guests: number): { dir: string; config: string } {
  const dir = mkdtempSync(join(tmpdir(), 'ballast-bench-'));
  const policies = join(dir, 'policies');
  mkdirSync(policies);
  copyFileSync(join(root, 'policies', 'default.policy'), join(policies, '50_default.policy'));
  const scenario = join(dir, 'scenario.json');
  const n = (f: number) => Math.round(guests * f);
  writeFileSync(
    scenario,
    JSON.stringify({
      name: `bench-${guests}`,
      host: { memMiB: Math.max(1024, guests * 768), swapMiB: guests * 256, cpus: 64 },
      guests: [
        { name: 'knobs', count: n(0.4), memMiB: 1024, workload: { kind: 'memknobs', sizesMiB: [200, 600, 900], runS: 60, pauseS: 10 } },
        { name: 'web', count: n(0.3), memMiB: 1024, workload: { kind: 'web', requestRate: 4, anonMiB: 200, fileSetMiB: 500 } },
        { name: 'idle', count: guests - n(0.4) - n(0.3), memMiB: 1024, workload: { kind: 'idle', anonMiB: 150 } },
      ].filter((g) => g.count > 0),
      seed: 7,
    }),
  );
  const config = join(dir, 'ballast.toml');
  writeFileSync(
    config,
    `[hypervisor]\ndriver = "sim"\nscenario = "${scenario}"\n[engine]\npolicy_dir = "${policies}"\n[log]\nformat = "json"\nlevel = "warn"\n`,
  );
  return { dir, config };
}

export function spawnDaemon(main: string | null, config: string, timeScale: number): ChildProcess {
  const flags = (process.env.BALLAST_BENCH_NODE_FLAGS ?? '').split(' ').filter(Boolean);
  const args = [...flags, ...(main ? [main] : ['--import', 'tsx', join(root, 'src', 'cli', 'main.ts')])];
  // time_scale through a config overlay would need another file: append it instead.
  writeFileSync(config, readFileSync(config, 'utf8').replace('driver = "sim"', `driver = "sim"\ntime_scale = ${timeScale}`));
  return spawn(process.execPath, [...args, 'run', '--config', config], { cwd: root, stdio: ['ignore', 'ignore', 'pipe'] });
}

export async function stopDaemon(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  child.kill('SIGTERM');
  return exited;
}

export async function idleNode(seconds: number): Promise<{ rssKiB: number; privateKiB: number; cpuS: number }> {
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  await sleep(1000);
  const c0 = cpuSeconds(child.pid!);
  await sleep(seconds * 1000);
  const r = { rssKiB: procStatus(child.pid!).rssKiB, privateKiB: privateKiB(child.pid!), cpuS: cpuSeconds(child.pid!) - c0 };
  child.kill('SIGTERM');
  return r;
}

/** RSS of the daemon over `seconds`, sampled every second: max and last. */
async function rssRun(dist: string | null, guests: number, timeScale: number, seconds: number) {
  const s = setup(guests);
  const d = spawnDaemon(dist, s.config, timeScale);
  let stderr = '';
  d.stderr!.on('data', (c: Buffer) => {
    stderr += c.toString();
  });
  let max = 0;
  let last = 0;
  let maxPrivate = 0;
  for (let i = 0; i < seconds; i++) {
    await sleep(1000);
    if (d.exitCode !== null) break;
    last = procStatus(d.pid!).rssKiB;
    if (i >= 2) {
      // after start-up
      max = Math.max(max, last);
      maxPrivate = Math.max(maxPrivate, privateKiB(d.pid!));
    }
  }
  const code = await stopDaemon(d);
  rmSync(s.dir, { recursive: true, force: true });
  if (code !== 0) process.stdout.write(`daemon (${guests} guests) exited with ${code}:\n${stderr.slice(-2000)}\n`);
  return { max, last, maxPrivate };
}

/**
 * Where the daemon's CPU goes with hypervisor = sim: the simulated world's stepping versus
 * ballast's own work (collect, evaluate, guard, act), in this process, per 10 simulated
 * seconds (one policy cycle and two collections at the default intervals).
 */
async function cpuSplit(guests: number): Promise<{ worldPct: number; enginePct: number }> {
  const { SimWorld } = await import('../src/sim/world.js');
  const { parseScenario } = await import('../src/sim/scenarios.js');
  const { SimHypervisor, simHostSource } = await import('../src/hypervisor/sim/index.js');
  const { Engine } = await import('../src/engine/engine.js');
  const { compilePolicyText } = await import('../src/engine/policy-adapter.js');
  const s = setup(guests);
  const spec = parseScenario(JSON.parse(readFileSync(join(s.dir, 'scenario.json'), 'utf8')));
  rmSync(s.dir, { recursive: true, force: true });
  const world = new SimWorld(spec, 7);
  const engine = new Engine({
    hypervisor: new SimHypervisor(world),
    hostSources: [simHostSource(world)],
    policy: compilePolicyText(readFileSync(join(root, 'policies', 'default.policy'), 'utf8')),
    now: () => world.now,
  });
  const us = (u: NodeJS.CpuUsage) => u.user + u.system;
  let worldUs = 0;
  let engineUs = 0;
  const periods = 60;
  for (let i = 0; i < periods + 10; i++) {
    for (let k = 0; k < 2; k++) {
      let c = process.cpuUsage();
      world.advance(5);
      if (i >= 10) worldUs += us(process.cpuUsage(c));
      c = process.cpuUsage();
      await engine.collect();
      if (k === 1) await engine.evaluateAndAct();
      if (i >= 10) engineUs += us(process.cpuUsage(c));
    }
  }
  engine.dispose();
  // CPU microseconds per 10 s of (simulated = real, at the default intervals) time, as %.
  return { worldPct: (worldUs / periods / 1e6 / 10) * 100, enginePct: (engineUs / periods / 1e6 / 10) * 100 };
}

export default async function main(): Promise<void> {
  const cpuWindow = Number(process.env.BALLAST_BENCH_CPU_S ?? 60);
  const dist = buildDist();
  process.stdout.write(`daemon: ${dist ? 'compiled JavaScript' : 'tsx'}\n`);
  // The fixed cost: Node, every module the CLI loads, no guest.
  const empty = await rssRun(dist, 0, 5, 8);

  // RSS at 1,000 guests, time x2 for 30 s: the history fills (10 samples) and 6 policy
  // cycles pass, the steady state.
  const big = await rssRun(dist, 1000, 2, 30);
  const maxRss = big.max;

  // CPU at 100 guests, default intervals, real time.
  const small = setup(100);
  const d2 = spawnDaemon(dist, small.config, 1);
  await sleep(12_000); // start-up (module loading, first cycles compiling their code) is not steady state
  const c0 = cpuSeconds(d2.pid!);
  const t0 = performance.now();
  const [idle] = await Promise.all([idleNode(cpuWindow), sleep(cpuWindow * 1000)]);
  const cpuS = cpuSeconds(d2.pid!) - c0;
  const wall = (performance.now() - t0) / 1000;
  const rss100 = procStatus(d2.pid!).rssKiB;
  const code2 = await stopDaemon(d2);
  rmSync(small.dir, { recursive: true, force: true });

  const mb = (k: number) => (k / 1024).toFixed(1);
  const cpuPct = (100 * cpuS) / wall;
  const idlePct = (100 * idle.cpuS) / cpuWindow;
  console.log(`RSS, 1,000 simulated guests: max ${mb(maxRss)} MB, last ${mb(big.last)} MB; target <= 60 MB: ${maxRss / 1024 <= 60 ? 'met' : 'NOT met'}`);
  console.log(`RSS, 100 simulated guests: ${mb(rss100)} MB; with no guest (Node + modules): ${mb(empty.max)} MB`);
  console.log(`RSS of an idle Node process (baseline): ${mb(idle.rssKiB)} MB; ratio 1,000-guest daemon / idle node: ${(maxRss / idle.rssKiB).toFixed(2)}x`);
  console.log(
    `private memory (RSS minus the Node binary's shared pages): 1,000 guests ${mb(big.maxPrivate)} MB, no guest ${mb(empty.maxPrivate)} MB, idle Node ${mb(idle.privateKiB)} MB`,
  );
  console.log(
    `CPU, 100 simulated guests, stats 5 s / policy 10 s, ${wall.toFixed(0)} s: ${cpuS.toFixed(2)} s = ${cpuPct.toFixed(3)}% of one core; target <= 0.5%: ${cpuPct <= 0.5 ? 'met' : 'NOT met'}`,
  );
  console.log(`CPU of an idle Node process (baseline): ${idlePct.toFixed(3)}% of one core; ballast adds ${(cpuPct - idlePct).toFixed(3)} points`);
  if (code2 !== 0) console.log(`daemon (100 guests) exited with ${code2}`);
  const split = await cpuSplit(100);
  console.log(
    `of which, measured in-process per 10 s at 100 guests: the simulated world ${split.worldPct.toFixed(3)}%, ballast's loop (collect, evaluate, guard, act) ${split.enginePct.toFixed(3)}% of one core`,
  );
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
