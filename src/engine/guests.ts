// The guests the loop knows: one entity per guest the driver reports (history, policy
// variables, each module's state), added when a guest first appears in a collection and
// dropped when it is missing from one or a lifecycle event says it is gone. Each fresh sample
// goes into the guest's history and is shown to the modules that observe samples.
import type { SafeguardConfig } from '../controls/floor.js';
import type { ControlModule } from '../controls/control.js';
import type { Logger } from '../log/logger.js';
import type { GuestSample, LifecycleEvent } from '../types.js';
import type { GuestEntity } from './cycle.js';
import { History } from './history.js';
import type { CollectReport, Counters } from './reports.js';

const GONE_EVENTS = new Set(['stopped', 'destroyed', 'crashed', 'undefined']);

export class GuestRegistry {
  readonly byId = new Map<string, GuestEntity>();
  /** The driver's latest sample of each guest. */
  private readonly samples = new Map<string, GuestSample>();
  /** The samples of the collection being merged (see lookup). */
  private collecting: Map<string, GuestSample> | null = null;
  /** Guests reported gone by a lifecycle event since the collection in flight began. Its
   *  samples may predate the event (libvirt answered before the guest was destroyed), so they
   *  do not bring such a guest back: it appears again in the next collection if it is there. */
  private readonly gone = new Set<string>();

  constructor(
    private readonly historyLength: number,
    private readonly observers: readonly ControlModule[],
    private readonly safeguards: () => SafeguardConfig,
    private readonly counters: Counters,
    private readonly log: Logger,
    /** Called for each guest dropped (its name), after it is gone from the registry. */
    private readonly onDrop: (g: GuestEntity) => void,
  ) {}

  /** A guest's sample: the collection in progress first (modules read their fields before its
   *  samples replace the last ones, and a new guest has no other). */
  lookup(id: string): GuestSample | undefined {
    return this.collecting?.get(id) ?? this.samples.get(id);
  }

  /** Vanished after the plan was made (lifecycle event) or no longer known. */
  isGone(id: string): boolean {
    return this.gone.has(id) || !this.byId.has(id);
  }

  onLifecycle(e: LifecycleEvent): void {
    if (!GONE_EVENTS.has(e.kind)) return;
    this.gone.add(e.id);
    const g = this.byId.get(e.id);
    if (g) this.drop(g, `lifecycle event: ${e.kind}`);
  }

  /** A collection is about to ask the driver: events from now on may postdate its samples. */
  startCollect(): void {
    this.gone.clear();
  }

  /** The collection in progress, for lookup while modules read their fields; samples of guests
   *  an event said are gone since it started are left out. */
  beginCollect(samples: readonly GuestSample[]): GuestSample[] {
    const fresh = this.gone.size === 0 ? [...samples] : samples.filter((s) => !this.gone.has(s.id));
    this.collecting = new Map(fresh.map((s) => [s.id, s]));
    return fresh;
  }

  /** Merge a collection: new guests appear, fresh samples go into histories, missing guests are dropped. */
  endCollect(samples: readonly GuestSample[], time: number, report: CollectReport): void {
    this.collecting = null;
    const seen = new Set<string>();
    for (const sample of samples) {
      seen.add(sample.id);
      let g = this.byId.get(sample.id);
      if (!g) {
        g = { id: sample.id, name: sample.name, props: {}, history: new History(this.historyLength), vars: {}, state: {} };
        this.byId.set(sample.id, g);
        this.counters.guestsAppeared++;
        report.appeared.push(sample.name);
        this.log.info('guest_appeared', { guest: sample.name, id: sample.id });
      }
      g.name = sample.name;
      // The policy's `(guest.Prop "name")` must work whatever props the driver filled.
      g.props = sample.props.name === sample.name ? sample.props : { ...sample.props, name: sample.name };
      g.stale = sample.stale;
      this.samples.set(sample.id, sample);
      // A stale sample would skew averages with old numbers; it only marks the guest.
      if (sample.stale) continue;
      const prev = g.history.latest();
      g.history.push(sample.stats, time);
      for (const m of this.observers) {
        const o = m.observe!(g.state[m.name], prev, sample.stats, { guest: g.name, time, safeguards: this.safeguards() });
        if (!o) continue;
        g.state[m.name] = o.state;
        if (o.warn) this.log.warn(o.warn.event, o.warn.fields);
      }
    }
    for (const g of [...this.byId.values()]) {
      if (!seen.has(g.id)) {
        report.vanished.push(g.name);
        this.drop(g, 'not in the latest collection');
      }
    }
  }

  /** A failed collection: keep every guest and its history, marked stale so nothing inflates on old data. */
  markStale(reason: string): void {
    for (const g of this.byId.values()) g.stale = reason;
  }

  private drop(g: GuestEntity, why: string): void {
    this.byId.delete(g.id);
    this.samples.delete(g.id);
    this.counters.guestsVanished++;
    this.log.info('guest_vanished', { guest: g.name, id: g.id, reason: why });
    this.onDrop(g);
  }

  /** Guests the policy sees: those with at least one sample, in a stable order. */
  evaluable(): GuestEntity[] {
    const out: GuestEntity[] = [];
    for (const g of this.byId.values()) if (g.history.length > 0) out.push(g);
    return out;
  }

  byName(name: string): GuestEntity | undefined {
    for (const g of this.byId.values()) if (g.name === name) return g;
    return undefined;
  }
}
