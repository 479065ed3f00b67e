// What watching costs: the daemon at 1,000 simulated guests with the API, /metrics and the
// dashboard served and used (Prometheus scraping every 15 s, one dashboard tab polling every
// 2 s as web/dashboard.js does), and with /metrics scraped every 15 s alone, against the same
// daemon with all of them off, measured in the same run; then the time and size of one
// /metrics scrape beside the same daemon's /api/v1/health (the HTTP round trip itself), asked
// alternately so that both see the same load on the machine.
// BALLAST_BENCH_WINDOW_S sets the measuring window (default 30 s).
import { readFileSync, writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Counter, Gauge, Registry } from 'prom-client';
import { buildDist, cpuSeconds, procStatus, setup, spawnDaemon, stopDaemon } from './daemon.bench.js';
import { metricsOf, renderMetrics } from '../src/api/metrics/index.js';
import type { DaemonPort } from '../src/api/port.js';

const GUESTS = 1000;

function withServers(config: string, dir: string, metricsPort: number, dashboardPort: number): void {
  writeFileSync(
    config,
    `${readFileSync(config, 'utf8')}[api]\nsocket = "${join(dir, 'api.sock')}"\n[metrics]\nlisten = "127.0.0.1:${metricsPort}"\n[dashboard]\nlisten = "127.0.0.1:${dashboardPort}"\n`,
  );
}

function serversOff(config: string): void {
  writeFileSync(config, `${readFileSync(config, 'utf8')}[api]\nsocket = ""\n`);
}

async function waitForHttp(url: string, seconds: number): Promise<void> {
  for (let i = 0; i < seconds * 10; i++) {
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  throw new Error(`${url} did not answer within ${seconds} s`);
}

interface Run {
  cpuPct: number;
  rssMaxKiB: number;
  scrapes: number;
  polls: number;
}

/** off: no listener; listen: every listener, no client; scrape: /metrics every 15 s (fast:
 *  every second, to magnify what a scrape leaves behind); all: every 15 s and a dashboard tab. */
type Mode = 'off' | 'listen' | 'scrape' | 'fast' | 'all';

async function measure(
  dist: string | null,
  mode: Mode,
  windowS: number,
  after?: (metricsUrl: string, healthUrl: string, pid: number) => Promise<void>,
): Promise<Run> {
  const on = mode !== 'off';
  const s = setup(GUESTS);
  const metricsPort = 20000 + Math.floor(Math.random() * 20000);
  const dashboardPort = metricsPort + 1;
  if (on) withServers(s.config, s.dir, metricsPort, dashboardPort);
  else serversOff(s.config);
  const d = spawnDaemon(dist, s.config, 1);
  let stderr = '';
  d.stderr!.on('data', (c: Buffer) => {
    stderr += c.toString();
  });
  const metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
  const api = `http://127.0.0.1:${dashboardPort}/api/v1/`;
  try {
    if (on) await waitForHttp(metricsUrl, 30);
    await sleep(12_000); // start-up and the first cycles (code compiled, history filled) are not steady state
    let scrapes = 0;
    let polls = 0;
    let stop = false;
    const clients =
      mode === 'scrape' || mode === 'fast' || mode === 'all'
        ? [
            (async () => {
              while (!stop) {
                await (await fetch(metricsUrl)).text();
                scrapes++;
                await sleep(mode === 'fast' ? 1000 : 15_000);
              }
            })(),
            ...(mode === 'all'
              ? [
                  (async () => {
                    let since = 0;
                    while (!stop) {
                      const [, , , , , events] = await Promise.all(
                        ['health', 'host', 'guests', 'actions', 'alerts', `events?since=${since}`].map(async (p) => (await fetch(api + p)).json()),
                      );
                      since = (events as { seq: number }[]).at(-1)?.seq ?? since;
                      polls++;
                      await sleep(2000);
                    }
                  })(),
                ]
              : []),
          ]
        : [];
    const c0 = cpuSeconds(d.pid!);
    const t0 = performance.now();
    let rssMax = 0;
    for (let i = 0; i < windowS; i++) {
      await sleep(1000);
      rssMax = Math.max(rssMax, procStatus(d.pid!).rssKiB);
    }
    const cpuPct = (100 * (cpuSeconds(d.pid!) - c0)) / ((performance.now() - t0) / 1000);
    stop = true;
    await Promise.all(clients);
    if (after) await after(metricsUrl, `${api}health`, d.pid!);
    return { cpuPct, rssMaxKiB: rssMax, scrapes, polls };
  } finally {
    const code = await stopDaemon(d);
    rmSync(s.dir, { recursive: true, force: true });
    if (code !== 0) process.stdout.write(`daemon exited with ${code}:\n${stderr.slice(-2000)}\n`);
  }
}

/** A port that answers with what the running daemon's API answered: the same 1,000 guests,
 *  rendered in this process both ways. */
async function snapshotPort(base: string): Promise<DaemonPort> {
  const get = async (p: string) => (await fetch(base + p)).json();
  const [health, host, guests, alerts] = await Promise.all(['health', 'host', 'guests', 'alerts'].map(get));
  return {
    onUpdate: () => () => {},
    health: () => health,
    host: () => host,
    guests: () => guests,
    alerts: () => alerts,
    actions: () => [],
    counters: () => ({}),
  } as unknown as DaemonPort;
}

/** What /metrics did before: the per-guest families through prom-client's registry too (each
 *  label set hashed on set(), flattened and escaped on output). Same families, same values. */
function promClientOnly(port: DaemonPort): () => Promise<string> {
  const own = metricsOf(port);
  const reg = new Registry();
  const fams = [...own.guestFamilies].map(([name, f]) => ({
    m:
      f.type === 'gauge'
        ? new Gauge({ name, help: f.help, labelNames: ['name', 'uuid'], registers: [reg] })
        : new Counter({ name, help: f.help, labelNames: ['name', 'uuid'], registers: [reg] }),
    f,
  }));
  return async () => {
    own.collectAll();
    const now = port.health().time;
    for (const { m } of fams) m.reset();
    for (const g of port.guests()) {
      const labels = { name: g.name, uuid: String(g.props.uuid ?? g.id) };
      for (const { m, f } of fams) {
        const v = f.value(g, now);
        if (v === null) continue;
        if (m instanceof Gauge) m.set(labels, v);
        else m.inc(labels, v);
      }
    }
    const others = await Promise.all(
      own
        .getMetricsAsArray()
        .filter((m) => !own.guestFamilies.has(m.name))
        .map((m) => own.getSingleMetricAsString(m.name)),
    );
    return `${others.join('\n\n')}\n${await reg.metrics()}`;
  };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** The daemon's CPU seconds per request of `url`, over `n` requests one after another, less
 *  what it spends meanwhile on its own loop (its rate just before, with no requests). Wall
 *  time on a shared machine is mostly waiting for a core; CPU time is the request's cost. */
async function cpuPerRequest(pid: number, url: string, n: number): Promise<number> {
  const idle0 = cpuSeconds(pid);
  const t0 = performance.now();
  await sleep(5000);
  const idleRate = (cpuSeconds(pid) - idle0) / ((performance.now() - t0) / 1000);
  const c0 = cpuSeconds(pid);
  const t1 = performance.now();
  for (let i = 0; i < n; i++) await (await fetch(url)).arrayBuffer();
  const wall = (performance.now() - t1) / 1000;
  return Math.max(0, cpuSeconds(pid) - c0 - idleRate * wall) / n;
}

export default async function main(): Promise<void> {
  const windowS = Number(process.env.BALLAST_BENCH_WINDOW_S ?? 30);
  const dist = buildDist();
  const off = await measure(dist, 'off', windowS);
  const listening = await measure(dist, 'listen', windowS);
  const scrapeOnly = await measure(dist, 'scrape', windowS);
  const fast = await measure(dist, 'fast', windowS);
  let scrape = { medianMs: 0, maxMs: 0, healthMs: 0, bytes: 0, series: 0, n: 0, cpuMs: 0, healthCpuMs: 0 };
  let render = { directMs: 0, promMs: 0, directBytes: 0, promBytes: 0 };
  const on = await measure(dist, 'all', windowS, async (url, health, pid) => {
    const times: number[] = [];
    const healthTimes: number[] = [];
    let text = '';
    for (let i = 0; i < 21; i++) {
      let t = performance.now();
      text = await (await fetch(url)).text();
      times.push(performance.now() - t);
      t = performance.now();
      await (await fetch(health)).text();
      healthTimes.push(performance.now() - t);
    }
    scrape = {
      medianMs: median(times),
      maxMs: Math.max(...times),
      healthMs: median(healthTimes),
      bytes: Buffer.byteLength(text),
      series: text.split('\n').filter((l) => l && !l.startsWith('#')).length,
      n: times.length,
      cpuMs: 1000 * (await cpuPerRequest(pid, url, 40)),
      healthCpuMs: 1000 * (await cpuPerRequest(pid, health, 40)),
    };
    const port = await snapshotPort(health.replace(/health$/, ''));
    const old = promClientOnly(port);
    const direct: number[] = [];
    const prom: number[] = [];
    for (let i = 0; i < 21; i++) {
      let t = performance.now();
      render.directBytes = (await renderMetrics(port)).body.toString('utf8').length;
      direct.push(performance.now() - t);
      t = performance.now();
      render.promBytes = (await old()).length;
      prom.push(performance.now() - t);
    }
    render = { ...render, directMs: median(direct), promMs: median(prom) };
  });
  const mb = (k: number) => (k / 1024).toFixed(1);
  console.log(`daemon, ${GUESTS.toLocaleString('en')} simulated guests, real time, ${windowS} s window (${dist ? 'compiled JavaScript' : 'tsx'}):`);
  console.log(`  API, /metrics and dashboard off (baseline): CPU ${off.cpuPct.toFixed(2)}% of one core, RSS max ${mb(off.rssMaxKiB)} MB`);
  console.log(`  every listener on, no client: CPU ${listening.cpuPct.toFixed(2)}% of one core, RSS max ${mb(listening.rssMaxKiB)} MB`);
  console.log(
    `  /metrics scraped alone (${scrapeOnly.scrapes} scrapes): CPU ${scrapeOnly.cpuPct.toFixed(2)}% of one core, RSS max ${mb(scrapeOnly.rssMaxKiB)} MB`,
  );
  console.log(`  on and used (${on.scrapes} scrapes, ${on.polls} dashboard polls): CPU ${on.cpuPct.toFixed(2)}% of one core, RSS max ${mb(on.rssMaxKiB)} MB`);
  console.log(`  /metrics scraped every second (${fast.scrapes} scrapes): CPU ${fast.cpuPct.toFixed(2)}% of one core, RSS max ${mb(fast.rssMaxKiB)} MB`);
  console.log(
    `  ratio scraped every second/listening: CPU ${(fast.cpuPct / listening.cpuPct).toFixed(2)}x, RSS ${(fast.rssMaxKiB / listening.rssMaxKiB).toFixed(2)}x`,
  );
  console.log(
    `  ratio scraped/listening (what scraping adds): CPU ${(scrapeOnly.cpuPct / listening.cpuPct).toFixed(2)}x, RSS ${(scrapeOnly.rssMaxKiB / listening.rssMaxKiB).toFixed(2)}x`,
  );
  console.log(`  ratio scraped/off: CPU ${(scrapeOnly.cpuPct / off.cpuPct).toFixed(2)}x, RSS ${(scrapeOnly.rssMaxKiB / off.rssMaxKiB).toFixed(2)}x`);
  console.log(`  ratio on/off: CPU ${(on.cpuPct / off.cpuPct).toFixed(2)}x, RSS ${(on.rssMaxKiB / off.rssMaxKiB).toFixed(2)}x`);
  console.log(
    `/metrics at ${GUESTS.toLocaleString('en')} guests: ${scrape.series.toLocaleString('en')} series, ${(scrape.bytes / 1024).toFixed(0)} KiB; scrape time median ${scrape.medianMs.toFixed(1)} ms, max ${scrape.maxMs.toFixed(1)} ms over ${scrape.n} scrapes`,
  );
  console.log(
    `  beside /api/v1/health in the same daemon, asked alternately: median ${scrape.healthMs.toFixed(1)} ms; scrape/health ${(scrape.medianMs / scrape.healthMs).toFixed(1)}x`,
  );
  console.log(
    `  rendering the same ${GUESTS.toLocaleString('en')} guests in this process, alternately: per-guest series written directly ${render.directMs.toFixed(1)} ms (${render.directBytes} chars), all through prom-client (before) ${render.promMs.toFixed(1)} ms (${render.promBytes} chars); ${(render.promMs / render.directMs).toFixed(1)}x`,
  );
  console.log(
    `  daemon CPU per request, 40 in a row, its own loop's share taken out: /metrics ${scrape.cpuMs.toFixed(1)} ms, /api/v1/health ${scrape.healthCpuMs.toFixed(2)} ms`,
  );
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
