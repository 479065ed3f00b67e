// A real Daemon on the simulated host with the API's listeners, in this process: what the API,
// metrics and MOM-RPC tests talk to. Cycles are awaited through the port's updates, never slept.
import { createServer as createTcpServer, connect } from 'node:net';
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
  /** host:port of the dashboard's listener (when asked for). */
  dashboard?: string;
  /** host:port of the metrics listener (when asked for). */
  metrics?: string;
  /** MOM's RPC: the socket path, or host:port on TCP (when asked for). */
  mom?: string;
  log: MemoryLogger;
  /** Resolves after `n` more policy cycles. */
  cycles(n?: number): Promise<void>;
  stop(): Promise<void>;
}

export async function startSimDaemon(
  o: {
    policies?: Record<string, string>;
    tcp?: boolean;
    /** MOM's RPC on a unix socket (true or 'unix') or on 127.0.0.1 at a free port ('tcp'). */
    momRpc?: boolean | 'unix' | 'tcp';
    dashboard?: boolean;
    metrics?: boolean;
    tweak?: (c: Config) => void;
  } = {},
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
  if (o.momRpc === 'tcp') config.mom_rpc.port = await freePort();
  else if (o.momRpc) config.mom_rpc.socket = join(dir, 'mom.sock');
  if (o.dashboard) config.dashboard.listen = '127.0.0.1:0';
  if (o.metrics) config.metrics.listen = '127.0.0.1:0';
  o.tweak?.(config);
  const log = memoryLogger('debug');
  const eventLog = new EventLog();
  const logger = eventLog.tee(log);
  const daemon = await Daemon.create({ config, logger, policyPollS: 0.2 });
  const port = new DaemonApiPort(daemon, eventLog, logger);
  await daemon.start();
  const servers = await startServers(config, port, logger);
  const at = (prefix: string) => servers.urls.find((u) => u.startsWith(prefix))?.match(/http:\/\/([^/]+)\//)?.[1];
  const tcp = at('api http://');
  const mom = o.momRpc === 'tcp' ? at('mom-rpc http://') : o.momRpc ? config.mom_rpc.socket : undefined;
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
    dashboard: at('dashboard http://'),
    metrics: at('metrics http://'),
    mom,
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

/** A TCP port nobody listens on now (for listeners configured by port number, 0 meaning off). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createTcpServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

/** The socket options of `at`: a unix socket path, or host:port. */
export function where(at: string): { path: string } | { host: string; port: number } {
  if (at.startsWith('/')) return { path: at };
  const i = at.lastIndexOf(':');
  return { host: at.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(at.slice(i + 1)) };
}

/** One raw HTTP/1.1 request (no Host header unless given in `headers`). */
export function rawRequest(method: string, path: string, o: { body?: string | Buffer; headers?: Record<string, string> } = {}): Buffer {
  const body = o.body === undefined ? undefined : Buffer.from(o.body);
  const head = [`${method} ${path} HTTP/1.1`];
  for (const [k, v] of Object.entries(o.headers ?? {})) head.push(`${k}: ${v}`);
  if (body) head.push(`content-length: ${body.length}`);
  return Buffer.concat([Buffer.from(`${head.join('\r\n')}\r\n\r\n`, 'latin1'), body ?? Buffer.alloc(0)]);
}

export interface RawReply {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/**
 * The complete responses at the start of `buf`, in order (content-length, chunked, or none
 * for HEAD, 1xx, 204 and 304), and how many bytes they took; a cut-off response is left out.
 */
export function parseResponses(buf: Buffer, methods: string[]): { replies: RawReply[]; used: number } {
  const replies: RawReply[] = [];
  let at = 0;
  while (at < buf.length) {
    const end = buf.indexOf('\r\n\r\n', at);
    if (end < 0) break;
    const lines = buf.subarray(at, end).toString('latin1').split('\r\n');
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0]!)?.[1]);
    if (!status) throw new Error(`not an HTTP response: ${JSON.stringify(lines[0])}`);
    const headers: Record<string, string> = {};
    for (const l of lines.slice(1)) {
      const i = l.indexOf(':');
      headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
    }
    let p = end + 4;
    let body: Buffer;
    const method = methods[replies.length] ?? 'GET';
    if (method === 'HEAD' || status < 200 || status === 204 || status === 304) body = Buffer.alloc(0);
    else if (headers['content-length'] !== undefined) {
      const n = Number(headers['content-length']);
      if (buf.length < p + n) break;
      body = buf.subarray(p, p + n);
      p += n;
    } else if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
      const parts: Buffer[] = [];
      let complete = false;
      for (;;) {
        const e = buf.indexOf('\r\n', p);
        if (e < 0) break;
        const n = parseInt(buf.subarray(p, e).toString('latin1'), 16);
        if (buf.length < e + 2 + n + 2) break;
        parts.push(buf.subarray(e + 2, e + 2 + n));
        p = e + 2 + n + 2;
        if (n === 0) {
          complete = true;
          break;
        }
      }
      if (!complete) break;
      body = Buffer.concat(parts);
    } else {
      // Delimited by the end of the connection: complete only when the caller says so.
      body = buf.subarray(p);
      p = buf.length;
    }
    replies.push({ status, headers, body });
    at = p;
  }
  return { replies, used: at };
}

/**
 * Writes `requests` in one chunk on one connection and reads until `expect` responses came,
 * the server closed, or `ms` passed. With `read: false` nothing is read for `ms`; then
 * `paused()` is called and the connection read for up to a second more, to see whether the
 * server has closed it. `closed` says whether the server ended the connection.
 */
export function exchange(
  at: string,
  requests: Buffer[],
  methods: string[],
  o: { expect?: number; ms?: number; read?: boolean; paused?: () => void } = {},
): Promise<{ replies: RawReply[]; closed: boolean }> {
  const expect = o.expect ?? requests.length;
  const ms = o.ms ?? 5000;
  return new Promise((resolve) => {
    const s = connect(where(at) as never);
    const chunks: Buffer[] = [];
    let closed = false;
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      s.destroy();
      resolve({ replies: parseResponses(Buffer.concat(chunks), methods).replies, closed });
    };
    let timer = setTimeout(() => {
      if (o.read !== false) return finish();
      o.paused?.();
      timer = setTimeout(finish, 1000);
      s.resume();
    }, ms);
    s.on('connect', () => s.write(Buffer.concat(requests)));
    if (o.read === false) s.pause();
    s.on('data', (c: Buffer) => {
      if (o.read === false) return;
      chunks.push(c);
      if (parseResponses(Buffer.concat(chunks), methods).replies.length >= expect) finish();
    });
    s.on('error', () => {
      closed = true;
    });
    s.on('end', () => {
      closed = true;
      finish();
    });
    s.on('close', () => {
      closed = true;
      finish();
    });
  });
}
