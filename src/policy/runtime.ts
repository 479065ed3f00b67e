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

  constructor(
    readonly names: readonly string[],
    readonly budget: number,
    readonly maxDepth: number,
    readonly debug: ((text: string) => void) | undefined,
  ) {
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

  overBudget(pos: Pos): never {
    throw new PolicyRuntimeError(`step budget of ${this.budget} exhausted (runaway policy?)`, pos, true);
  }
}
