// Compiles parsed expressions to closures once per policy load. Every structural problem a
// form can have (wrong arity, a number where a symbol must be, ...) is found here but raised
// only when the form is evaluated, with the form's line:col: MOM raises them at evaluation
// too, so a malformed form in a function that never runs is harmless under both.
import { PolicyRuntimeError, type Pos } from './errors.js';
import type { AtomNode, ListNode, Node, Program } from './parser.js';
import { ENTITY_METHODS, Entity } from './entity.js';
import type { Runtime, Fn, UserFn } from './runtime.js';
import { DictValues, PyFunc, abs, add, compare, div, eq, isNull, minMax, mkFloat, mul, repr, shl, shr, sub, truthy, typeName, type Value } from './values.js';

/** Operator tokens and the builtin each names (MOM's operator map). */
export const OPERATORS: Readonly<Record<string, string>> = {
  '+': 'add',
  '-': 'sub',
  '*': 'mul',
  '/': 'div',
  '<': 'lt',
  '>': 'gt',
  '<=': 'lte',
  '>=': 'gte',
  '<<': 'shl',
  '>>': 'shr',
  '==': 'eq',
  '!=': 'neq',
};

/** Names bound before evaluation starts (MOM's externs and the two entities). */
export const PREBOUND = ['Host', 'Guests', 'abs', 'debug'] as const;

// Argument rules of the builtin forms, as MOM states them: 'v' = evaluated value,
// 'c' = code (not evaluated by the dispatcher), 's' = must be a bare symbol; a trailing '*'
// allows further arguments of the last kind, so 'v*' means one or more values.
const SIGS: Readonly<Record<string, string>> = {
  if: 'vcc',
  def: 'scc',
  defun: 'scc',
  set: 'sv',
  setq: 'sv',
  defvar: 'sv',
  let: 'cc*',
  with: 'ssc',
  add: 'vv',
  sub: 'vv',
  mul: 'vv',
  div: 'vv',
  lt: 'vv',
  gt: 'vv',
  lte: 'vv',
  gte: 'vv',
  eq: 'vv',
  neq: 'vv',
  shl: 'vv',
  shr: 'vv',
  and: 'v*',
  or: 'v*',
  not: 'v',
  min: 'v*',
  max: 'v*',
  null: '*',
  valid: '*',
};

export interface CompiledPolicy {
  readonly exprs: readonly Fn[];
  readonly positions: readonly Pos[];
  readonly names: readonly string[];
  readonly ids: ReadonlyMap<string, number>;
}

const posOf = (n: Node): Pos => ({ file: n.file, line: n.line, col: n.col });

function fail(message: string, pos: Pos): Fn {
  return () => {
    throw new PolicyRuntimeError(message, pos);
  };
}

/** Items of a list as MOM sees them: a `{...}` block is `(eval ...)`. */
function itemsOf(n: ListNode): Node[] {
  if (n.open !== '{') return n.items;
  return [{ kind: 'sym', text: 'eval', file: n.file, line: n.line, col: n.col }, ...n.items];
}

const isSym = (n: Node | undefined): n is AtomNode => n !== undefined && n.kind === 'sym';

function stackError(rt: Runtime, fallback: Pos): PolicyRuntimeError {
  return new PolicyRuntimeError('nesting or recursion too deep for the evaluator stack', rt.lastCall ?? fallback, true);
}

/** A JS stack overflow, turned into a policy error by whoever catches it. */
export function isStackOverflow(e: unknown): boolean {
  return e instanceof RangeError && /call stack/i.test(e.message);
}

export function toPolicyError(e: unknown, rt: Runtime, fallback: Pos): PolicyRuntimeError {
  if (e instanceof PolicyRuntimeError) return e;
  if (isStackOverflow(e)) return stackError(rt, fallback);
  return new PolicyRuntimeError(`internal error: ${e instanceof Error ? e.message : String(e)}`, fallback);
}

function numberValue(a: AtomNode): Value | Error {
  const t = a.text;
  if (a.numKind === 'float') return mkFloat(Number(t));
  const v = Number(t);
  if (Number.isNaN(v)) return new Error(`invalid literal for int() with base 0: '${t}'`);
  return v === 0 ? 0 : v;
}

class Compiler {
  readonly ids = new Map<string, number>();
  readonly names: string[] = [];
  readonly bindable = new Set<string>(PREBOUND);

  id(name: string): number {
    let i = this.ids.get(name);
    if (i === undefined) {
      i = this.names.length;
      this.names.push(name);
      this.ids.set(name, i);
    }
    return i;
  }

  /** Records every name some form may bind, so calls of other names skip the variable check. */
  collectBindable(exprs: Node[]): void {
    const work: Node[] = [...exprs];
    while (work.length) {
      const n = work.pop()!;
      if (n.kind !== 'list') continue;
      const items = itemsOf(n);
      for (const item of n.items) work.push(item);
      const head = items[0];
      if (!isSym(head)) continue;
      const h = head.text;
      if ((h === 'defvar' || h === 'with') && isSym(items[h === 'with' ? 2 : 1])) {
        this.bindable.add((items[h === 'with' ? 2 : 1] as AtomNode).text);
      } else if ((h === 'def' || h === 'defun') && items[2]?.kind === 'list') {
        for (const p of itemsOf(items[2] as ListNode)) if (isSym(p)) this.bindable.add(p.text);
      } else if (h === 'let' && items[1]?.kind === 'list') {
        for (const b of itemsOf(items[1] as ListNode)) {
          if (b.kind === 'list') {
            const first = itemsOf(b)[0];
            if (isSym(first)) this.bindable.add(first.text);
          }
        }
      }
    }
  }

  expr(n: Node): Fn {
    switch (n.kind) {
      case 'num': {
        const v = numberValue(n);
        if (v instanceof Error) return fail(v.message, posOf(n));
        return () => v;
      }
      case 'str': {
        const s = n.text.slice(1, -1);
        return () => s;
      }
      case 'sym':
        return this.symbol(n);
      case 'op':
        return fail(`unexpected operator '${n.text}' where a value is expected`, posOf(n));
      case 'list':
        return this.list(n);
    }
  }

  symbol(n: AtomNode): Fn {
    const name = n.text;
    const pos = posOf(n);
    if (name === 'nil') return () => null;
    const dot = name.indexOf('.');
    if (dot < 0) {
      const id = this.id(name);
      return (rt) => {
        const v = rt.vals[id];
        if (v === undefined) throw new PolicyRuntimeError(`undefined symbol ${name}`, pos);
        return v;
      };
    }
    // `obj.attr`: MOM reads only the first attribute after the object's name.
    const base = this.id(name.slice(0, dot));
    const rest = name.slice(dot + 1);
    const attr = rest.split('.')[0]!;
    const isMethod = ENTITY_METHODS.has(attr);
    return (rt) => {
      const obj = rt.vals[base];
      if (obj instanceof Entity) {
        if (isMethod) return obj.method(attr);
        const v = obj.field(attr);
        if (v !== undefined) return v;
      }
      const outer = outerAttr(rt, base, attr, isMethod);
      if (outer !== undefined) return outer;
      throw new PolicyRuntimeError(`undefined symbol ${name}`, pos);
    };
  }

  list(n: ListNode): Fn {
    const items = itemsOf(n);
    const pos = posOf(n);
    if (items.length === 0) return fail('empty list () cannot be evaluated', pos);
    const head = items[0]!;
    const args = items.slice(1);
    if (head.kind === 'list') return fail('expected a function name or operator as the first element', posOf(head));
    if (head.kind === 'num' || head.kind === 'str') {
      return fail(`a ${head.kind === 'num' ? 'number' : 'string'} cannot be called (${head.text})`, posOf(head));
    }
    const name = head.kind === 'op' ? OPERATORS[head.text]! : head.text;
    const callPos = pos; // errors point at the form's opening bracket
    if (name.includes('.')) return this.dottedCall(name, args, callPos);
    const fallback = this.namedCall(name, args, callPos);
    if (!this.bindable.has(name)) return fallback;
    // A variable holding a callable (abs, debug, a bound method) takes precedence, as in MOM.
    const id = this.id(name);
    const argFns = args.map((a) => this.expr(a));
    if (name === 'abs' && argFns.length === 1) {
      const a0 = argFns[0]!;
      return (rt) => {
        const v = rt.vals[id];
        if (v === ABS) {
          if (++rt.steps > rt.budget) rt.overBudget(callPos);
          return abs(a0(rt), callPos);
        }
        if (v === undefined || v === null) return fallback(rt);
        return callValue(v, evalArgs(rt, argFns), callPos, rt);
      };
    }
    return (rt) => {
      const v = rt.vals[id];
      if (v === undefined || v === null) return fallback(rt);
      return callValue(v, evalArgs(rt, argFns), callPos, rt);
    };
  }

  dottedCall(name: string, args: Node[], pos: Pos): Fn {
    const dot = name.indexOf('.');
    const base = this.id(name.slice(0, dot));
    const attr = name.slice(dot + 1).split('.')[0]!;
    const argFns = args.map((a) => this.expr(a));
    const userCall = this.userCall(name, args, pos);
    if (ENTITY_METHODS.has(attr)) {
      // The hot path: guest.Control, guest.StatAvg, Host.Stat ... called directly, without
      // an argument array, when the argument count is the method's usual one.
      const a0 = argFns[0];
      const a1 = argFns[1];
      if (attr === 'StatAvg' && argFns.length === 1) {
        return (rt) => {
          const obj = entityAt(rt, base);
          if (obj === undefined) return userCall(rt);
          if (++rt.steps > rt.budget) rt.overBudget(pos);
          return obj.StatAvg(a0!(rt), pos);
        };
      }
      if (attr === 'Stat' && argFns.length === 1) {
        return (rt) => {
          const obj = entityAt(rt, base);
          if (obj === undefined) return userCall(rt);
          if (++rt.steps > rt.budget) rt.overBudget(pos);
          return obj.Stat(a0!(rt), null, pos);
        };
      }
      if (attr === 'Control' && argFns.length === 2) {
        return (rt) => {
          const obj = entityAt(rt, base);
          if (obj === undefined) return userCall(rt);
          if (++rt.steps > rt.budget) rt.overBudget(pos);
          const k = a0!(rt);
          return obj.Control(k, a1!(rt), pos);
        };
      }
      return (rt) => {
        const obj = entityAt(rt, base);
        if (obj === undefined) return userCall(rt);
        rt.step(pos);
        return obj.call(attr, evalArgs(rt, argFns), pos);
      };
    }
    return (rt) => {
      const obj = rt.vals[base];
      let v = obj instanceof Entity ? obj.field(attr) : undefined;
      if (v === undefined) v = outerAttr(rt, base, attr, false);
      if (v === undefined || v === null) return userCall(rt);
      return callValue(v, evalArgs(rt, argFns), pos, rt);
    };
  }

  namedCall(name: string, args: Node[], pos: Pos): Fn {
    const sig = SIGS[name];
    if (sig !== undefined) {
      const problem = checkSig(name, sig, args);
      if (problem) return fail(problem.msg, problem.pos ?? pos);
      return this.builtin(name, args, pos);
    }
    if (name === 'eval') {
      const fns = args.map((a) => this.expr(a));
      if (fns.length === 0) return fail('empty block: {} or (eval) needs at least one expression', pos);
      if (fns.length === 1) {
        const f0 = fns[0]!;
        return (rt) => {
          rt.step(pos);
          return f0(rt);
        };
      }
      return (rt) => {
        rt.step(pos);
        let v: Value = null;
        for (let i = 0; i < fns.length; i++) v = fns[i]!(rt);
        return v;
      };
    }
    return this.userCall(name, args, pos);
  }

  userCall(name: string, args: Node[], pos: Pos): Fn {
    const id = this.id(name);
    const argFns = args.map((a) => this.expr(a));
    const nargs = argFns.length;
    return (rt) => {
      const f = rt.funcs[id];
      if (f === undefined) throw new PolicyRuntimeError(`unknown function ${name}`, pos);
      const params = f.params;
      if (typeof params === 'string') throw new PolicyRuntimeError(params, pos);
      if (params.length !== nargs) {
        throw new PolicyRuntimeError(`function ${name} takes ${params.length} argument(s), called with ${nargs}`, pos);
      }
      // Arguments are evaluated in the caller's scope, before the call's scope exists.
      const vals = nargs === 0 ? EMPTY : evalArgs(rt, argFns);
      if (++rt.steps > rt.budget) rt.overBudget(pos);
      if (rt.callDepth >= rt.maxDepth) {
        // Fatal, like MOM's RecursionError: a caller that catches it per guest would recurse
        // straight back into the limit, again and again.
        throw new PolicyRuntimeError(`recursion deeper than ${rt.maxDepth} calls (in ${name})`, pos, true);
      }
      rt.callDepth++;
      rt.lastCall = pos;
      rt.enter();
      for (let i = 0; i < nargs; i++) rt.define(params[i]!, vals[i]!);
      const v = f.body(rt);
      rt.leave();
      rt.callDepth--;
      return v;
    };
  }

  builtin(name: string, args: Node[], pos: Pos): Fn {
    switch (name) {
      case 'if': {
        const [c, y, n] = args.map((a) => this.expr(a)) as [Fn, Fn, Fn];
        return (rt) => {
          if (++rt.steps > rt.budget) rt.overBudget(pos);
          return truthy(c(rt)) ? y(rt) : n(rt);
        };
      }
      case 'def':
      case 'defun':
        return this.def(args, pos);
      case 'set':
      case 'setq':
      case 'defvar': {
        const id = this.id((args[0] as AtomNode).text);
        const value = this.expr(args[1]!);
        if (name === 'defvar') {
          return (rt) => {
            rt.step(pos);
            return rt.define(id, value(rt));
          };
        }
        return (rt) => {
          rt.step(pos);
          return rt.set(id, value(rt), pos);
        };
      }
      case 'let':
        return this.let(args, pos);
      case 'with':
        return this.with(args, pos);
      case 'not': {
        const a = this.expr(args[0]!);
        return (rt) => {
          rt.step(pos);
          return !truthy(a(rt));
        };
      }
      case 'and':
      case 'or': {
        const fns = args.map((a) => this.expr(a));
        const isAnd = name === 'and';
        return (rt) => {
          rt.step(pos);
          // No short-circuit: every argument is evaluated first, as in MOM.
          const vals = evalArgs(rt, fns);
          for (const v of vals) if (truthy(v) !== isAnd) return v;
          return vals[vals.length - 1]!;
        };
      }
      case 'min':
      case 'max': {
        const fns = args.map((a) => this.expr(a));
        const which = name;
        return (rt) => {
          rt.step(pos);
          return minMax(which, evalArgs(rt, fns), pos);
        };
      }
      case 'null':
      case 'valid': {
        const fns = args.map((a) => this.expr(a));
        const isNullForm = name === 'null';
        return (rt) => {
          rt.step(pos);
          const vals = evalArgs(rt, fns);
          return isNullForm ? isNull(vals) : !vals.includes(null);
        };
      }
    }
    return this.binary(name, args, pos);
  }

  binary(name: string, args: Node[], pos: Pos): Fn {
    const a = this.expr(args[0]!);
    const b = this.expr(args[1]!);
    switch (name) {
      case 'add':
        return (rt) => {
          rt.step(pos);
          const r = add(a(rt), b(rt), pos);
          if (typeof r === 'string' || Array.isArray(r)) rt.step(pos, r.length >> 6);
          return r;
        };
      case 'sub':
        return (rt) => {
          if (++rt.steps > rt.budget) rt.overBudget(pos);
          return sub(a(rt), b(rt), pos);
        };
      case 'mul':
        return (rt) => {
          rt.step(pos);
          const r = mul(a(rt), b(rt), pos);
          if (typeof r === 'string' || Array.isArray(r)) rt.step(pos, r.length >> 6);
          return r;
        };
      case 'div':
        return (rt) => {
          if (++rt.steps > rt.budget) rt.overBudget(pos);
          return div(a(rt), b(rt), pos);
        };
      case 'lt':
        return (rt) => {
          if (++rt.steps > rt.budget) rt.overBudget(pos);
          return compare('<', a(rt), b(rt), pos);
        };
      case 'gt':
        return (rt) => {
          if (++rt.steps > rt.budget) rt.overBudget(pos);
          return compare('>', a(rt), b(rt), pos);
        };
      case 'lte':
        return (rt) => {
          if (++rt.steps > rt.budget) rt.overBudget(pos);
          return compare('<=', a(rt), b(rt), pos);
        };
      case 'gte':
        return (rt) => {
          if (++rt.steps > rt.budget) rt.overBudget(pos);
          return compare('>=', a(rt), b(rt), pos);
        };
      case 'eq':
      case 'neq': {
        const want = name === 'eq';
        return (rt) => {
          rt.step(pos);
          const x = a(rt);
          const y = b(rt);
          if (Array.isArray(x) && Array.isArray(y)) rt.step(pos, Math.min(x.length, y.length) >> 6);
          return eq(x, y, pos) === want;
        };
      }
      case 'shl':
        return (rt) => {
          rt.step(pos);
          return shl(a(rt), b(rt), pos);
        };
      case 'shr':
        return (rt) => {
          rt.step(pos);
          return shr(a(rt), b(rt), pos);
        };
    }
    throw new Error(`no builtin ${name}`);
  }

  def(args: Node[], pos: Pos): Fn {
    const fname = (args[0] as AtomNode).text;
    const fid = this.id(fname);
    const paramsNode = args[1]!;
    let params: number[] | string;
    if (paramsNode.kind !== 'list') {
      params = `parameter list of ${fname} must be a list`;
    } else {
      const ps = itemsOf(paramsNode);
      const bad = ps.find((p) => p.kind !== 'sym');
      const what = bad === undefined ? '' : bad.kind === 'list' ? 'a list' : bad.text;
      params = bad ? `parameters of ${fname} must be symbols (found ${what} at ${bad.line}:${bad.col})` : ps.map((p) => this.id((p as AtomNode).text));
    }
    const fn: UserFn = { name: fname, params, body: this.expr(args[2]!) };
    return (rt) => {
      rt.step(pos);
      rt.funcs[fid] = fn;
      return fname;
    };
  }

  let(args: Node[], pos: Pos): Fn {
    const bindingsNode = args[0]!;
    if (bindingsNode.kind !== 'list') return fail('let expects a list of (name value) pairs as its first argument', posOf(bindingsNode));
    // Each binding: [id, value] or an error raised when evaluation reaches it.
    const bindings: Array<[number, Fn] | PolicyRuntimeError> = itemsOf(bindingsNode).map((b) => {
      if (b.kind !== 'list' || itemsOf(b).length !== 2) {
        return new PolicyRuntimeError('let expects each binding to be a (name value) pair', posOf(b));
      }
      const [k, v] = itemsOf(b) as [Node, Node];
      if (!isSym(k)) return new PolicyRuntimeError('let binding name must be a symbol', posOf(k));
      return [this.id(k.text), this.expr(v)];
    });
    const body = args.slice(1).map((a) => this.expr(a));
    return (rt) => {
      rt.step(pos);
      rt.enter();
      for (const b of bindings) {
        if (b instanceof PolicyRuntimeError) throw b;
        rt.define(b[0], b[1](rt));
      }
      let v: Value = null;
      for (let i = 0; i < body.length; i++) v = body[i]!(rt);
      rt.leave();
      return v;
    };
  }

  with(args: Node[], pos: Pos): Fn {
    const listName = (args[0] as AtomNode).text;
    const listFn = this.symbol(args[0] as AtomNode);
    const iter = this.id((args[1] as AtomNode).text);
    const body = this.expr(args[2]!);
    return (rt) => {
      rt.step(pos);
      const coll = listFn(rt);
      let items: readonly Value[];
      if (Array.isArray(coll)) items = coll;
      else if (coll instanceof DictValues) items = coll.items;
      else if (typeof coll === 'string') items = Array.from(coll);
      else throw new PolicyRuntimeError(`cannot iterate over ${listName} ('${typeName(coll)}' object is not iterable)`, pos);
      const out: Value[] = new Array(items.length);
      for (let i = 0; i < items.length; i++) {
        const item = items[i]!;
        rt.step(pos);
        if (item instanceof Entity && item.kind === 'guest') {
          out[i] = guestPart(rt, item, iter, body, pos);
        } else {
          rt.enter();
          rt.define(iter, item);
          out[i] = body(rt);
          rt.leave();
        }
      }
      return out;
    };
  }
}

/** One guest's part of a `with`: an error here drops that guest's controls, not the cycle. */
function guestPart(rt: Runtime, guest: Entity, iter: number, body: Fn, pos: Pos): Value {
  const marks = rt.marks.length;
  const callDepth = rt.callDepth;
  try {
    rt.enter();
    rt.define(iter, guest);
    const v = body(rt);
    rt.leave();
    return v;
  } catch (e) {
    // Budget, depth and stack errors end the evaluation; JS errors are bugs: not caught here.
    if (!(e instanceof PolicyRuntimeError) || e.fatal) throw e;
    const err = e;
    // A failure costs steps too, so a loop of failing parts cannot run for long.
    rt.step(pos, ERROR_STEPS);
    rt.unwindTo(marks);
    rt.callDepth = callDepth;
    guest.failed = true;
    guest.controls = null;
    rt.onGuestError?.(guest, err);
    return null;
  }
}

const EMPTY: Value[] = [];
const ERROR_STEPS = 100;

// MOM resolves `a.b` by walking the scopes innermost first and taking the first binding of
// `a` that has an attribute `b`; a binding without it is skipped. With shallow binding the
// shadowed (outer) bindings are the old values in the undo log, newest first.
function outerAttr(rt: Runtime, base: number, attr: string, isMethod: boolean): Value | undefined {
  const u = rt.undo;
  for (let i = u.length - 3; i >= 0; i -= 3) {
    if (u[i] !== base) continue;
    const old = u[i + 1] as Value | undefined;
    if (old === undefined) return undefined; // no binding further out
    if (old instanceof Entity) {
      if (isMethod) return old.method(attr);
      const v = old.field(attr);
      if (v !== undefined) return v;
    }
  }
  return undefined;
}

/** The innermost binding of `base` that is an entity (every entity has the methods). */
function entityAt(rt: Runtime, base: number): Entity | undefined {
  const v = rt.vals[base];
  if (v instanceof Entity) return v;
  if (v === undefined) return undefined;
  const u = rt.undo;
  for (let i = u.length - 3; i >= 0; i -= 3) {
    if (u[i] !== base) continue;
    const old = u[i + 1];
    if (old === undefined) return undefined;
    if (old instanceof Entity) return old;
  }
  return undefined;
}

function evalArgs(rt: Runtime, fns: readonly Fn[]): Value[] {
  const n = fns.length;
  const out: Value[] = new Array(n);
  for (let i = 0; i < n; i++) out[i] = fns[i]!(rt);
  return out;
}

function callValue(v: Value, args: Value[], pos: Pos, rt: Runtime): Value {
  if (v instanceof PyFunc) {
    rt.step(pos);
    return v.fn(args, pos);
  }
  throw new PolicyRuntimeError(`'${typeName(v)}' object is not callable`, pos);
}

/** Checks a builtin's arguments against its signature; returns the problem, if any. */
function checkSig(name: string, sig: string, args: Node[]): { msg: string; pos?: Pos } | null {
  const repeat = sig.endsWith('*');
  const fixed = repeat ? sig.slice(0, -1) : sig;
  // Every fixed kind is required; a trailing '*' allows more of the last kind ('v*': one or
  // more values, 'cc*': two or more code arguments, '*' alone: any number of values).
  if (!repeat && args.length !== fixed.length) {
    return { msg: `${name} takes ${fixed.length} argument${fixed.length === 1 ? '' : 's'}, got ${args.length}` };
  }
  if (repeat && args.length < fixed.length) {
    return { msg: `${name} takes at least ${fixed.length} argument${fixed.length === 1 ? '' : 's'}, got ${args.length}` };
  }
  for (let i = 0; i < Math.min(fixed.length, args.length); i++) {
    if (fixed[i] === 's' && !isSym(args[i])) return { msg: `${name}: argument ${i + 1} must be a symbol`, pos: posOf(args[i]!) };
  }
  return null;
}

export function compileProgram(program: Program): CompiledPolicy {
  const c = new Compiler();
  for (const p of PREBOUND) c.id(p);
  c.collectBindable(program.exprs);
  const exprs = program.exprs.map((e) => c.expr(e));
  return { exprs, positions: program.exprs.map(posOf), names: c.names, ids: c.ids };
}

// Extern functions MOM binds in the global scope.
export const ABS = new PyFunc('abs', (args, pos) => {
  if (args.length !== 1) throw new PolicyRuntimeError(`abs() takes exactly one argument (${args.length} given)`, pos);
  return abs(args[0]!, pos);
});

export function debugFunc(sink: ((text: string) => void) | undefined): PyFunc {
  return new PyFunc('debug', (args, pos) => {
    if (args.length === 0) throw new PolicyRuntimeError('debug needs at least one value', pos);
    if (sink) sink(`debug: (${args.map(repr).join(', ')}${args.length === 1 ? ',' : ''})`);
    return args[args.length - 1]!;
  });
}
