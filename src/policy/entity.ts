// Host and guest entities as a policy sees them: newest sample fields (`guest.balloon_cur`),
// Stat/StatAvg over the sample history, properties, variables kept across cycles, and
// controls requested for the controllers. The stats history is read in place, never copied.
import { PolicyRuntimeError, type Pos } from './errors.js';
import { DictValues, PyEntity, PyFloat, PyFunc, add, isNumeric, mkFloat, num, repr, type Value } from './values.js';

/** What the caller passes per entity: stats oldest first. */
export interface EntityState {
  props: Record<string, unknown>;
  stats: Array<Record<string, unknown>>;
  vars: Record<string, unknown>;
}

// MOM's field names (KiB for memory). A field is "provided by a collector" when it is one of
// these for the entity's kind, or when the newest sample carries it (ballast's extra sources).
export const HOST_FIELDS: ReadonlySet<string> = new Set([
  'mem_available',
  'mem_free',
  'mem_unused',
  'anon_pages',
  'swap_in',
  'swap_out',
  'swap_total',
  'swap_usage',
  'major_fault',
  'minor_fault',
  'ksm_run',
  'ksm_pages_to_scan',
  'ksm_sleep_millisecs',
  'ksm_pages_shared',
  'ksm_pages_sharing',
  'ksm_pages_unshared',
  'ksm_pages_volatile',
  'ksm_full_scans',
  'ksm_shareable',
  'ksmd_cpu_usage',
  'cpu_count',
  'ksm_merge_across_nodes',
]);
export const GUEST_FIELDS: ReadonlySet<string> = new Set([
  'balloon_cur',
  'balloon_max',
  'balloon_min',
  'mem_available',
  'mem_unused',
  'mem_free',
  'swap_in',
  'swap_out',
  'major_fault',
  'minor_fault',
  'rss',
  'vcpu_count',
  'swap_usage',
  'swap_total',
]);

export const ENTITY_METHODS: ReadonlySet<string> = new Set(['Prop', 'Stat', 'StatAvg', 'SetVar', 'GetVar', 'Control', 'GetControl']);

const hasOwn = Object.prototype.hasOwnProperty;

function keyOf(k: Value, pos: Pos): string {
  if (Array.isArray(k)) throw new PolicyRuntimeError("unhashable type: 'list'", pos);
  if (k instanceof DictValues) throw new PolicyRuntimeError("unhashable type: 'dict_values'", pos);
  if (typeof k === 'string') return k;
  return repr(k);
}

const objectIds = new WeakMap<object, number>();
let nextObjectId = 0;

/**
 * A variable or control name that is not a string, as a Python dict sees it: `hash` equality
 * (True, 1 and 1.0 are one key; None is a key; entities, functions and the Guests view are
 * keys by identity; lists and dicts are unhashable). Returns the equivalence class and the
 * text the key gets in the result, as Python's json.dumps writes a non-string key.
 */
function pyKey(k: Value, pos: Pos): { id: string; text: string } {
  if (Array.isArray(k)) throw new PolicyRuntimeError("unhashable type: 'list'", pos);
  if (k === null) return { id: 'None', text: 'null' };
  if (typeof k === 'boolean') return { id: `n:${k ? 1 : 0}`, text: k ? 'true' : 'false' };
  if (typeof k === 'number' || k instanceof PyFloat) {
    const v = num(k);
    const text = Number.isNaN(v) ? 'NaN' : v === Infinity ? 'Infinity' : v === -Infinity ? '-Infinity' : repr(k);
    // NaN is never equal to itself: each NaN key is its own entry (as with distinct NaN objects).
    return { id: Number.isNaN(v) ? `nan:${nextObjectId++}` : `n:${v === 0 ? 0 : v}`, text };
  }
  if (typeof k === 'object' && !(k instanceof PyEntity) && !(k instanceof PyFunc) && !(k instanceof DictValues)) {
    throw new PolicyRuntimeError("unhashable type: 'dict'", pos);
  }
  let id = objectIds.get(k as object);
  if (id === undefined) objectIds.set(k as object, (id = nextObjectId++));
  return { id: `o:${id}`, text: repr(k) };
}

export class Entity extends PyEntity {
  readonly kind: 'host' | 'guest';
  readonly state: EntityState;
  readonly name: string;
  /** Newest sample, or undefined when there is no history. */
  readonly newest: Record<string, unknown> | undefined;
  /** Copy of state.vars made on the first SetVar. */
  vars: Record<string, unknown> | null = null;
  controls: Record<string, unknown> | null = null;
  /** Set when this guest's part of a `with` failed: its controls are dropped. */
  failed = false;
  /** Non-string variable / control names used so far: Python key class -> name in the result. */
  private varKeys: Map<string, string> | null = null;
  private controlKeys: Map<string, string> | null = null;

  constructor(kind: 'host' | 'guest', state: EntityState) {
    super();
    this.kind = kind;
    this.state = state;
    const n = state.props?.['name'];
    this.name = n === undefined || n === null ? '' : String(n);
    const s = state.stats;
    this.newest = s.length > 0 ? s[s.length - 1] : undefined;
  }

  describe(): string {
    return this.kind === 'host' ? '<Entity Host>' : `<Entity guest ${this.name}>`;
  }

  private checkField(field: string, pos: Pos): void {
    const known = this.kind === 'host' ? HOST_FIELDS : GUEST_FIELDS;
    if (known.has(field) || (this.newest !== undefined && hasOwn.call(this.newest, field))) return;
    throw new PolicyRuntimeError(`Field '${field}' is not declared in any collector`, pos);
  }

  /** `x.field`: the newest sample's value; undefined when the entity has no such attribute. */
  field(name: string): Value | undefined {
    const s = this.newest;
    if (s === undefined || !hasOwn.call(s, name)) return undefined;
    return (s[name] ?? null) as Value;
  }

  Prop(name: Value, pos: Pos): Value {
    const k = keyOf(name, pos);
    const p = this.state.props;
    if (!p || !hasOwn.call(p, k)) throw new PolicyRuntimeError(`no property ${repr(name)}`, pos);
    return (p[k] ?? null) as Value;
  }

  Stat(name: Value, dflt: Value, pos: Pos): Value {
    if (typeof name !== 'string') throw new PolicyRuntimeError(`Field ${repr(name)} is not declared in any collector`, pos);
    this.checkField(name, pos);
    const s = this.newest;
    if (s === undefined) return null;
    return hasOwn.call(s, name) ? ((s[name] ?? null) as Value) : dflt;
  }

  StatAvg(name: Value, pos: Pos): Value {
    if (typeof name !== 'string') throw new PolicyRuntimeError(`Field ${repr(name)} is not declared in any collector`, pos);
    this.checkField(name, pos);
    const rows = this.state.stats;
    if (rows.length === 0) throw new PolicyRuntimeError(`Statistic '${name}' not available`, pos);
    let total: Value = 0;
    let count = 0;
    let fast = true;
    let sum = 0;
    for (let i = 0; i < rows.length; i++) {
      const v = rows[i]![name] as Value | undefined;
      if (v === undefined || v === null) continue;
      count++;
      if (fast && typeof v === 'number') sum += v;
      else {
        if (fast) {
          total = sum;
          fast = false;
        }
        total = add(total, v, pos);
      }
    }
    if (count === 0) return new PyFloat(0);
    if (fast) return mkFloat(sum / count);
    if (!isNumeric(total)) throw new PolicyRuntimeError(`unsupported operand type(s) for /: '${typeof total}' and 'int'`, pos);
    return mkFloat(num(total) / count);
  }

  /**
   * The record key for a variable (or control) name. Strings are themselves; other names
   * follow Python's dict (see pyKey): the first spelling of a key class names it.
   */
  private slot(which: 'vars' | 'controls', name: Value, pos: Pos, create: boolean): string | undefined {
    if (typeof name === 'string') return name;
    const { id, text } = pyKey(name, pos);
    let keys = which === 'vars' ? this.varKeys : this.controlKeys;
    const known = keys?.get(id);
    if (known !== undefined || !create) return known;
    if (keys === null) {
      keys = new Map();
      if (which === 'vars') this.varKeys = keys;
      else this.controlKeys = keys;
    }
    keys.set(id, text);
    return text;
  }

  SetVar(name: Value, v: Value, pos: Pos): Value {
    const k = this.slot('vars', name, pos, true)!;
    if (this.vars === null) this.vars = { ...this.state.vars };
    this.vars[k] = v;
    return null;
  }

  GetVar(name: Value, pos: Pos): Value {
    let k = this.slot('vars', name, pos, false);
    let vars = this.vars ?? this.state.vars;
    if (k === undefined) {
      // A non-string name not set in this cycle: earlier cycles kept it under its JSON text.
      k = pyKey(name, pos).text;
      vars = this.state.vars;
    }
    return vars && hasOwn.call(vars, k) ? ((vars[k] ?? null) as Value) : null;
  }

  Control(name: Value, v: Value, pos: Pos): Value {
    const k = this.slot('controls', name, pos, true)!;
    if (this.controls === null) this.controls = {};
    this.controls[k] = v;
    return null;
  }

  GetControl(name: Value, pos: Pos): Value {
    const k = this.slot('controls', name, pos, false);
    const c = this.controls;
    return k !== undefined && c !== null && hasOwn.call(c, k) ? (c[k] as Value) : null;
  }

  /** Calls a method by name with already evaluated arguments (Python's arity rules). */
  call(method: string, args: Value[], pos: Pos): Value {
    const n = args.length;
    switch (method) {
      case 'Prop':
        if (n !== 1) throw arityError(method, 1, 1, n, pos);
        return this.Prop(args[0]!, pos);
      case 'Stat':
        if (n < 1 || n > 2) throw arityError(method, 1, 2, n, pos);
        return this.Stat(args[0]!, n > 1 ? args[1]! : null, pos);
      case 'StatAvg':
        if (n !== 1) throw arityError(method, 1, 1, n, pos);
        return this.StatAvg(args[0]!, pos);
      case 'SetVar':
        if (n !== 2) throw arityError(method, 2, 2, n, pos);
        return this.SetVar(args[0]!, args[1]!, pos);
      case 'GetVar':
        if (n !== 1) throw arityError(method, 1, 1, n, pos);
        return this.GetVar(args[0]!, pos);
      case 'Control':
        if (n !== 2) throw arityError(method, 2, 2, n, pos);
        return this.Control(args[0]!, args[1]!, pos);
      case 'GetControl':
        if (n !== 1) throw arityError(method, 1, 1, n, pos);
        return this.GetControl(args[0]!, pos);
    }
    throw new PolicyRuntimeError(`entity has no method ${method}`, pos);
  }

  /** `guest.Stat` used as a value: a bound method. */
  method(name: string): PyFunc {
    return new PyFunc(`${this.kind === 'host' ? 'Host' : 'guest'}.${name}`, (args, pos) => this.call(name, args, pos));
  }
}

function arityError(method: string, min: number, max: number, given: number, pos: Pos): PolicyRuntimeError {
  const want = min === max ? `${min}` : `${min} to ${max}`;
  return new PolicyRuntimeError(`${method}() takes ${want} argument${max === 1 ? '' : 's'} (${given} given)`, pos);
}
