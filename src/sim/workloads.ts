// What a guest's workload asks of memory at a moment: how much anonymous memory it holds,
// how much of it it touches (its working set), what file data it reads. Pure functions of
// the workload spec and the time since the workload (re)started; the guest model turns
// these wishes into faults, swap and throughput.
import { MIB, PAGE_KIB } from './params.js';

export type WorkloadSpec = MemknobsSpec | WebSpec | IdleSpec | LeakSpec | PhasesSpec;

/** The seed's Memknobs: allocate a buffer of a fixed size, loop writing every page of it,
 *  exit; the harness runs it again with a growing size. Throughput = pages written/s. */
export interface MemknobsSpec {
  kind: 'memknobs';
  /** Buffer size of each run, in order; after the last the sequence starts again. */
  sizesMiB: number[];
  /** How long each run loops over its buffer. */
  runS: number;
  /** Gap between runs (process exited, buffer freed). */
  pauseS?: number;
  /** Where in the sequence the guest starts (gives each guest its own pattern). */
  offsetS?: number;
  /** Fraction of the buffer's pages whose content is identical to pages elsewhere, so
   *  that KSM can merge them once they stop changing (freed buffers keep their stale
   *  content). Default 0: what Memknobs writes into its pages is not documented, and the
   *  simulator assumes no sharing it cannot justify; docs/simulator.md shows the runs with
   *  1 (every page written with the same pattern) as well. */
  dupFraction?: number;
}

/** A LAMP-style web server (the seed's Cloudy: MediaWiki instances driven by JMeter).
 *  Throughput = requests completed/s; limited by I/O, barely by memory. */
export interface WebSpec {
  kind: 'web';
  /** Offered load, requests/s (the seed: 16 per VM). */
  requestRate: number;
  /** Anonymous memory of the server processes (httpd workers, PHP, MySQL buffers). */
  anonMiB: number;
  /** Part of anonMiB touched while serving (default 0.5). */
  hotFraction?: number;
  /** Size of the data the requests read (wiki pages and images), read uniformly. */
  fileSetMiB: number;
  /** 4 KiB file pages read per request (default 16: a page plus an image or two). */
  pagesPerRequest?: number;
  /** Anonymous pages a request touches (default 64). */
  anonTouchesPerRequest?: number;
  /** CPU time per request (default 2 ms: the seed used a PHP accelerator to make CPU
   *  negligible). */
  cpuPerRequestS?: number;
  /** Default 0: heaps of separate server instances hold their own data. */
  dupFraction?: number;
  /** Default 0.05: the wikis' images were randomly generated. */
  cacheDupFraction?: number;
}

export interface IdleSpec {
  kind: 'idle';
  /** Default 64 MiB of resident daemons' heap. */
  anonMiB?: number;
  /** Default 8 MiB touched once a minute. */
  wsMiB?: number;
}

/** A process whose heap grows without bound and is never touched again. */
export interface LeakSpec {
  kind: 'leak';
  baseMiB?: number;
  leakMiBPerMin: number;
  wsMiB?: number;
}

/** A workload that changes over time (for demos): each phase runs for its duration. */
export interface PhasesSpec {
  kind: 'phases';
  phases: { durationS: number; workload: Exclude<WorkloadSpec, PhasesSpec> }[];
  repeat?: boolean;
}

export type ThroughputKind = 'memknobs' | 'web' | 'idle' | 'leak';

export interface Demand {
  kind: ThroughputKind;
  anonKiB: number;
  wsKiB: number;
  /** Touches its working set continuously, as fast as memory allows (memknobs). */
  touchBound: boolean;
  /** Otherwise: working-set pages touched per second. */
  touchPagesPerS: number;
  fileSetKiB: number;
  requestRate: number;
  pagesPerRequest: number;
  anonTouchesPerRequest: number;
  cpuPerRequestS: number;
  dupFraction: number;
  cacheDupFraction: number;
}

// Workload data is assumed unshareable unless known otherwise (dupFraction 0); the page
// cache of a guest that reads no data of its own holds the OS's files, identical across
// guests booted from one image, like the kernel's shareable part (params.osSharedFraction).
const none = {
  fileSetKiB: 0,
  requestRate: 0,
  pagesPerRequest: 0,
  anonTouchesPerRequest: 0,
  cpuPerRequestS: 0,
  cacheDupFraction: 0.5,
};

/** The workload's wishes `t` seconds after it (re)started. */
export function demandAt(spec: WorkloadSpec, t: number): Demand {
  switch (spec.kind) {
    case 'memknobs': {
      const pause = spec.pauseS ?? 0;
      const slot = spec.runS + pause;
      const n = spec.sizesMiB.length;
      const tt = (t + (spec.offsetS ?? 0)) % (slot * n);
      const idx = Math.floor(tt / slot);
      const running = tt - idx * slot < spec.runS;
      const size = running ? spec.sizesMiB[Math.min(idx, n - 1)]! * MIB : 0;
      return {
        ...none,
        kind: 'memknobs',
        anonKiB: size,
        wsKiB: size,
        touchBound: running,
        touchPagesPerS: 0,
        dupFraction: spec.dupFraction ?? 0,
      };
    }
    case 'web': {
      const anon = spec.anonMiB * MIB;
      return {
        kind: 'web',
        anonKiB: anon,
        wsKiB: anon * (spec.hotFraction ?? 0.5),
        touchBound: false,
        touchPagesPerS: 0,
        fileSetKiB: spec.fileSetMiB * MIB,
        requestRate: spec.requestRate,
        pagesPerRequest: spec.pagesPerRequest ?? 16,
        anonTouchesPerRequest: spec.anonTouchesPerRequest ?? 64,
        cpuPerRequestS: spec.cpuPerRequestS ?? 0.002,
        dupFraction: spec.dupFraction ?? 0,
        cacheDupFraction: spec.cacheDupFraction ?? 0.05,
      };
    }
    case 'idle': {
      const ws = (spec.wsMiB ?? 8) * MIB;
      return {
        ...none,
        kind: 'idle',
        anonKiB: (spec.anonMiB ?? 64) * MIB,
        wsKiB: ws,
        touchBound: false,
        touchPagesPerS: ws / PAGE_KIB / 60,
        dupFraction: 0,
      };
    }
    case 'leak': {
      const ws = (spec.wsMiB ?? 16) * MIB;
      const base = (spec.baseMiB ?? 64) * MIB;
      return {
        ...none,
        kind: 'leak',
        anonKiB: Math.max(base, base + (spec.leakMiBPerMin * MIB * t) / 60),
        wsKiB: ws,
        touchBound: false,
        touchPagesPerS: ws / PAGE_KIB / 10,
        dupFraction: 0,
      };
    }
    case 'phases': {
      const total = spec.phases.reduce((s, p) => s + p.durationS, 0);
      let tt = spec.repeat && total > 0 ? t % total : t;
      for (const p of spec.phases) {
        if (tt < p.durationS) return demandAt(p.workload, tt);
        tt -= p.durationS;
      }
      const last = spec.phases[spec.phases.length - 1];
      return last ? demandAt(last.workload, last.durationS + tt) : demandAt({ kind: 'idle' }, t);
    }
  }
}
