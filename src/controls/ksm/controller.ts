// The KSM controller: ksm_run, ksm_pages_to_scan, ksm_sleep_millisecs, ksm_merge_across_nodes
// through a KsmBackend (sysfs on a real host, the simulator's KSM otherwise). Values arrive
// range-checked; only values that differ from what KSM currently has are written, in one call.
import type { KsmBackend, KsmSettings, Stats } from '../../types.js';
import { failedOutcome, type Action, type ActionOutcome, type Controller } from '../control.js';

import { KSM_CONTROLS, type KsmControl, knobOf } from './knobs.js';

export { KSM_CONTROLS };

export class KsmController implements Controller {
  readonly name = 'ksm';
  readonly controls = KSM_CONTROLS;
  /** What KSM is known to hold, from the last read or successful write. */
  private known: Partial<Record<KsmControl, number>> = {};

  constructor(private readonly backend: KsmBackend) {}

  /** Read the current settings (at start, and for restore-on-exit). */
  async readSettings(): Promise<Partial<KsmSettings>> {
    const s = await this.backend.read();
    this.learn(s);
    const out: Partial<KsmSettings> = {};
    for (const c of KSM_CONTROLS) {
      const v = this.known[c];
      if (v !== undefined) out[knobOf(c)!] = v;
    }
    return out;
  }

  /** Take current values from a host sample (ksm_* fields), which is fresher than our cache. */
  learn(host: Stats): void {
    for (const c of KSM_CONTROLS) {
      const v = host[c];
      if (typeof v === 'number' && Number.isFinite(v)) this.known[c] = v;
    }
  }

  currentValue(control: string): number | null {
    return this.known[control as KsmControl] ?? null;
  }

  async apply(actions: readonly Action[]): Promise<ActionOutcome[]> {
    const settings: Partial<KsmSettings> = {};
    const outcomes: ActionOutcome[] = [];
    const toWrite: Action[] = [];
    for (const action of actions) {
      const c = action.control as KsmControl;
      if (!knobOf(c) || action.to === null) {
        outcomes.push({ action, result: 'failed', error: `not a KSM control: ${action.control}` });
      } else if (this.known[c] === action.to) {
        outcomes.push({ action, result: 'unchanged' });
      } else {
        settings[knobOf(c)!] = action.to;
        toWrite.push(action);
      }
    }
    if (toWrite.length === 0) return outcomes;
    try {
      await this.backend.write(settings);
      for (const a of toWrite) {
        this.known[a.control as KsmControl] = a.to!;
        outcomes.push({ action: a, result: 'applied' });
      }
    } catch (err) {
      // The backend's state after a failed multi-knob write is unknown: re-read next cycle.
      this.known = {};
      for (const a of toWrite) outcomes.push(failedOutcome(a, err));
    }
    return outcomes;
  }

  /** Write settings back (restore on exit). */
  async restore(settings: Partial<KsmSettings>): Promise<void> {
    await this.backend.write(settings);
  }
}
