// One evaluation of a compiled policy over a host and its guests: a fresh evaluator each
// time (only entity variables persist, through the caller), errors with line:col, and
// per-guest isolation of runtime errors inside `(with Guests guest body)`.
import { withPayer } from './meter.js';
import type { Pos } from './errors.js';
import { Entity, type EntityState } from './entity.js';
import { ABS, debugFunc, toPolicyError, type CompiledPolicy } from './compiler.js';
import { Runtime } from './runtime.js';
import { DictValues, PyFloat, PyFunc, PyEntity, type Value } from './values.js';

export interface PolicyError {
  message: string;
  line: number;
  col: number;
  guest?: string;
  file?: string;
}

export interface EvalOptions {
  /** Steps (forms evaluated, loop iterations) allowed per evaluation. Default 10,000,000. */
  stepBudget?: number;
  /** Deepest nesting of user-function calls. Default 400. */
  maxDepth?: number;
  /** Wall-clock milliseconds an evaluation may run before it is stopped (fatal). Default 2,000. */
  timeLimitMs?: number;
  /** Return the value of each top-level expression in `values`. */
  collectValues?: boolean;
  /** Receives the text of each `(debug ...)`. */
  debug?: (text: string) => void;
  /**
   * Keep Python float-ness in returned values: integral floats come back as PyFloat boxes
   * (2.0 stays distinct from 2). Default false: plain JS numbers everywhere.
   */
  rawValues?: boolean;
}

export interface EvalResult {
  host: { controls: Record<string, unknown>; vars: Record<string, unknown> };
  guests: Array<{ name: string; controls: Record<string, unknown>; vars: Record<string, unknown> }>;
  errors: PolicyError[];
  /** True when an error outside any single guest's part stopped evaluation (MOM would apply nothing). */
  aborted: boolean;
  values?: unknown[];
}

export const DEFAULT_STEP_BUDGET = 10_000_000;
export const DEFAULT_MAX_DEPTH = 400;
/** Wall-clock limit of one evaluation: 1,000 guests take a few ms; a policy still running after this is a runaway. */
export const DEFAULT_TIME_LIMIT_MS = 2000;
/** Guest errors listed per evaluation; further ones are summed up in one last entry. */
export const MAX_ERRORS = 100;

/** Converts a policy value for callers that want plain JS data. */
export function toPlain(v: unknown): unknown {
  if (v instanceof PyFloat) return v.v;
  if (Array.isArray(v)) return v.map(toPlain);
  if (v instanceof DictValues) return v.items.map(toPlain);
  if (v instanceof PyEntity) return v.describe();
  if (v instanceof PyFunc) return `<function ${v.name}>`;
  return v;
}

function plainRecord(r: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k in r) out[k] = toPlain(r[k]);
  return out;
}

function errorAt(message: string, pos: Pos | undefined, guest?: string): PolicyError {
  const e: PolicyError = { message, line: pos?.line ?? 0, col: pos?.col ?? 0 };
  if (guest !== undefined) e.guest = guest;
  if (pos) e.file = pos.file;
  return e;
}

export function evaluate(policy: CompiledPolicy, host: EntityState, guests: EntityState[], opts: EvalOptions = {}): EvalResult {
  const deadline = performance.now() + (opts.timeLimitMs ?? DEFAULT_TIME_LIMIT_MS);
  const rt = new Runtime(policy.names, opts.stepBudget ?? DEFAULT_STEP_BUDGET, opts.maxDepth ?? DEFAULT_MAX_DEPTH, opts.debug, deadline);
  return withPayer(rt, () => run(policy, rt, host, guests, opts));
}

function run(policy: CompiledPolicy, rt: Runtime, host: EntityState, guests: EntityState[], opts: EvalOptions): EvalResult {
  const hostE = new Entity('host', host);
  const guestEs = guests.map((g) => new Entity('guest', g));
  // Ids 0..3 are the prebound names, in compileProgram's order.
  rt.define(0, hostE);
  rt.define(1, new DictValues(guestEs));
  rt.define(2, ABS);
  rt.define(3, debugFunc(opts.debug));

  const errors: PolicyError[] = [];
  let suppressed = 0;
  let lastSuppressed: PolicyError | undefined;
  rt.onGuestError = (g, err) => {
    const e = errorAt(err.message, err.pos, g.name);
    if (errors.length < MAX_ERRORS) errors.push(e);
    else {
      suppressed++;
      lastSuppressed = e;
    }
  };
  const flushSuppressed = () => {
    if (suppressed > 0 && lastSuppressed) {
      errors.push({ ...lastSuppressed, message: `${suppressed} more error(s) not listed; the last: ${lastSuppressed.message}` });
    }
    suppressed = 0;
  };
  const values: unknown[] | undefined = opts.collectValues ? [] : undefined;
  const conv = opts.rawValues ? (v: unknown) => v : toPlain;
  let aborted = false;
  const exprs = policy.exprs;
  for (let i = 0; i < exprs.length; i++) {
    try {
      const v: Value = exprs[i]!(rt);
      if (values) values.push(conv(v));
    } catch (e) {
      const err = toPolicyError(e, rt, policy.positions[i]!);
      flushSuppressed();
      errors.push(errorAt(err.message, err.pos));
      aborted = true;
      break;
    }
  }

  flushSuppressed();

  const raw = !!opts.rawValues;
  const controlsOf = (e: Entity): Record<string, unknown> => {
    if (aborted || e.failed || e.controls === null) return {};
    return raw ? e.controls : plainRecord(e.controls);
  };
  const varsOf = (e: Entity): Record<string, unknown> => {
    if (aborted || e.vars === null) return e.state.vars ?? {};
    return raw ? e.vars : plainRecord(e.vars);
  };
  const result: EvalResult = {
    host: { controls: controlsOf(hostE), vars: varsOf(hostE) },
    guests: guestEs.map((g) => ({ name: g.name, controls: controlsOf(g), vars: varsOf(g) })),
    errors,
    aborted,
  };
  if (values) result.values = values;
  return result;
}
