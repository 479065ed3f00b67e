// Small in-test doubles: a hypervisor whose guests are plain objects, and a "policy" that is a
// JS function. The engine is what these tests examine, not a driver.
import type { GuestSample, Hypervisor, KsmBackend, KsmSettings, LifecycleEvent, Stats, HypervisorCapabilities } from '../../../src/types.js';
import type { EntityInput, EvaluateFn, PolicyOutput } from '../../../src/engine/policy-port.js';

export const MiB = 1024;

export interface FakeGuest {
  id: string;
  name: string;
  stats: Stats;
}

export function guest(name: string, over: Partial<Record<string, number | null>> = {}): FakeGuest {
  return {
    id: `id-${name}`,
    name,
    stats: {
      balloon_cur: 2048 * MiB,
      balloon_max: 2048 * MiB,
      balloon_min: 0,
      mem_unused: 1024 * MiB,
      mem_available: 2048 * MiB,
      mem_free: 1200 * MiB,
      swap_in: 0,
      swap_out: 0,
      major_fault: 0,
      minor_fault: 0,
      rss: 1500 * MiB,
      ...over,
    },
  };
}

export class FakeHypervisor implements Hypervisor {
  readonly name = 'fake';
  /** A fake KSM by default: a test must never write the real /sys/kernel/mm/ksm. */
  capabilities: HypervisorCapabilities = { ksm: new FakeKsm() };
  guests = new Map<string, FakeGuest>();
  setCalls: { id: string; target: number }[] = [];
  failSet = new Map<string, string>();
  /** Called inside setBalloon before anything else (to simulate races). */
  beforeSet?: (id: string) => void;
  failCollect?: string;
  private listeners: ((e: LifecycleEvent) => void)[] = [];

  constructor(guests: FakeGuest[] = []) {
    for (const g of guests) this.guests.set(g.id, g);
  }
  async connect(): Promise<void> {}
  async close(): Promise<void> {}
  async collect(): Promise<GuestSample[]> {
    if (this.failCollect) throw new Error(this.failCollect);
    return [...this.guests.values()].map((g) => ({ id: g.id, name: g.name, props: { name: g.name }, stats: { ...g.stats } }));
  }
  async setBalloon(id: string, targetKiB: number): Promise<void> {
    this.beforeSet?.(id);
    const g = this.guests.get(id);
    if (!g) throw new Error(`no domain with id ${id}`);
    const f = this.failSet.get(id);
    if (f) throw new Error(f);
    this.setCalls.push({ id, target: targetKiB });
    // The balloon reaches its target at once; the guest's unused memory shrinks by as much.
    const delta = targetKiB - (g.stats.balloon_cur as number);
    g.stats.balloon_cur = targetKiB;
    g.stats.mem_unused = Math.max(0, (g.stats.mem_unused as number) + delta);
  }
  onEvent(listener: (e: LifecycleEvent) => void): () => void {
    this.listeners.push(listener);
    return () => {
      this.listeners = this.listeners.filter((l) => l !== listener);
    };
  }
  destroy(id: string): void {
    const g = this.guests.get(id);
    this.guests.delete(id);
    for (const l of this.listeners) l({ kind: 'destroyed', id, name: g?.name ?? id });
  }
}

export class FakeKsm implements KsmBackend {
  state: KsmSettings = { run: 0, pages_to_scan: 100, sleep_millisecs: 20, merge_across_nodes: 1 };
  writes: Partial<KsmSettings>[] = [];
  fail?: string;
  async read(): Promise<Stats> {
    return {
      ksm_run: this.state.run,
      ksm_pages_to_scan: this.state.pages_to_scan,
      ksm_sleep_millisecs: this.state.sleep_millisecs,
      ksm_merge_across_nodes: this.state.merge_across_nodes,
    };
  }
  async write(s: Partial<KsmSettings>): Promise<void> {
    if (this.fail) throw new Error(this.fail);
    this.writes.push({ ...s });
    Object.assign(this.state, s);
  }
}

/** A policy written as a JS function of the entities. */
export type FnPolicy = (host: EntityInput, guests: EntityInput[]) => Partial<PolicyOutput> & { guests?: PolicyOutput['guests'] };

export const evaluateFn: EvaluateFn<FnPolicy> = (p, host, guests) => {
  const r = p(host, guests);
  return {
    host: r.host ?? { controls: {}, vars: host.vars },
    guests: r.guests ?? guests.map((g) => ({ name: String(g.props.name), controls: {}, vars: g.vars })),
    errors: r.errors ?? [],
    aborted: r.aborted ?? false,
  };
};

/** Every guest gets balloon_target = f(guest's newest stats). */
export function targetPolicy(f: (s: Stats, name: string) => number | undefined): FnPolicy {
  return (_host, guests) => ({
    guests: guests.map((g) => {
      const s = g.stats[g.stats.length - 1]!;
      const t = f(s, String(g.props.name));
      return { name: String(g.props.name), controls: t === undefined ? {} : { balloon_target: t }, vars: g.vars };
    }),
  });
}
