// The policy engine's public API: parse, check, compile, evaluate and format MOM policies.
import { PolicyParseError } from './errors.js';
import { parsePolicy as parseText, type Program } from './parser.js';

export { PolicyParseError, PolicyRuntimeError } from './errors.js';
export type { Program, Node, ListNode, AtomNode } from './parser.js';
export type { CompiledPolicy } from './compiler.js';
export type { EntityState } from './entity.js';
export { evaluate, toPlain, DEFAULT_STEP_BUDGET, DEFAULT_MAX_DEPTH } from './evaluate.js';
export type { PolicyError, EvalOptions, EvalResult } from './evaluate.js';
export { formatPolicy } from './format.js';
export { PyFloat } from './values.js';
export { PolicyStore } from './store.js';
export { shippedPolicy, shippedPolicyFile, shippedPolicyNames } from './shipped.js';
export { compilePolicies, orderNamedPolicies, DEFAULT_POLICY_NAME, type PolicySource } from './program.js';

export function parsePolicy(text: string, file = '<policy>'): Program {
  return parseText(text, file);
}

/** Every problem that refuses the policy (the first one: parsing stops there). [] when fine. */
export function checkPolicy(text: string, file = '<policy>'): PolicyParseError[] {
  try {
    parseText(text, file);
    return [];
  } catch (e) {
    if (e instanceof PolicyParseError) return [e];
    throw e;
  }
}
