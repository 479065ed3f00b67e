// MOM's RPC interface (mom/MOMFuncs.py) over XML-RPC, so that oVirt's vdsm, which talks to
// `mom-vdsm` on a unix socket, can talk to ballast instead: the same verbs and result shapes.
// Where MOM's behaviour is unsafe ballast keeps the safe one and says so in docs/ovirt.md: a
// policy that does not compile leaves the running set untouched (MOM's setPolicy would leave
// no policy at all) and answers False, as MOM does.
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { Logger, LogLevel } from '../../log/logger.js';
import { chownSocket, closeServer, listenTcp, listenUnix } from '../http/listen.js';
import { PolicyRejectedError, type DaemonPort } from '../port.js';
import { POLICY_NAME_RE } from '../../engine/policy-set.js';
import { decodeCall, encodeFault, encodeResponse, RpcDecodeError, RpcFault, type RpcValue } from './xmlrpc.js';

/** Policies are sent whole; vdsm's largest is a few KiB. */
const MAX_BODY = 4 * 1024 * 1024;

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

function readBody(req: IncomingMessage): Promise<string | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) over = true;
      else chunks.push(c);
    });
    req.on('end', () => resolve(over ? null : Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

export function createMomServer(port: DaemonPort, log: Logger): Server {
  const verbs = momFunctions(port, log);
  const server = createServer(async (req, res) => {
    if (req.method !== 'POST') {
      res.writeHead(501, { 'content-type': 'text/plain' }).end('XML-RPC: POST only\n');
      return;
    }
    if (Number(req.headers['content-length'] ?? 0) > MAX_BODY) {
      res.writeHead(413, { 'content-type': 'text/plain', connection: 'close' }).end('request too large\n');
      req.destroy();
      return;
    }
    try {
      const body = await readBody(req);
      if (body === null) {
        res.writeHead(413, { 'content-type': 'text/plain' }).end('request too large\n');
        return;
      }
      const out = answer(verbs, body, log);
      res.writeHead(200, { 'content-type': 'text/xml', 'content-length': Buffer.byteLength(out) }).end(out);
    } catch (err) {
      log.error('mom_rpc_error', { error: (err as Error).message });
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' }).end('internal error\n');
    }
  });
  server.requestTimeout = 30_000;
  server.headersTimeout = 10_000;
  return server;
}

/** MOM's RPC on a unix socket (mode 0600, as MOM's) or on 127.0.0.1:port. */
export async function startMomRpc(
  port: DaemonPort,
  where: { socket?: string; owner?: string; port?: number },
  log: Logger,
): Promise<{ url: string; close(): Promise<void> }> {
  const server = createMomServer(port, log);
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
