// The daemon's set of named policies, with MOM's rules (setNamedPolicy, setPolicy,
// getPolicy, getNamedPolicies, resetPolicies): evaluated as one program in name order; a
// change that does not parse is refused and the last good set stays in force.
import { PolicyParseError } from './errors.js';
import type { CompiledPolicy } from './compiler.js';
import { DEFAULT_POLICY_NAME, compilePolicies, orderNamedPolicies } from './program.js';

export class PolicyStore {
  private named: Record<string, string> = {};
  private program: CompiledPolicy = compilePolicies([]);

  /** The compiled program of the current set (MOM's program `0` when empty). */
  get policy(): CompiledPolicy {
    return this.program;
  }

  /** Name -> text of every policy in the set. */
  getNamed(): Record<string, string> {
    return { ...this.named };
  }

  /** The whole set as one text, as MOM's getPolicy returns it (joined by newlines, by name). */
  getText(): string {
    return orderNamedPolicies(this.named)
      .map((s) => s.text)
      .join('\n');
  }

  /**
   * Sets (or with text null, deletes) one named policy; name null is the default policy
   * `50_main_`. Returns null when the new set compiled, else the parse error (set unchanged).
   */
  set(name: string | null, text: string | null): PolicyParseError | null {
    const key = name ?? DEFAULT_POLICY_NAME;
    const next = { ...this.named };
    if (text === null) delete next[key];
    else next[key] = text;
    try {
      this.program = compilePolicies(orderNamedPolicies(next));
    } catch (e) {
      if (e instanceof PolicyParseError) return e;
      throw e;
    }
    this.named = next;
    return null;
  }

  /** MOM's setPolicy: replace the whole set by one unnamed policy. */
  replaceAll(text: string): PolicyParseError | null {
    const saved = this.named;
    this.named = {};
    const err = this.set(null, text);
    if (err) this.named = saved;
    return err;
  }

  clear(): void {
    this.named = {};
    this.program = compilePolicies([]);
  }
}
