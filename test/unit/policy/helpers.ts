// Shared helpers for the policy tests.
import { compilePolicies, evaluate, type EntityState, type EvalOptions, type EvalResult } from '../../../src/policy/index.js';
import { stringifyPyJson } from '../../../src/policy/json.js';

export function guest(name: string, ...stats: Array<Record<string, unknown>>): EntityState {
  return { props: { name, uuid: `uuid-${name}` }, stats, vars: {} };
}

export function host(...stats: Array<Record<string, unknown>>): EntityState {
  return { props: { name: 'host' }, stats, vars: {} };
}

export const HOST = host({ mem_available: 1000, mem_free: 500, ksm_run: 0 });

/** Evaluates `src` with --values on, keeping Python float-ness (rawValues). */
export function run(src: string, h: EntityState = HOST, gs: EntityState[] = [], opts: EvalOptions = {}): EvalResult {
  return evaluate(compilePolicies([{ name: 'test.policy', text: src }]), h, gs, { collectValues: true, rawValues: true, ...opts });
}

/** Python-style text of the last top-level value (`2.0` for floats), or throws on errors. */
export function py(src: string, gs: EntityState[] = []): string {
  const r = run(src, HOST, gs);
  if (r.errors.length) throw new Error(`unexpected errors: ${JSON.stringify(r.errors)}`);
  return stringifyPyJson(r.values![r.values!.length - 1], 0);
}

/** The first error of a run that must fail. */
export function err(src: string, gs: EntityState[] = []) {
  const r = run(src, HOST, gs);
  if (!r.errors.length) throw new Error(`expected an error from ${src}, got ${stringifyPyJson(r.values, 0)}`);
  return r.errors[0]!;
}
