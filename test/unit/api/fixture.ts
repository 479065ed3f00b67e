// A real Daemon on the simulated host with the API's listeners, in this process: what the API,
// metrics and MOM-RPC tests talk to. Cycles are awaited through the port's updates, never slept.
import { request } from 'node:http';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultConfig, type Config } from '../../../src/config/schema.js';
import { Daemon } from '../../../src/daemon/daemon.js';
import { DaemonApiPort } from '../../../src/daemon/port.js';
import { EventLog } from '../../../src/api/event-log.js';
import { startServers, type Servers } from '../../../src/api/serve.js';
import { memoryLogger, type MemoryLogger } from '../../../src/log/logger.js';

export const WRITE_TOKEN = 'write-token-0123456789abcdef';
export const READ_TOKEN = 'read-token-0123456789abcdef';

export interface SimDaemon {
  dir: string;
  daemon: Daemon;
  port: DaemonApiPort;
  servers: Servers;
  socket: string;
  /** host:port of the TCP API (when asked for). */
  tcp?: string;
  log: MemoryLogger;
  /** Resolves after `n` more policy cycles. */
  cycles(n?: number): Promise<void>;
  stop(): Promise<void>;
}

export async function startSimDaemon(
  o: { policies?: Record<string, string>; tcp?: boolean; momRpc?: boolean; dashboard?: boolean; tweak?: (c: Config) => void } = {},
): Promise<SimDaemon> {
  const dir = mkdtempSync(join(tmpdir(), 'ballast-api-'));
  const pdir = join(dir, 'policies');
  mkdirSync(pdir);
  for (const [name, text] of Object.entries(o.policies ?? {})) writeFileSync(join(pdir, `${name}.policy`), text);
  const config = defaultConfig();
  config.hypervisor.driver = 'sim';
  config.hypervisor.scenario = 'demo';
  config.hypervisor.time_scale = 200;
  config.engine.policy_dir = pdir;
  config.ksm.restore_on_exit = false;
  config.api.socket = join(dir, 'api.sock');
  if (o.tcp) {
    writeFileSync(join(dir, 'rw.token'), WRITE_TOKEN + '\n');
    writeFileSync(join(dir, 'ro.token'), READ_TOKEN + '\n');
    config.api.listen = '127.0.0.1:0';
    config.api.token_file = join(dir, 'rw.token');
    config.api.read_token_file = join(dir, 'ro.token');
  }
  if (o.momRpc) config.mom_rpc.socket = join(dir, 'mom.sock');
  if (o.dashboard) config.dashboard.listen = '127.0.0.1:0';
  o.tweak?.(config);
  const log = memoryLogger('debug');
  const eventLog = new EventLog();
  const logger = eventLog.tee(log);
  const daemon = await Daemon.create({ config, logger, policyPollS: 0.2 });
  const port = new DaemonApiPort(daemon, eventLog, logger);
  await daemon.start();
  const servers = await startServers(config, port, logger);
  const tcp = servers.urls.find((u) => u.startsWith('api http://'))?.match(/http:\/\/([^/]+)\//)?.[1];
  const cycles = (n = 1) =>
    new Promise<void>((resolve) => {
      let left = n;
      const off = port.onUpdate((kind) => {
        if (kind === 'cycle' && --left === 0) {
          off();
          resolve();
        }
      });
    });
  return {
    dir,
    daemon,
    port,
    servers,
    socket: config.api.socket,
    tcp,
    log,
    cycles,
    stop: async () => {
      await servers.close();
      await daemon.stop('test done');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  // biome-ignore lint/suspicious/noExplicitAny: tests read reply fields directly and assert them
  json: any;
}

/** One HTTP request over a unix socket (`at` a path) or TCP (`at` host:port). */
export function call(at: string, method: string, path: string, o: { body?: string | Buffer; headers?: Record<string, string> } = {}): Promise<Reply> {
  const where = at.startsWith('/') ? { socketPath: at } : { host: at.split(':')[0], port: Number(at.split(':')[1]) };
  return new Promise((resolve, reject) => {
    const req = request(
      { ...where, method, path, headers: { ...(o.body !== undefined ? { 'content-length': String(Buffer.byteLength(o.body)) } : {}), ...o.headers } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const body = Buffer.concat(chunks).toString('utf8');
          let json: unknown;
          try {
            json = JSON.parse(body);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body, json });
        });
      },
    );
    req.on('error', reject);
    if (o.body !== undefined) req.write(o.body);
    req.end();
  });
}
