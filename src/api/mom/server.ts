// MOM's RPC interface (mom/MOMFuncs.py) over XML-RPC, so that oVirt's vdsm, which talks to
// `mom-vdsm` on a unix socket, can talk to ballast instead: the same verbs and result shapes.
// Where MOM's behaviour is unsafe ballast keeps the safe one and says so in docs/ovirt.md: a
// policy that does not compile leaves the running set untouched (MOM's setPolicy would leave
// no policy at all) and answers False, as MOM does.
//
// Who may call: on the unix socket (what vdsm uses), whoever may open it (mode 0600, handed to
// vdsm with mom_rpc.socket_owner). On TCP (mom_rpc.port, 127.0.0.1 only) anything on the host
// can connect, a web browser included, and XML-RPC has no authentication (MOM's neither); so a
// request on TCP must look like a program's, not a page's: Content-Type text/xml (a page can
// send that only after a CORS preflight, which is answered 501 without CORS headers), no
// Origin and no Sec-Fetch-* header (browsers add them to every such request; Python's
// xmlrpc.client never does), and a Host naming the loopback (a page on a rebound name sends
// its own). Bodies are at most MAX_BODY, refused unread beyond; requests are decoded and
// answered one at a time, one per turn of the event loop, so that a heavy body cannot keep
// the other listeners waiting.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Logger, LogLevel } from '../../log/logger.js';
import { chownSocket, closeServer, listenTcp, listenUnix } from '../http/listen.js';
import { bounded } from '../http/limits.js';
import { loopbackHost } from '../http/server.js';
import { PolicyRejectedError, type DaemonPort } from '../port.js';
import { POLICY_NAME_RE } from '../../engine/policy-set.js';
import { decodeCall, encodeFault, encodeResponse, RpcDecodeError, RpcFault, type RpcValue } from './xmlrpc.js';

/**
 * Policies are sent whole; vdsm's calls are a few KiB (the largest policy in its mom.d is about
 * 5 KiB). Decoding is slow per byte (fast-xml-parser: 64 KiB of character references or of
 * <i4> values take some 20-70 ms once warm, 256 KiB 130-340 ms), so the bound is what a
 * policy needs with room, no more.
 */
export const MAX_BODY = 64 * 1024;

/** Stats without the null fields (MOM's server has no nil). */
function present(stats: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(stats)) if (v !== null && v !== undefined) out[k] = v;
  return out;
}

/** MOM's verbosity: a logging level name or number (mom/LogUtils.py). */
export function verbosityLevel(v: RpcValue): LogLevel {
  if (typeof v === 'number') return v <= 10 ? 'debug' : v <= 20 ? 'info' : v <= 30 ? 'warn' : 'error';
  if (typeof v === 'string') {
    const s = v.toLowerCase();
    if (s === 'debug') return 'debug';
    if (s === 'info') return 'info';
    if (s === 'warn' || s === 'warning') return 'warn';
    if (s === 'error' || s === 'critical') return 'error';
  }
  throw new RpcFault(1, `<class 'ValueError'>:unknown verbosity ${JSON.stringify(v)}`);
}

type Verb = { args: string[]; run: (...a: RpcValue[]) => RpcValue | undefined };

function str(v: RpcValue, method: string, arg: string): string {
  if (typeof v !== 'string') throw new RpcFault(1, `<class 'TypeError'>:${method}() argument '${arg}' must be a string`);
  return v;
}

/** MOM's exported functions over a DaemonPort. */
export function momFunctions(port: DaemonPort, log: Logger): Record<string, Verb> {
  const compiled = (what: string, f: () => void): boolean => {
    try {
      f();
      return true;
    } catch (err) {
      if (err instanceof PolicyRejectedError) {
        log.warn('mom_policy_refused', { call: what, error: err.message, reason: 'the running policies stay in force' });
        return false;
      }
      throw err;
    }
  };
  const verbs: Record<string, Verb> = {
    ping: { args: [], run: () => true },
    getStatistics: {
      args: [],
      run: () => {
        const guests: Record<string, RpcValue> = {};
        for (const g of port.guests()) guests[g.name] = present(g.stats) as RpcValue;
        return { host: present(port.host().stats) as RpcValue, guests };
      },
    },
    getActiveGuests: { args: [], run: () => port.guests().map((g) => g.name) },
    setPolicy: {
      args: ['policy'],
      run: (p) => compiled('setPolicy', () => port.replacePolicies(str(p!, 'setPolicy', 'policy'))),
    },
    setNamedPolicy: {
      args: ['name', 'policy'],
      run: (n, p) => {
        const name = str(n!, 'setNamedPolicy', 'name');
        if (!POLICY_NAME_RE.test(name)) {
          log.warn('mom_policy_refused', {
            call: 'setNamedPolicy',
            name,
            error: 'a policy name is letters, digits, "_", "-" and "." (not first), at most 100',
          });
          return false;
        }
        // MOM deletes a named policy when given None; XML-RPC without nil sends '' instead, which MOM keeps as an empty policy.
        if (p === null) return compiled('setNamedPolicy', () => port.deletePolicy(name));
        return compiled('setNamedPolicy', () => port.setPolicy(name, str(p!, 'setNamedPolicy', 'policy')));
      },
    },
    getPolicy: {
      args: [],
      run: () =>
        port
          .policies()
          .map((p) => p.text)
          .join('\n'),
    },
    getNamedPolicies: {
      args: [],
      run: () => Object.fromEntries(port.policies().map((p) => [p.name, p.text])),
    },
    resetPolicies: {
      args: [],
      run: () => {
        port.resetPolicies();
        return true;
      },
    },
    setVerbosity: {
      args: ['verbosity'],
      run: (v) => {
        port.setLogLevel(verbosityLevel(v!));
        return true;
      },
    },
  };
  verbs['system.listMethods'] = { args: [], run: () => Object.keys(verbs).sort() };
  return verbs;
}

/** The response body for one request body. */
export function answer(verbs: Record<string, Verb>, xml: string, log: Logger): string {
  let call;
  try {
    call = decodeCall(xml);
  } catch (err) {
    if (err instanceof RpcDecodeError) return encodeFault(new RpcFault(1, `<class 'xml.parsers.expat.ExpatError'>:${err.message}`));
    throw err;
  }
  const verb = Object.hasOwn(verbs, call.method) ? verbs[call.method] : undefined;
  if (!verb) return encodeFault(new RpcFault(1, `<class 'Exception'>:method "${call.method}" is not supported`));
  if (call.params.length !== verb.args.length) {
    return encodeFault(
      new RpcFault(
        1,
        `<class 'TypeError'>:${call.method}() takes ${verb.args.length} positional argument(s) (${verb.args.join(', ') || 'none'}) but ${call.params.length} were given`,
      ),
    );
  }
  try {
    log.debug('mom_call', { method: call.method });
    return encodeResponse(verb.run(...call.params) ?? true);
  } catch (err) {
    if (err instanceof RpcFault) return encodeFault(err);
    log.error('mom_call_failed', { method: call.method, error: (err as Error).message });
    return encodeFault(new RpcFault(1, `<class 'Exception'>:${(err as Error).message}`));
  }
}

/** The body; null (and the rest left unread) once it is over MAX_BODY; undefined when the client went first. */
function readBody(req: IncomingMessage): Promise<Buffer | null | undefined> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        req.off('data', onData);
        req.pause();
        resolve(null);
      } else chunks.push(c);
    };
    req.on('data', onData);
    req.on('end', () => resolve(Buffer.concat(chunks)));
    // A promise already settled ignores these.
    req.on('error', () => resolve(undefined));
    req.on('close', () => resolve(undefined));
  });
}

/** Runs jobs one at a time, one per turn of the event loop (timers and I/O run between two). */
function oneByOne(): <T>(job: () => T) => Promise<T> {
  const queue: (() => void)[] = [];
  let scheduled = false;
  const drain = () => {
    queue.shift()?.();
    if (queue.length > 0) setImmediate(drain);
    else scheduled = false;
  };
  return (job) =>
    new Promise((resolve, reject) => {
      queue.push(() => {
        try {
          resolve(job());
        } catch (err) {
          reject(err);
        }
      });
      if (!scheduled) {
        scheduled = true;
        setImmediate(drain);
      }
    });
}

/** Why a request on TCP looks like a web page's, or undefined when it looks like a program's. */
export function browserish(req: IncomingMessage): { status: number; why: string } | undefined {
  if (req.headers.origin !== undefined) return { status: 403, why: 'a request with an Origin header (a web page) is refused' };
  if (Object.keys(req.headers).some((h) => h.startsWith('sec-fetch-')))
    return { status: 403, why: 'a request with Sec-Fetch-* headers (a web browser) is refused' };
  if (!loopbackHost(req.headers.host)) return { status: 403, why: 'the Host header must name the loopback (localhost, 127.x.x.x, [::1])' };
  if (!/^(text|application)\/xml\s*(;|$)/i.test(req.headers['content-type'] ?? '')) return { status: 415, why: 'XML-RPC: send Content-Type: text/xml' };
  return undefined;
}

export function createMomServer(port: DaemonPort, log: Logger, o: { tcp?: boolean } = {}): Server {
  const verbs = momFunctions(port, log);
  const serial = oneByOne();
  let refused = 0;
  let lastWarned = Number.NEGATIVE_INFINITY;
  const refuse = (res: ServerResponse, status: number, text: string) =>
    res.writeHead(status, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(text) + 1, connection: 'close' }).end(`${text}\n`);
  return bounded(createServer(), async (req, res) => {
    if (req.method !== 'POST') {
      refuse(res, 501, 'XML-RPC: POST only');
      return;
    }
    if (o.tcp) {
      const no = browserish(req);
      if (no) {
        // A page can send thousands: the first, then at most one line a minute with the count.
        refused++;
        if (Date.now() - lastWarned >= 60_000) {
          log.warn('mom_rpc_refused', { reason: no.why, origin: req.headers.origin, host: req.headers.host, refused });
          lastWarned = Date.now();
          refused = 0;
        }
        refuse(res, no.status, no.why);
        return;
      }
    }
    if (Number(req.headers['content-length'] ?? 0) > MAX_BODY) {
      refuse(res, 413, `request too large (at most ${MAX_BODY} bytes)`);
      return;
    }
    try {
      const body = await readBody(req);
      if (body === undefined) return;
      if (body === null) {
        refuse(res, 413, `request too large (at most ${MAX_BODY} bytes)`);
        return;
      }
      // A client that is gone by its turn (e.g. closed for flooding) is not answered.
      const out = await serial(() => (req.socket.destroyed ? undefined : answer(verbs, body.toString('utf8'), log)));
      if (out === undefined) return;
      res.writeHead(200, { 'content-type': 'text/xml', 'content-length': Buffer.byteLength(out) }).end(out);
    } catch (err) {
      log.error('mom_rpc_error', { error: (err as Error).message });
      if (!res.headersSent) refuse(res, 500, 'internal error');
    }
  });
}

/** MOM's RPC on a unix socket (mode 0600, as MOM's) or on 127.0.0.1:port. */
export async function startMomRpc(
  port: DaemonPort,
  where: { socket?: string; owner?: string; port?: number },
  log: Logger,
): Promise<{ url: string; close(): Promise<void> }> {
  const server = createMomServer(port, log, { tcp: !where.socket });
  if (where.socket) {
    await listenUnix(server, where.socket);
    if (where.owner) {
      try {
        chownSocket(where.socket, where.owner);
      } catch (err) {
        await closeServer(server, where.socket);
        throw new Error(`mom_rpc.socket_owner "${where.owner}": ${(err as Error).message}`);
      }
    }
    return { url: `unix:${where.socket}`, close: () => closeServer(server, where.socket) };
  }
  if (where.port === undefined) throw new Error('mom_rpc: neither socket nor port');
  const at = await listenTcp(server, `127.0.0.1:${where.port}`, 'mom_rpc.port');
  return { url: `http://${at}/RPC2`, close: () => closeServer(server) };
}
