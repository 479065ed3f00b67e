// Numbers from peers (drivers, guests, policies, kernel files) are checked before use: NaN,
// Infinity and non-numbers are "unknown", never a value.

/** `v` when it is a finite number, else null. */
export function finite(v: unknown): number | null {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}
