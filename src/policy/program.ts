// Named policies -> one compiled program, in MOM's order and with MOM's concatenation.
import { PolicyParseError } from './errors.js';
import { tokenize, type Token } from './lexer.js';
import { parsePolicy, parseTokens } from './parser.js';
import { compileProgram, type CompiledPolicy } from './compiler.js';

export interface PolicySource {
  name: string;
  text: string;
  /** Used in error messages; defaults to name. */
  file?: string;
}

/** MOM's name for the unnamed default policy. */
export const DEFAULT_POLICY_NAME = '50_main_';

/**
 * Compiles named policies as one program, concatenated in the given order (as MOM joins
 * them). Each source is tokenized on its own so errors name the right file. Like MOM, an
 * empty set of policies is the program `0`.
 */
/** Largest policy text accepted, all files together: MOM's and oVirt's sets are a few KiB. */
export const MAX_POLICY_BYTES = 1024 * 1024;

export function compilePolicies(sources: PolicySource[]): CompiledPolicy {
  let total = 0;
  for (const s of sources) {
    total += s.text.length;
    if (total > MAX_POLICY_BYTES) {
      throw new PolicyParseError(
        s.file ?? s.name,
        1,
        1,
        `policies larger than ${MAX_POLICY_BYTES} bytes in all are refused (this one brings the set to ${total}+)`,
      );
    }
  }
  if (sources.map((s) => s.text).join('\n') === '') {
    return compileProgram(parsePolicy('0', sources[0]?.file ?? sources[0]?.name ?? '<policy>'));
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
