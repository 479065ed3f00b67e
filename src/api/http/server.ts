// The HTTP plumbing every read/steer surface of the daemon shares (the JSON API, /metrics, the
// dashboard): node's http server with bounded work per connection and per listener
// (limits.ts), authentication before any handler runs, size-limited bodies and JSON errors.
// Handlers are tried in order; the first that claims a request answers it.
//
// Who may do what: on a unix socket the socket's mode (0600) is the access control, so every
// request may write. On TCP every request needs `Authorization: Bearer TOKEN` (the read-write
// or the read-only token), except that a listener made with `loopbackReads` (the dashboard's,
// /metrics') lets tokenless clients on 127.0.0.0/8 and ::1 read, when their Host header names
// the loopback (localhost, 127.x.x.x, [::1]) or a configured name: a web page whose name was
// rebound to 127.0.0.1 (DNS rebinding) sends its own name and gets 403. A listener's handlers
// wrapped in `readOnlyHandler` never write, whatever the token.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { bounded } from './limits.js';
import { timingSafeEqual, createHash } from 'node:crypto';
import type { DaemonPort } from '../port.js';
import type { Logger } from '../../log/logger.js';

export type Access = 'read' | 'write';

export interface RequestContext {
  req: IncomingMessage;
  res: ServerResponse;
  url: URL;
  access: Access;
  port: DaemonPort;
  /** The request body, at most `limit` bytes (default: the server's limit); 413 beyond. */
  body(limit?: number): Promise<Buffer>;
}

/** Returns true when it answered the request. */
export type Handler = (ctx: RequestContext) => boolean | Promise<boolean>;

/** An error that becomes a JSON error response. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly error: string,
    readonly detail?: unknown,
  ) {
    super(error);
  }
}

export type ListenerAuth =
  | { kind: 'unix' }
  | {
      kind: 'tcp';
      writeToken?: string;
      readToken?: string;
      loopbackReads?: boolean;
      /** Host names, besides the loopback's, a tokenless loopback read may name in its Host header. */
      hosts?: string[];
    };

export interface HttpServerOptions {
  handlers: Handler[];
  port: DaemonPort;
  auth: ListenerAuth;
  logger: Logger;
  /** Largest request body accepted (bytes). */
  maxBodyBytes?: number;
}

export const DEFAULT_MAX_BODY = 1024 * 1024;

export function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? v.toString() : v));
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
  res.end(body);
}

export function sendError(res: ServerResponse, status: number, error: string, detail?: unknown): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  sendJson(res, status, detail === undefined ? { error } : { error, detail });
}

function isLoopback(addr: string | undefined): boolean {
  if (!addr) return false;
  return addr === '::1' || addr.startsWith('127.') || addr.startsWith('::ffff:127.');
}

/** The host of a Host header as a browser writes it (lower case, IPv6 in brackets), or undefined. */
export function hostName(header: string | undefined): string | undefined {
  if (!header) return undefined;
  try {
    const u = new URL(`http://${header}/`);
    // Anything but host[:port] (user info, a path) is not a Host header.
    if (u.username || u.password || u.pathname !== '/' || u.search || u.hash) return undefined;
    return u.hostname;
  } catch {
    return undefined;
  }
}

/** Whether a Host header names the loopback (localhost, 127.0.0.0/8, [::1]) or one of `extra`. */
export function loopbackHost(header: string | undefined, extra: readonly string[] = []): boolean {
  const h = hostName(header);
  if (h === undefined) return false;
  if (h === 'localhost' || h === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(h) || /^\[::ffff:7f[0-9a-f]{2}:[0-9a-f]{1,4}\]$/.test(h)) return true;
  return extra.some((e) => hostName(e) === h);
}

// Hashing first makes the comparison constant-time whatever the lengths.
function sameToken(given: string, expected: string | undefined): boolean {
  if (!expected) return false;
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

/** Who the request is, or an HttpError (401). */
export function authenticate(req: IncomingMessage, auth: ListenerAuth): Access {
  if (auth.kind === 'unix') return 'write';
  const h = req.headers.authorization;
  if (h === undefined) {
    if (auth.loopbackReads && isLoopback(req.socket.remoteAddress)) {
      if (loopbackHost(req.headers.host, auth.hosts)) return 'read';
      throw new HttpError(
        403,
        'forbidden',
        `Host ${JSON.stringify(req.headers.host ?? '')} is not a loopback name: a request without a token must name localhost, 127.x.x.x or [::1] (or a name in api.allowed_hosts)`,
      );
    }
    throw new HttpError(401, 'unauthorized', 'this listener needs "Authorization: Bearer TOKEN"');
  }
  const m = /^Bearer\s+(\S+)\s*$/i.exec(h);
  if (!m) throw new HttpError(401, 'unauthorized', 'expected "Authorization: Bearer TOKEN"');
  if (sameToken(m[1]!, auth.writeToken)) return 'write';
  if (sameToken(m[1]!, auth.readToken)) return 'read';
  throw new HttpError(401, 'unauthorized', 'unknown token');
}

function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) {
    return Promise.reject(new HttpError(413, 'payload too large', `the body may hold at most ${limit} bytes`));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    req.on('data', (c: Buffer) => {
      if (done) return;
      size += c.length;
      if (size > limit) {
        done = true;
        reject(new HttpError(413, 'payload too large', `the body may hold at most ${limit} bytes`));
        req.resume();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (!done) {
        done = true;
        resolve(Buffer.concat(chunks));
      }
    });
    req.on('error', (e) => {
      if (!done) {
        done = true;
        reject(e);
      }
    });
    // The client went before the body's end (Node may not say so with 'error').
    req.on('close', () => {
      if (!done) {
        done = true;
        reject(new HttpError(400, 'incomplete body', 'the connection closed before the body ended'));
      }
    });
  });
}

/** The same handler, seeing every request as a read: it can never write. */
export function readOnlyHandler(h: Handler): Handler {
  return (ctx) => h({ ...ctx, access: 'read' });
}

export function createHttpServer(o: HttpServerOptions): Server {
  const maxBody = o.maxBodyBytes ?? DEFAULT_MAX_BODY;
  return bounded(createServer(), async (req, res) => {
    try {
      const access = authenticate(req, o.auth);
      const url = new URL(req.url ?? '/', 'http://ballast');
      const ctx: RequestContext = { req, res, url, access, port: o.port, body: (limit) => readBody(req, limit ?? maxBody) };
      for (const h of o.handlers) if (await h(ctx)) return;
      throw new HttpError(404, 'not found', `no route for ${req.method} ${url.pathname}`);
    } catch (err) {
      if (err instanceof HttpError) {
        if (err.status === 401) res.setHeader('www-authenticate', 'Bearer realm="ballast"');
        // A body refused for its size is not read on: close rather than drain it.
        if (err.status === 413) res.setHeader('connection', 'close');
        sendError(res, err.status, err.error, err.detail);
        return;
      }
      o.logger.error('api_error', { method: req.method, url: req.url, error: err instanceof Error ? err.message : String(err) });
      sendError(res, 500, 'internal error', err instanceof Error ? err.message : String(err));
    }
  });
}
