// What the engine reports: each evaluation (for the recorder and replay), each action, its
// counters, each collection and cycle, and the snapshot views and the API read.
import type { ActionOutcome } from '../controls/control.js';
import type { Props, Stats } from '../types.js';
import type { Note } from './cycle.js';
import type { EntityInput, PolicyErrorInfo, PolicyOutput, Vars } from './policy-port.js';

/** One policy evaluation as `ballast policy eval` takes it (a snapshot) plus what it gave. */
export interface EvaluationRecord {
  cycle: number;
  time: number;
  host: EntityInput;
  guests: EntityInput[];
  result: PolicyOutput;
}

/** One line of the action log. */
export interface ActionRecord {
  cycle: number;
  time: number;
  entity: string;
  control: string;
  requested?: unknown;
  from: number | null;
  to: number | null;
  result: ActionOutcome['result'] | Note['verdict'];
  reasons: string[];
  error?: string;
  /** Taken by a guard pass between policy cycles (no policy evaluated), after cycle `cycle`. */
  guardPass?: boolean;
}

export interface Counters {
  collections: number;
  cycles: number;
  policyErrors: number;
  abortedEvaluations: number;
  controllerErrors: number;
  driverErrors: number;
  sourceErrors: number;
  actionsApplied: number;
  vetoes: number;
  rollbacks: number;
  dropped: number;
  /** Actions not tried because their control is backing off after a failure. */
  deferred: number;
  guestsAppeared: number;
  guestsVanished: number;
  /** Stats intervals a calm loop let pass with a peek at free memory and pressure instead of
   *  a collection (src/engine/calm.ts). */
  calmSkips: number;
}

export interface CollectReport {
  time: number;
  guests: number;
  appeared: string[];
  vanished: string[];
  errors: string[];
}

export interface CycleReport {
  cycle: number;
  time: number;
  evaluated: boolean;
  /** A guard pass between policy cycles (Engine.guardPass): the safeguards alone acted. */
  guardPass?: boolean;
  aborted: boolean;
  errors: PolicyErrorInfo[];
  outcomes: ActionOutcome[];
  notes: Note[];
  /** Wall-clock milliseconds spent in evaluate (policy) and in the whole step. */
  evalMs: number;
  totalMs: number;
}

export interface GuestView {
  id: string;
  name: string;
  props: Props;
  stats: Stats;
  vars: Vars;
  stale?: string;
  holdUntil?: number;
  lastTarget?: number;
  /** KiB the balloon's inflations took from the guest, should have returned, and returned (the balloon module's view). */
  balloonReturn?: { inflatedKiB: number; expectedKiB: number; returnedKiB: number };
  /** The balloon was moved by another manager: when, from and to what, ballast's last target, and until when ballast leaves it alone. */
  movedByOther?: { at: number; from: number; to: number; ours: number; until: number };
  /** virtio-mem: no unplug before this time (seconds), after a rollback or an unplug that stopped short. */
  vmemHoldUntil?: number;
}

export interface EngineSnapshot {
  time: number;
  cycle: number;
  policyLoaded: boolean;
  host: { stats: Stats; vars: Vars; stale?: string };
  guests: GuestView[];
  recent: ActionRecord[];
  counters: Counters;
}
