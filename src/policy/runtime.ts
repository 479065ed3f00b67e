// Per-evaluation state: variables with MOM's dynamic scoping, user functions, step and
// depth accounting. Variables use shallow binding: each name (interned to an index at
// compile time) has one current value slot; entering a scope records what it shadows so
// leaving restores it. Lookup is one array read, and the semantics are MOM's scope stack:
// the innermost binding wins, `defvar` defines in the innermost scope unless already there,
// `set` changes the nearest existing binding.
import { PolicyRuntimeError, type Pos } from './errors.js';
import type { Value } from './values.js';
import type { Entity } from './entity.js';

export type Fn = (rt: Runtime) => Value;

export interface UserFn {
  name: string;
  /** Parameter name ids; or a message when the parameter list is malformed (MOM fails at call). */
  params: number[] | string;
  body: Fn;
}

/** Steps between two looks at the clock (well under a millisecond of work). */
const CHECK_EVERY = 4096;
/** All the strings and lists one evaluation may build, in elements (tens of MB at most). */
export const DEFAULT_MAX_ALLOC = 1 << 22;

export class Runtime {
  /** Current value per name id; undefined = unbound. */
  readonly vals: Array<Value | undefined>;
  /** Scope depth at which each name's current binding was made. */
  readonly owner: Int32Array;
  depth = 0;
  /** Undo log of shadowed bindings: triples (id, old value, old owner). */
  readonly undo: unknown[] = [];
  readonly marks: number[] = [];
  readonly funcs: Array<UserFn | undefined>;
  steps = 0;
  callDepth = 0;
  /** Position of the latest user-function call (reported if the JS stack runs out). */
  lastCall: Pos | undefined;
  /** Called when one guest's part of a `with` fails (the guest is an Entity). */
  onGuestError: ((guest: Entity, err: PolicyRuntimeError) => void) | undefined;

  /**
   * The step count at which to look up again: the compiled code compares `steps` with it on
   * every step (`if (++rt.steps > rt.budget) rt.overBudget(pos)`); overBudget then checks the
   * real limits (steps, wall clock) and moves it on. The clock is read every CHECK_EVERY steps.
   */
  budget: number;
  /** Elements allocated by string and list operations in this evaluation. */
  allocated = 0;

  constructor(
    readonly names: readonly string[],
    readonly maxSteps: number,
    readonly maxDepth: number,
    readonly debug: ((text: string) => void) | undefined,
    /** performance.now() after which the evaluation stops (ms); Infinity: no deadline. */
    readonly deadline = Infinity,
    /** Elements the evaluation may allocate in all (strings, lists). */
    readonly maxAlloc = DEFAULT_MAX_ALLOC,
  ) {
    this.budget = Math.min(maxSteps, CHECK_EVERY);
    this.vals = new Array(names.length);
    this.owner = new Int32Array(names.length).fill(-1);
    this.funcs = new Array(names.length);
  }

  enter(): void {
    this.marks.push(this.undo.length);
    this.depth++;
  }

  leave(): void {
    const mark = this.marks.pop()!;
    const u = this.undo;
    while (u.length > mark) {
      const own = u.pop() as number;
      const old = u.pop() as Value | undefined;
      const id = u.pop() as number;
      this.vals[id] = old;
      this.owner[id] = own;
    }
    this.depth--;
  }

  /** Leaves scopes until `marksLen` remain (after an error inside them). */
  unwindTo(marksLen: number): void {
    while (this.marks.length > marksLen) this.leave();
  }

  /** `defvar` / let / parameter binding: define in the innermost scope unless already there. */
  define(id: number, v: Value): Value {
    if (this.owner[id] === this.depth) return this.vals[id] as Value;
    if (this.depth > 0) this.undo.push(id, this.vals[id], this.owner[id]);
    this.vals[id] = v;
    this.owner[id] = this.depth;
    return v;
  }

  /** `set`: assign the nearest existing binding. */
  set(id: number, v: Value, pos: Pos): Value {
    if (this.vals[id] === undefined) throw new PolicyRuntimeError(`undefined symbol ${this.names[id]}`, pos);
    this.vals[id] = v;
    return v;
  }

  step(pos: Pos, n = 1): void {
    this.steps += n;
    if (this.steps > this.budget) this.overBudget(pos);
  }

  /** Past the checkpoint: stop if a real limit is reached, else set the next checkpoint. */
  overBudget(pos: Pos): void {
    if (this.steps > this.maxSteps) {
      throw new PolicyRuntimeError(`step budget of ${this.maxSteps} exhausted (runaway policy?)`, pos, true);
    }
    if (this.deadline !== Infinity && performance.now() > this.deadline) {
      throw new PolicyRuntimeError('evaluation deadline passed (runaway policy?)', pos, true);
    }
    this.budget = Math.min(this.maxSteps, this.steps + CHECK_EVERY);
  }

  /** Payer of meter.ts: long values cost a step per 16 elements (about what a step costs in time). */
  touch(elements: number, pos: Pos): void {
    this.step(pos, Math.ceil(elements / 16));
  }

  alloc(elements: number, pos: Pos): void {
    this.allocated += elements;
    if (this.allocated > this.maxAlloc) {
      throw new PolicyRuntimeError(`the policy allocated more than ${this.maxAlloc} string/list elements in one evaluation`, pos, true);
    }
    this.touch(elements, pos);
  }
}
