// A hostile local client against the dashboard's listener, loopback only (issue 27, finding 1):
// eight TCP connections each write ~1,700 pipelined `GET /metrics` in one chunk and never read
// a byte, and write the same again every 250 ms; whenever the daemon closes one, it is opened
// again, for the whole window. Meanwhile the daemon's RSS is sampled (/proc/PID/status) and
// /api/v1/health is asked on the unix socket every 250 ms (an answer after 1 s is late).
// Targets: RSS under 150 MB throughout, every health answer within 1 s.
// Then finding 5's: eight clients of MOM's XML-RPC (on TCP) each posting, one after another,
// a body just under the 64 KiB limit made of character references (the slowest to decode
// per byte), with the same measures.
// Baseline measured in the same run: the same daemon for the same window with nobody attacking.
// The daemon is `ballast run` on the simulated host's demo scenario (what `ballast demo` runs).
// BALLAST_BENCH_ATTACK_S sets the attack window (default 15 s); BALLAST_BENCH_ATTACK_CONNECTIONS
// the number of attacking connections (default 8).
import { connect, type Socket } from 'node:net';
import { request } from 'node:http';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { buildDist, procStatus, spawnDaemon, stopDaemon } from './daemon.bench.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const CONNECTIONS = Number(process.env.BALLAST_BENCH_ATTACK_CONNECTIONS ?? 8);
const PIPELINED = 1700;
/** Past this the attack is stopped (the machine is not the thing under test). */
const RSS_ABORT_KIB = 1536 * 1024;

function config(dir: string, dashboardPort: number, momPort: number): string {
  const policies = join(dir, 'policies');
  mkdirSync(policies);
  copyFileSync(join(root, 'policies', 'default.policy'), join(policies, '50_default.policy'));
  const file = join(dir, 'ballast.toml');
  writeFileSync(
    file,
    [
      '[hypervisor]',
      'driver = "sim"',
      'scenario = "demo"',
      '[engine]',
      `policy_dir = "${policies}"`,
      '[ksm]',
      'restore_on_exit = false',
      '[api]',
      `socket = "${join(dir, 'api.sock')}"`,
      '[dashboard]',
      `listen = "127.0.0.1:${dashboardPort}"`,
      '[mom_rpc]',
      `port = ${momPort}`,
      '[log]',
      'format = "json"',
      'level = "warn"',
      '',
    ].join('\n'),
  );
  return file;
}

/** GET /api/v1/health on the unix socket: milliseconds, or Infinity on an error or no answer within 5 s. */
function health(socketPath: string): Promise<number> {
  const t0 = performance.now();
  return new Promise((done) => {
    const req = request({ socketPath, path: '/api/v1/health' }, (res) => {
      res.resume();
      res.on('end', () => {
        clearTimeout(deadline);
        done(res.statusCode === 200 ? performance.now() - t0 : Number.POSITIVE_INFINITY);
      });
    });
    const deadline = setTimeout(() => {
      req.destroy();
      done(Number.POSITIVE_INFINITY);
    }, 5000);
    req.on('error', () => {
      clearTimeout(deadline);
      done(Number.POSITIVE_INFINITY);
    });
    req.end();
  });
}

async function waitFor(socketPath: string, seconds: number): Promise<void> {
  for (let i = 0; i < seconds * 10; i++) {
    if (Number.isFinite(await health(socketPath))) return;
    await sleep(100);
  }
  throw new Error(`${socketPath} did not answer within ${seconds} s`);
}

/**
 * Keeps CONNECTIONS attackers going until `stop()`: each writes PIPELINED requests in one chunk,
 * never reads, and writes another such chunk every 250 ms while its last one has left; a
 * paused socket does not see the server close, a write does (EPIPE/ECONNRESET), and then the
 * attacker connects again. Counts the connections opened.
 */
function attack(port: number): { stop(): void; opened(): number } {
  const chunk = Buffer.from(`GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`.repeat(PIPELINED));
  let stopped = false;
  let opened = 0;
  const live = new Set<Socket>();
  const one = () => {
    if (stopped) return;
    opened++;
    const s = connect(port, '127.0.0.1');
    live.add(s);
    s.pause(); // never read
    const again = setInterval(() => {
      if (s.writable && s.writableLength === 0) s.write(chunk);
    }, 250);
    s.on('connect', () => s.write(chunk));
    s.on('error', () => {});
    s.on('close', () => {
      clearInterval(again);
      live.delete(s);
      // Again at once (a tiny pause so that a refusing listener is not a busy loop here).
      setTimeout(one, 5);
    });
  };
  for (let i = 0; i < CONNECTIONS; i++) one();
  return {
    stop: () => {
      stopped = true;
      for (const s of live) s.destroy();
    },
    opened: () => opened,
  };
}

/** CONNECTIONS clients of MOM's RPC on TCP, each posting a heavy ~63 KiB call as soon as its last is answered. */
function xmlRpcAttack(port: number): { stop(): void; opened(): number } {
  const body = Buffer.from(
    `<?xml version='1.0'?>\n<methodCall><methodName>setNamedPolicy</methodName><params><param><value><string>20_heavy</string></value></param><param><value><string>;${'&#x41;'.repeat(Math.floor((63 * 1024) / 6))}</string></value></param></params></methodCall>\n`,
  );
  let stopped = false;
  let calls = 0;
  const one = () => {
    if (stopped) return;
    calls++;
    const req = request(
      { host: '127.0.0.1', port, method: 'POST', path: '/RPC2', headers: { 'content-type': 'text/xml', 'content-length': body.length } },
      (res) => {
        res.resume();
        res.on('end', one);
      },
    );
    req.on('error', () => setTimeout(one, 5));
    req.end(body);
  };
  for (let i = 0; i < CONNECTIONS; i++) one();
  return {
    stop: () => {
      stopped = true;
    },
    opened: () => calls,
  };
}

interface Window {
  rssMaxKiB: number;
  rssLastKiB: number;
  healthMaxMs: number;
  healthMedianMs: number;
  healthLate: number;
  healthAsked: number;
  opened: number;
  aborted: boolean;
  exited: boolean;
}

async function run(dist: string | null, attacked: false | 'pipelined' | 'xml-rpc', seconds: number): Promise<Window> {
  const dir = mkdtempSync(join(tmpdir(), 'ballast-attack-'));
  const port = 20000 + Math.floor(Math.random() * 20000);
  const socketPath = join(dir, 'api.sock');
  const d = spawnDaemon(dist, config(dir, port, port + 1), 1);
  let stderr = '';
  d.stderr!.on('data', (c: Buffer) => {
    stderr += c.toString();
  });
  try {
    await waitFor(socketPath, 30);
    await sleep(3000); // first cycles
    const a = attacked === 'pipelined' ? attack(port) : attacked === 'xml-rpc' ? xmlRpcAttack(port + 1) : undefined;
    const times: number[] = [];
    let rssMax = 0;
    let rssLast = 0;
    let aborted = false;
    const t0 = performance.now();
    let exited = false;
    while (performance.now() - t0 < seconds * 1000) {
      const [ms] = await Promise.all([health(socketPath), sleep(250)]);
      times.push(ms);
      if (d.exitCode !== null || d.signalCode !== null) {
        exited = true;
        break;
      }
      rssLast = procStatus(d.pid!).rssKiB;
      rssMax = Math.max(rssMax, rssLast);
      if (rssLast > RSS_ABORT_KIB) {
        aborted = true;
        break;
      }
    }
    a?.stop();
    const finite = times.filter(Number.isFinite).sort((x, y) => x - y);
    const late = times.filter((t) => t > 1000).length;
    return {
      rssMaxKiB: rssMax,
      rssLastKiB: rssLast,
      healthMaxMs: times.length && finite.length === times.length ? finite.at(-1)! : Number.POSITIVE_INFINITY,
      healthMedianMs: finite[Math.floor(finite.length / 2)] ?? Number.NaN,
      healthLate: late,
      healthAsked: times.length,
      opened: a?.opened() ?? 0,
      aborted,
      exited,
    };
  } finally {
    const code = await stopDaemon(d);
    rmSync(dir, { recursive: true, force: true });
    if (code !== 0 && code !== null) process.stdout.write(`daemon exited with ${code}:\n${stderr.slice(-1500)}\n`);
  }
}

export default async function main(): Promise<void> {
  const seconds = Number(process.env.BALLAST_BENCH_ATTACK_S ?? 15);
  const dist = buildDist();
  process.stdout.write(
    `daemon: ${dist ? 'compiled JavaScript' : 'tsx'}; demo scenario; ${CONNECTIONS} x ${PIPELINED} pipelined GET /metrics, never read, ${seconds} s\n`,
  );
  const quiet = await run(dist, false, seconds);
  const hit = await run(dist, 'pipelined', seconds);
  const rpc = await run(dist, 'xml-rpc', seconds);
  const mb = (k: number) => (k / 1024).toFixed(1);
  const ms = (x: number) => (Number.isFinite(x) ? `${x.toFixed(1)} ms` : 'over 1 s');
  console.log(`quiet (baseline): RSS max ${mb(quiet.rssMaxKiB)} MB; health median ${ms(quiet.healthMedianMs)}, max ${ms(quiet.healthMaxMs)}`);
  console.log(
    `attacked: RSS max ${mb(hit.rssMaxKiB)} MB (last ${mb(hit.rssLastKiB)} MB, ${(hit.rssMaxKiB / quiet.rssMaxKiB).toFixed(2)}x the baseline); ` +
      `${hit.opened} attacking connections opened; health median ${ms(hit.healthMedianMs)}, max ${ms(hit.healthMaxMs)}, ` +
      `${hit.healthLate} of ${hit.healthAsked} later than 1 s${hit.aborted ? `; STOPPED at ${mb(RSS_ABORT_KIB)} MB` : ''}${hit.exited ? '; the daemon DIED' : ''}`,
  );
  const ok = !hit.aborted && !hit.exited && hit.rssMaxKiB < 150 * 1024 && hit.healthLate === 0;
  console.log(`target (RSS < 150 MB, health within 1 s throughout): ${ok ? 'met' : 'NOT met'}`);
  console.log(
    `XML-RPC, ${CONNECTIONS} clients posting ~63 KiB of character references: RSS max ${mb(rpc.rssMaxKiB)} MB; ${rpc.opened} calls; ` +
      `health median ${ms(rpc.healthMedianMs)}, max ${ms(rpc.healthMaxMs)}, ${rpc.healthLate} of ${rpc.healthAsked} later than 1 s${rpc.exited ? '; the daemon DIED' : ''}`,
  );
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
