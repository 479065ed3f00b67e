// The JSON API under /api/v1/: read what the daemon sees and does, steer it (named policies,
// pause/resume, log level). The routes are one table (API_ROUTES); a method other than GET
// writes, and write access is checked for it before the route's code runs, so no route can
// forget it. Every body is validated (zod for JSON; a policy is text and is compiled as a
// whole set before anything changes). No route takes a file path.
import { z } from 'zod';
import { PolicyRejectedError, type DaemonPort } from '../port.js';
import { POLICY_NAME_RE } from '../../engine/policy-set.js';
import { HttpError, sendJson, type Handler, type RequestContext } from './server.js';

const PREFIX = '/api/v1/';

const pauseBody = z.strictObject({ reason: z.string().max(200).optional() });
const logLevelBody = z.strictObject({ level: z.enum(['debug', 'info', 'warn', 'error']) });

function needWrite(ctx: RequestContext): void {
  if (ctx.access !== 'write')
    throw new HttpError(403, 'forbidden', 'this request may only read (a read-only token, a tokenless loopback client, or a read-only listener)');
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
    movedByOther: g.movedByOther,
    vmemHoldUntil: g.vmemHoldUntil,
  }));
}

/** A route's answer to one method; `segment` is the raw NAME segment of a NAME route. */
type Answer = (ctx: RequestContext, segment: string) => void | Promise<void>;

export interface Route {
  /** The path under /api/v1/, NAME standing for one path segment (e.g. "policies/NAME"). */
  path: string;
  /** The methods it answers. GET reads; every other method writes (needs write access). */
  methods: Partial<Record<'GET' | 'PUT' | 'POST' | 'DELETE', Answer>>;
}

/** Whether a method changes the daemon: the one rule, applied before any route's code runs. */
export const writes = (method: string): boolean => method !== 'GET';

const ok = (ctx: RequestContext, value: unknown) => sendJson(ctx.res, 200, value);

async function setLogLevel(ctx: RequestContext): Promise<void> {
  const b = await jsonBody(ctx, logLevelBody, false);
  ctx.port.setLogLevel(b.level);
  ok(ctx, { level: b.level });
}

/** Every route of the JSON API. */
export const API_ROUTES: readonly Route[] = [
  { path: 'health', methods: { GET: (ctx) => ok(ctx, ctx.port.health()) } },
  { path: 'host', methods: { GET: (ctx) => ok(ctx, { ...ctx.port.host(), history: ctx.port.hostHistory() }) } },
  { path: 'guests', methods: { GET: (ctx) => ok(ctx, guestSummary(ctx.port)) } },
  {
    path: 'guests/NAME',
    methods: {
      GET: (ctx, segment) => {
        const name = decodedSegment(segment, 'guest name');
        const g = ctx.port.guest(name);
        if (!g) throw new HttpError(404, 'no such guest', name);
        ok(ctx, { ...g, history: ctx.port.guestHistory(name) ?? [] });
      },
    },
  },
  { path: 'actions', methods: { GET: (ctx) => ok(ctx, ctx.port.actions()) } },
  {
    path: 'events',
    methods: {
      GET: (ctx) => {
        const since = Number(ctx.url.searchParams.get('since') ?? 0);
        if (!Number.isInteger(since) || since < 0) throw new HttpError(400, 'bad since', 'expected a sequence number >= 0');
        ok(ctx, ctx.port.events(since));
      },
    },
  },
  { path: 'alerts', methods: { GET: (ctx) => ok(ctx, ctx.port.alerts()) } },
  { path: 'counters', methods: { GET: (ctx) => ok(ctx, ctx.port.counters()) } },
  {
    path: 'policies',
    methods: {
      GET: (ctx) =>
        ok(
          ctx,
          ctx.port.policies().map(({ text: _t, ...info }) => info),
        ),
    },
  },
  {
    path: 'policies/NAME',
    methods: {
      GET: (ctx, segment) => {
        const name = policyName(segment);
        const info = ctx.port.policies().find((x) => x.name === name);
        if (!info) throw new HttpError(404, 'no such policy', name);
        ok(ctx, info);
      },
      PUT: async (ctx, segment) => {
        const name = policyName(segment);
        const text = await policyText(ctx);
        try {
          ok(ctx, ctx.port.setPolicy(name, text));
        } catch (err) {
          if (err instanceof PolicyRejectedError) throw new HttpError(400, 'policy refused', err.message);
          throw err;
        }
      },
      DELETE: (ctx, segment) => {
        const name = policyName(segment);
        const info = ctx.port.policies().find((x) => x.name === name);
        if (info && info.source === 'file') throw new HttpError(409, 'policy is a file', `${name} comes from ${info.path}: delete or edit the file`);
        try {
          if (!ctx.port.deletePolicy(name)) throw new HttpError(404, 'no such policy', name);
        } catch (err) {
          if (err instanceof PolicyRejectedError) throw new HttpError(400, 'policy refused', err.message);
          throw err;
        }
        ctx.res.writeHead(204).end();
      },
    },
  },
  {
    path: 'pause',
    methods: {
      POST: async (ctx) => {
        const b = await jsonBody(ctx, pauseBody, true);
        ctx.port.pause(b.reason ?? 'through the API');
        ok(ctx, ctx.port.health());
      },
    },
  },
  {
    path: 'resume',
    methods: {
      POST: async (ctx) => {
        await ctx.body();
        ctx.port.resume();
        ok(ctx, ctx.port.health());
      },
    },
  },
  { path: 'log-level', methods: { PUT: setLogLevel, POST: setLogLevel } },
];

/** The route a path (split under /api/v1/) names, with its NAME segment. */
function match(parts: string[]): { route: Route; segment: string } | undefined {
  for (const route of API_ROUTES) {
    const want = route.path.split('/');
    if (want.length !== parts.length) continue;
    if (want.every((w, i) => w === 'NAME' || w === parts[i])) return { route, segment: parts[want.indexOf('NAME')] ?? '' };
  }
  return undefined;
}

export function apiHandler(): Handler {
  return async (ctx) => {
    const path = ctx.url.pathname;
    if (!path.startsWith(PREFIX)) return false;
    const m = ctx.req.method ?? 'GET';
    const found = match(path.slice(PREFIX.length).split('/'));
    if (!found) throw new HttpError(404, 'not found', `no route for ${m} ${path}`);
    const allowed = Object.keys(found.route.methods);
    const answer = Object.hasOwn(found.route.methods, m) ? found.route.methods[m as keyof Route['methods']] : undefined;
    if (!answer) {
      ctx.res.setHeader('allow', allowed.join(', '));
      throw new HttpError(405, 'method not allowed', `${m} is not one of ${allowed.join(', ')}`);
    }
    if (writes(m)) needWrite(ctx);
    await answer(ctx, found.segment);
    return true;
  };
}
