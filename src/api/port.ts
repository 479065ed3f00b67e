// What the API, the MOM RPC, the metrics and the dashboard may see of a running daemon and
// how they may steer it. Everything under src/api talks to the daemon only through this
// interface, so the HTTP layers can be tested against any daemon (real drivers or the
// simulated host) and the daemon's insides can change without touching them.
import type { HypervisorConnection, Props, Stats } from '../types.js';
import type { ActionRecord, Counters } from '../engine/engine.js';
import type { AlertEvent } from '../host/alerts.js';
import type { LogLevel } from '../log/logger.js';

/** One sample of an entity with its collection time (seconds, the daemon's clock). */
export interface TimedStats {
  time: number;
  stats: Stats;
}

export interface HostState {
  /** Newest sample (empty before the first collection). */
  stats: Stats;
  vars: Record<string, unknown>;
  /** Set when some host source failed in the latest collection: why. */
  stale?: string;
}

export interface GuestState {
  id: string;
  name: string;
  props: Props;
  /** Newest sample. */
  stats: Stats;
  vars: Record<string, unknown>;
  stale?: string;
  /** Rolled back: no inflation before this time (seconds). */
  holdUntil?: number;
  /** The last balloon target ballast set (KiB). */
  lastTarget?: number;
  /** KiB inflations took from the guest, and KiB of QEMU's resident memory that went with them. */
  balloonReturn?: { inflatedKiB: number; expectedKiB: number; returnedKiB: number };
  /** Another manager (or an admin) moved the balloon: ballast leaves the guest alone until `until` (seconds). */
  movedByOther?: { at: number; from: number; to: number; ours: number; until: number };
  /** virtio-mem: no unplug before this time (seconds), after a rollback or an unplug that stopped short. */
  vmemHoldUntil?: number;
}

export interface HealthState {
  /** 'ok'; 'degraded' when the hypervisor or a host source is failing. */
  status: 'ok' | 'degraded';
  version: string;
  /** What the daemon runs against (e.g. "libvirt qemu:///system"). */
  hypervisor: string;
  startedAt: number;
  /** The daemon's clock now (seconds; simulated seconds on the simulated host). */
  time: number;
  cycle: number;
  paused: boolean;
  policyLoaded: boolean;
  /** The loop collects every engine.calm_stride-th interval: nothing moved in the last policy
   *  cycles, no guest is held, the host does not stall (docs/engine.md). The cycle counter
   *  advances slower then; a fall of free memory or a stall ends it within an interval. */
  calm: boolean;
  problems: string[];
}

/** A named policy in force, where it came from and when it was loaded. */
export interface PolicyInfo {
  name: string;
  /** 'file': from the policy directory (or --policy files); 'api': set over the API or MOM's RPC. */
  source: 'file' | 'api';
  /** The file it was read from (source 'file'). */
  path?: string;
  /** Wall-clock seconds since the epoch. */
  loadedAt: number;
  text: string;
}

/** One entry of the daemon's event log (what it logged: actions, vetoes, rollbacks, errors, alerts, policy loads). */
export interface DaemonEvent {
  /** Increasing from 1; a client polls with `since`. */
  seq: number;
  /** Wall-clock ISO time. */
  ts: string;
  level: LogLevel;
  event: string;
  fields: Record<string, unknown>;
}

/** A policy the daemon refused; `message` starts with FILE:LINE:COL where there is a position. */
export class PolicyRejectedError extends Error {
  override name = 'PolicyRejectedError';
}

export interface DaemonPort {
  health(): HealthState;
  host(): HostState;
  /** The host's sample history, oldest first. */
  hostHistory(): TimedStats[];
  guests(): GuestState[];
  guest(name: string): GuestState | undefined;
  /** A guest's sample history, oldest first; undefined for an unknown guest. */
  guestHistory(name: string): TimedStats[] | undefined;
  /** Recent actions, vetoes and rollbacks, oldest first, each with its reasons. */
  actions(): ActionRecord[];
  /** Recent events with seq > since, oldest first. */
  events(since?: number): DaemonEvent[];
  alerts(): readonly AlertEvent[];
  counters(): Counters;
  /** The hypervisor driver's connection; undefined when it has none (the simulator). */
  connection?(): HypervisorConnection | undefined;
  /** Called for every new event; returns the unsubscribe. */
  onEvent(listener: (e: DaemonEvent) => void): () => void;
  /** Wall-clock milliseconds of the latest policy cycle and of its evaluation: the same object
   *  until the next policy cycle (a guard pass has no times of its own). */
  lastCycleTimes?(): { totalMs: number; evalMs: number } | undefined;
  /** Called after every collection and every policy cycle or guard pass ('cycle'); returns the unsubscribe. */
  onUpdate(listener: (kind: 'collect' | 'cycle') => void): () => void;

  policies(): PolicyInfo[];
  /** Set (create or replace) a named policy; throws PolicyRejectedError and changes nothing when the set would not compile. */
  setPolicy(name: string, text: string): PolicyInfo;
  /** Returns false when there was no such policy. */
  deletePolicy(name: string): boolean;
  /** MOM's setPolicy: the whole set becomes this one unnamed policy. */
  replacePolicies(text: string): void;
  /** MOM's resetPolicies: back to the policies from the directory / files. */
  resetPolicies(): void;

  /** Observe only: collect and evaluate, apply nothing (pause), or act again (resume). */
  pause(reason: string): void;
  resume(): void;
  setLogLevel(level: LogLevel): void;
}
