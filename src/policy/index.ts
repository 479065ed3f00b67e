// The policy engine's public API: parse, check, compile, evaluate and format MOM policies.
import { PolicyParseError } from './errors.js';
import { tokenize, type Token } from './lexer.js';
import { parsePolicy as parseText, parseTokens, type Program } from './parser.js';
import { compileProgram, type CompiledPolicy } from './compiler.js';

export { PolicyParseError, PolicyRuntimeError } from './errors.js';
export type { Program, Node, ListNode, AtomNode } from './parser.js';
export type { CompiledPolicy } from './compiler.js';
export type { EntityState } from './entity.js';
export { evaluate, toPlain, DEFAULT_STEP_BUDGET, DEFAULT_MAX_DEPTH } from './evaluate.js';
export type { PolicyError, EvalOptions, EvalResult } from './evaluate.js';
export { formatPolicy } from './format.js';
export { PyFloat } from './values.js';

export interface PolicySource {
  name: string;
  text: string;
  /** Used in error messages; defaults to name. */
  file?: string;
}

/** MOM's name for the unnamed default policy. */
export const DEFAULT_POLICY_NAME = '50_main_';

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

/**
 * Compiles named policies as one program, concatenated in the given order (as MOM joins
 * them). Each source is tokenized on its own so errors name the right file. Like MOM, an
 * empty set of policies is the program `0`.
 */
export function compilePolicies(sources: PolicySource[]): CompiledPolicy {
  if (sources.map((s) => s.text).join('\n') === '') {
    return compileProgram(parseText('0', sources[0]?.file ?? sources[0]?.name ?? '<policy>'));
  }
  const tokens: Token[] = [];
  for (const s of sources) for (const t of tokenize(s.text, s.file ?? s.name)) tokens.push(t);
  return compileProgram(parseTokens(tokens));
}

/** MOM's order of named policies: by name (code point order); the unnamed one is 50_main_. */
export function orderNamedPolicies(named: Record<string, string>): PolicySource[] {
  const names = Object.keys(named).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return names.map((name) => ({ name, text: named[name]!, file: name }));
}
