// The JSON API under /api/v1/: read what the daemon sees and does, steer it (named policies,
// pause/resume, log level). Every body is validated (zod for JSON; a policy is text and is
// compiled as a whole set before anything changes). No route takes a file path.
import { z } from 'zod';
import { PolicyRejectedError, type DaemonPort } from '../port.js';
import { POLICY_NAME_RE } from '../../engine/policy-set.js';
import { HttpError, sendJson, type Handler, type RequestContext } from './server.js';

const PREFIX = '/api/v1/';

const pauseBody = z.strictObject({ reason: z.string().max(200).optional() });
const logLevelBody = z.strictObject({ level: z.enum(['debug', 'info', 'warn', 'error']) });

function needWrite(ctx: RequestContext): void {
  if (ctx.access !== 'write') throw new HttpError(403, 'forbidden', 'this token may only read');
}

/** A path segment, percent-decoded; bad encoding is the client's error (400), not ours. */
function decodedSegment(raw: string, what: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new HttpError(400, `bad ${what}`, 'not valid percent-encoding');
  }
}

function policyName(raw: string): string {
  const name = decodedSegment(raw, 'policy name');
  if (!POLICY_NAME_RE.test(name))
    throw new HttpError(
      400,
      'bad policy name',
      `expected letters, digits, "_", "-" and "." (not first), at most 100: got ${JSON.stringify(name.slice(0, 120))}`,
    );
  return name;
}

/** A JSON body (optional when empty and `emptyOk`), validated by `schema`. */
async function jsonBody<T>(ctx: RequestContext, schema: z.ZodType<T>, emptyOk: boolean): Promise<T> {
  const raw = await ctx.body();
  if (raw.length === 0 && emptyOk) return schema.parse({});
  const type = ctx.req.headers['content-type'] ?? '';
  if (raw.length > 0 && !/^application\/json\b/i.test(type)) throw new HttpError(415, 'unsupported media type', 'send the body as application/json');
  let value: unknown;
  try {
    value = JSON.parse(raw.toString('utf8'));
  } catch (err) {
    throw new HttpError(400, 'malformed JSON', (err as Error).message);
  }
  const r = schema.safeParse(value);
  if (!r.success)
    throw new HttpError(
      400,
      'invalid body',
      r.error.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`),
    );
  return r.data;
}

/** The policy text of a PUT: text/plain (or no type), UTF-8. */
async function policyText(ctx: RequestContext): Promise<string> {
  const type = ctx.req.headers['content-type'];
  if (type !== undefined && !/^(text\/plain|application\/octet-stream|application\/x-www-form-urlencoded)\b/i.test(type)) {
    // curl -d sends x-www-form-urlencoded; the body is taken as it is.
    throw new HttpError(415, 'unsupported media type', 'send the policy as text/plain');
  }
  const raw = await ctx.body();
  const text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });
  try {
    return text.decode(raw);
  } catch {
    throw new HttpError(400, 'policy is not UTF-8 text');
  }
}

function guestSummary(port: DaemonPort) {
  return port.guests().map((g) => ({
    id: g.id,
    name: g.name,
    props: g.props,
    stats: g.stats,
    vars: g.vars,
    stale: g.stale,
    holdUntil: g.holdUntil,
    lastTarget: g.lastTarget,
    balloonReturn: g.balloonReturn,
  }));
}

function methodNotAllowed(method: string | undefined, allowed: string[]): never {
  throw new HttpError(405, 'method not allowed', `${method} is not one of ${allowed.join(', ')}`);
}

export function apiHandler(): Handler {
  return async (ctx) => {
    const path = ctx.url.pathname;
    if (!path.startsWith(PREFIX)) return false;
    const parts = path.slice(PREFIX.length).split('/');
    const m = ctx.req.method ?? 'GET';
    const p = ctx.port;
    const only = (allowed: string[]) => {
      if (!allowed.includes(m)) methodNotAllowed(m, allowed);
    };
    const route = parts[0] ?? '';
    if (parts.length === 1) {
      switch (route) {
        case 'health':
          only(['GET']);
          sendJson(ctx.res, 200, p.health());
          return true;
        case 'host':
          only(['GET']);
          sendJson(ctx.res, 200, { ...p.host(), history: p.hostHistory() });
          return true;
        case 'guests':
          only(['GET']);
          sendJson(ctx.res, 200, guestSummary(p));
          return true;
        case 'actions':
          only(['GET']);
          sendJson(ctx.res, 200, p.actions());
          return true;
        case 'events': {
          only(['GET']);
          const since = Number(ctx.url.searchParams.get('since') ?? 0);
          if (!Number.isInteger(since) || since < 0) throw new HttpError(400, 'bad since', 'expected a sequence number >= 0');
          sendJson(ctx.res, 200, p.events(since));
          return true;
        }
        case 'alerts':
          only(['GET']);
          sendJson(ctx.res, 200, p.alerts());
          return true;
        case 'counters':
          only(['GET']);
          sendJson(ctx.res, 200, p.counters());
          return true;
        case 'policies':
          only(['GET']);
          sendJson(
            ctx.res,
            200,
            p.policies().map(({ text: _t, ...info }) => info),
          );
          return true;
        case 'pause': {
          only(['POST']);
          needWrite(ctx);
          const b = await jsonBody(ctx, pauseBody, true);
          p.pause(b.reason ?? 'through the API');
          sendJson(ctx.res, 200, p.health());
          return true;
        }
        case 'resume':
          only(['POST']);
          needWrite(ctx);
          await ctx.body();
          p.resume();
          sendJson(ctx.res, 200, p.health());
          return true;
        case 'log-level': {
          only(['PUT', 'POST']);
          needWrite(ctx);
          const b = await jsonBody(ctx, logLevelBody, false);
          p.setLogLevel(b.level);
          sendJson(ctx.res, 200, { level: b.level });
          return true;
        }
      }
    }
    if (parts.length === 2 && route === 'guests') {
      only(['GET']);
      const name = decodedSegment(parts[1]!, 'guest name');
      const g = p.guest(name);
      if (!g) throw new HttpError(404, 'no such guest', name);
      sendJson(ctx.res, 200, { ...g, history: p.guestHistory(name) ?? [] });
      return true;
    }
    if (parts.length === 2 && route === 'policies') {
      only(['GET', 'PUT', 'DELETE']);
      const name = policyName(parts[1]!);
      if (m === 'GET') {
        const info = p.policies().find((x) => x.name === name);
        if (!info) throw new HttpError(404, 'no such policy', name);
        sendJson(ctx.res, 200, info);
        return true;
      }
      needWrite(ctx);
      if (m === 'PUT') {
        const text = await policyText(ctx);
        try {
          const info = p.setPolicy(name, text);
          sendJson(ctx.res, 200, info);
        } catch (err) {
          if (err instanceof PolicyRejectedError) throw new HttpError(400, 'policy refused', err.message);
          throw err;
        }
        return true;
      }
      const info = p.policies().find((x) => x.name === name);
      if (info && info.source === 'file') throw new HttpError(409, 'policy is a file', `${name} comes from ${info.path}: delete or edit the file`);
      try {
        if (!p.deletePolicy(name)) throw new HttpError(404, 'no such policy', name);
      } catch (err) {
        if (err instanceof PolicyRejectedError) throw new HttpError(400, 'policy refused', err.message);
        throw err;
      }
      ctx.res.writeHead(204).end();
      return true;
    }
    throw new HttpError(404, 'not found', `no route for ${m} ${path}`);
  };
}
