// "Said once": the loop meets the same failure, veto or policy error every cycle, and a log
// line each time would bury everything else. A key is said when it is new or its message
// changed, then kept quiet (debug) until it is forgotten. Bounded: a flood of distinct keys
// stops being remembered, so it is said every time rather than grow memory without bound.
const MAX_KEYS = 10_000;

export class LogOnce {
  private readonly said = new Map<string, string>();

  /** True when `key` should be said now (new, or its message changed); remembers it. */
  first(key: string, message = ''): boolean {
    if (this.said.get(key) === message && this.said.has(key)) return false;
    if (this.said.size < MAX_KEYS || this.said.has(key)) this.said.set(key, message);
    return true;
  }

  forget(key: string): void {
    this.said.delete(key);
  }

  /** Forget every key that starts with `prefix` (a guest that left). */
  forgetPrefix(prefix: string): void {
    for (const k of this.said.keys()) if (k.startsWith(prefix)) this.said.delete(k);
  }

  clear(): void {
    this.said.clear();
  }

  get size(): number {
    return this.said.size;
  }
}
