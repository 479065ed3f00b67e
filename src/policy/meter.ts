// What a policy pays for work its steps do not show: touching long strings and lists (a `<`
// between two 16 MB strings is one step and sixteen million comparisons). The value
// operations (values.ts) charge here before they scan or allocate; the evaluation that runs
// installs its runtime as the payer. JavaScript runs one evaluation at a time, so one payer
// slot is enough.
import type { Pos } from './errors.js';

export interface Payer {
  /** `elements` read (compared, scanned); charged as steps. */
  touch(elements: number, pos: Pos): void;
  /** `elements` about to be allocated; charged as steps and counted against the evaluation's allocation cap. */
  alloc(elements: number, pos: Pos): void;
}

let payer: Payer | null = null;

/** Small values cost what their step costs already. */
const FREE = 16;

export function withPayer<T>(p: Payer, f: () => T): T {
  const prev = payer;
  payer = p;
  try {
    return f();
  } finally {
    payer = prev;
  }
}

export function touch(elements: number, pos: Pos): void {
  if (payer !== null && elements > FREE) payer.touch(elements, pos);
}

export function alloc(elements: number, pos: Pos): void {
  if (payer !== null && elements > FREE) payer.alloc(elements, pos);
}
