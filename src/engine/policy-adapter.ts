// The engine's policy port bound to src/policy: compile a directory's files as one program,
// evaluate with the engine's entity inputs (the same shape src/policy takes, read in place).
import { compilePolicies, evaluate, type CompiledPolicy } from '../policy/index.js';
import type { CompileFn } from './policy-dir.js';
import type { EvaluateFn } from './policy-port.js';

export type { CompiledPolicy };

export const compilePolicyFiles: CompileFn<CompiledPolicy> = (files) => compilePolicies(files.map((f) => ({ name: f.name, text: f.text, file: f.path })));

export const evaluatePolicy: EvaluateFn<CompiledPolicy> = (policy, host, guests, opts) => evaluate(policy, host, guests, { stepBudget: opts?.stepBudget });

/** Compile policy text given inline (tests, demo fallbacks). */
export function compilePolicyText(text: string, name = '50_main_'): CompiledPolicy {
  return compilePolicies([{ name, text }]);
}
