// Starts every listener the config asks for over one DaemonPort: the JSON API (with /metrics
// and the dashboard) on its unix socket and, with tokens, on TCP; the dashboard and /metrics
// on their own TCP addresses, read-only (tokenless for loopback clients naming a loopback
// Host); MOM's XML-RPC. A listener that cannot start is logged and left out: the daemon's job
// is the memory, not its API. Who may do what where: docs/api.md.
import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { Config } from '../config/schema.js';
import type { Logger } from '../log/logger.js';
import { dashboardHandler } from './dashboard/index.js';
import { apiHandler } from './http/routes.js';
import { closeServer, listenTcp, listenUnix } from './http/listen.js';
import { createHttpServer, readOnlyHandler, type Handler, type ListenerAuth } from './http/server.js';
import { metricsHandler, metricsOf } from './metrics/index.js';
import { startMomRpc } from './mom/server.js';
import type { DaemonPort } from './port.js';

export interface Servers {
  /** What listens where, e.g. "api unix:/run/ballast/api.sock", "dashboard http://127.0.0.1:9489/". */
  urls: string[];
  /** The dashboard's URL, when one is served on TCP. */
  dashboardUrl?: string;
  close(): Promise<void>;
}

/** One bearer token from a file (its first line, trimmed); a clear error otherwise. */
export function readToken(path: string, key: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new Error(`${key}: cannot read ${path}: ${(err as Error).message}`);
  }
  const token = text.split('\n')[0]!.trim();
  if (token.length < 16) throw new Error(`${key}: the token in ${path} is shorter than 16 characters`);
  return token;
}

/**
 * Host names, besides the loopback's, that tokenless loopback reads may name (`api.allowed_hosts`,
 * e.g. the host's own name when /etc/hosts maps it to 127.0.1.1). Read defensively: a list of
 * strings or nothing.
 */
export function allowedHosts(config: Config): string[] {
  const v = (config.api as Record<string, unknown>).allowed_hosts;
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string' && x.length > 0) : [];
}

/** The tokens of a config; throws naming the key when a TCP listener would have none. */
export function tokensOf(config: Config): { writeToken?: string; readToken?: string } {
  const a = config.api;
  const writeToken = a.token_file ? readToken(a.token_file, 'api.token_file') : undefined;
  const readToken_ = a.read_token_file ? readToken(a.read_token_file, 'api.read_token_file') : undefined;
  if (a.listen && !writeToken && !readToken_) {
    throw new Error('api.listen: a TCP API needs api.token_file (read-write) and/or api.read_token_file (read-only)');
  }
  return { writeToken, readToken: readToken_ };
}

export async function startServers(config: Config, port: DaemonPort, logger: Logger): Promise<Servers> {
  const open: { server?: Server; path?: string; close?: () => Promise<void> }[] = [];
  const urls: string[] = [];
  let dashboardUrl: string | undefined;
  const tokens = tokensOf(config);
  // The cycle histogram and action counts are fed as cycles end: start counting now, not at the first scrape.
  metricsOf(port);
  const all: Handler[] = [apiHandler(), metricsHandler(), dashboardHandler()];
  // The dashboard's and /metrics' listeners never write, whatever the token: the page only reads.
  const readOnly: Handler[] = all.map(readOnlyHandler);
  const hosts = allowedHosts(config);
  const make = (handlers: Handler[], auth: ListenerAuth) => createHttpServer({ handlers, port, auth, logger, maxBodyBytes: config.api.max_body_bytes });

  const attempt = async (what: string, f: () => Promise<void>) => {
    try {
      await f();
    } catch (err) {
      logger.error('listen_failed', { listener: what, error: (err as Error).message, reason: 'the daemon goes on without this listener' });
    }
  };

  if (config.api.socket) {
    await attempt(`api.socket ${config.api.socket}`, async () => {
      const server = make(all, { kind: 'unix' });
      await listenUnix(server, config.api.socket);
      open.push({ server, path: config.api.socket });
      urls.push(`api unix:${config.api.socket}`);
    });
  }
  if (config.api.listen) {
    await attempt(`api.listen ${config.api.listen}`, async () => {
      const server = make(all, { kind: 'tcp', ...tokens });
      const at = await listenTcp(server, config.api.listen, 'api.listen');
      open.push({ server });
      urls.push(`api http://${at}/api/v1/`);
    });
  }
  if (config.dashboard.listen) {
    await attempt(`dashboard.listen ${config.dashboard.listen}`, async () => {
      const server = make(readOnly, { kind: 'tcp', ...tokens, loopbackReads: true, hosts });
      const at = await listenTcp(server, config.dashboard.listen, 'dashboard.listen');
      open.push({ server });
      dashboardUrl = `http://${at}/`;
      urls.push(`dashboard ${dashboardUrl}`);
    });
  }
  if (config.metrics.listen) {
    await attempt(`metrics.listen ${config.metrics.listen}`, async () => {
      const server = make([readOnlyHandler(metricsHandler())], { kind: 'tcp', ...tokens, loopbackReads: true, hosts });
      const at = await listenTcp(server, config.metrics.listen, 'metrics.listen');
      open.push({ server });
      urls.push(`metrics http://${at}/metrics`);
    });
  }
  if (config.mom_rpc.socket || config.mom_rpc.port) {
    await attempt('mom_rpc', async () => {
      const mom = await startMomRpc(
        port,
        { socket: config.mom_rpc.socket || undefined, owner: config.mom_rpc.socket_owner || undefined, port: config.mom_rpc.port || undefined },
        logger,
      );
      open.push({ close: mom.close });
      urls.push(`mom-rpc ${mom.url}`);
    });
  }
  if (urls.length) logger.info('listening', { listeners: urls });
  return {
    urls,
    dashboardUrl,
    close: async () => {
      await Promise.all(open.map((o) => (o.close ? o.close() : closeServer(o.server!, o.path))));
    },
  };
}
