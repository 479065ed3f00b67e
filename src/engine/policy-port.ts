// How the engine sees the policy engine (src/policy): one evaluation over Host and Guests,
// returning the controls each entity asked for, its variables, and errors. Kept as a small
// port so the cycle can be tested against any evaluator and stays independent of how
// policies are compiled.
import type { Props, Stats } from '../types.js';

export type Vars = Record<string, unknown>;
export type Controls = Record<string, unknown>;

/** One entity as the policy reads it: properties, sample history (oldest first), variables. */
export interface EntityInput {
  props: Props;
  stats: Stats[];
  vars: Vars;
}

export interface PolicyErrorInfo {
  message: string;
  line?: number;
  col?: number;
  /** Set when the error happened in one guest's part of the policy. */
  guest?: string;
}

export interface PolicyOutput {
  host: { controls: Controls; vars: Vars };
  guests: { name: string; controls: Controls; vars: Vars }[];
  errors: PolicyErrorInfo[];
  /** The evaluation stopped (step budget, error outside any guest): nothing may be applied. */
  aborted: boolean;
}

export interface EvaluateOptions {
  stepBudget?: number;
}

export type EvaluateFn<P> = (policy: P, host: EntityInput, guests: EntityInput[], opts?: EvaluateOptions) => PolicyOutput;
