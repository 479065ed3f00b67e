// The time series `ballast sim --out` writes: one row per stats interval, host fields and
// totals over guests, as CSV (header + rows) or JSON lines (rows with a per-guest array).
import { createWriteStream, openSync, type WriteStream } from 'node:fs';
import { extname } from 'node:path';
import { PAGE_KIB } from './params.js';
import type { SimWorld } from './world.js';

export const SERIES_COLUMNS = [
  't',
  'guests',
  'host_mem_free_kib',
  'host_swap_usage_kib',
  'host_swap_in_pages',
  'host_swap_out_pages',
  'ksm_run',
  'ksm_pages_to_scan',
  'ksm_pages_sharing',
  'ksmd_cpu_pct',
  'balloon_total_kib',
  'guest_used_kib',
  'guest_swap_in_kib',
  'guest_swap_out_kib',
  'pages_touched_per_s',
  'requests_per_s',
  'oom_kills',
  'balloon_actions',
] as const;

export type SeriesRow = Record<(typeof SERIES_COLUMNS)[number], number>;

export interface GuestPoint {
  name: string;
  balloon_cur_kib: number;
  used_kib: number;
  cache_kib: number;
  guest_swap_kib: number;
  host_swapped_kib: number;
  rate: number;
}

/** Turns successive looks at a world into rows of per-interval numbers. */
export class SeriesSampler {
  private prev: { t: number; hin: number; hout: number; gin: number; gout: number; touches: number; req: number; ksmCpu: number } | null = null;

  constructor(private readonly world: SimWorld) {}

  sample(balloonActions: number): { row: SeriesRow; guests: GuestPoint[] } {
    const w = this.world;
    const tot = w.totals();
    const cur = {
      t: w.now,
      hin: w.host.swapInKiB,
      hout: w.host.swapOutKiB,
      gin: tot.guestSwapInKiB,
      gout: tot.guestSwapOutKiB,
      touches: tot.touches,
      req: tot.requests,
      ksmCpu: w.host.ksmdCpuS,
    };
    const p = this.prev;
    const dt = p ? cur.t - p.t : 0;
    const rate = (a: number, b: number | undefined) => (p && dt > 0 ? (a - (b ?? 0)) / dt : 0);
    const delta = (a: number, b: number | undefined) => (p ? a - (b ?? 0) : 0);
    let balloon = 0;
    let used = 0;
    const guests: GuestPoint[] = [];
    for (const g of w.guests.values()) {
      const u = g.balloonCur - g.freeKiB;
      balloon += g.balloonCur;
      used += u;
      guests.push({
        name: g.name,
        balloon_cur_kib: Math.round(g.balloonCur),
        used_kib: Math.round(u),
        cache_kib: Math.round(g.cache.size),
        guest_swap_kib: Math.round(g.guestSwapUsedKiB),
        host_swapped_kib: Math.round(g.hostSwappedKiB),
        rate: Math.round(g.recentRate * 10) / 10,
      });
    }
    const row: SeriesRow = {
      t: cur.t,
      guests: w.guests.size,
      host_mem_free_kib: Math.round(w.hostFreeKiB()),
      host_swap_usage_kib: Math.round(w.hostSwapUsedKiB()),
      host_swap_in_pages: Math.round(delta(cur.hin, p?.hin) / PAGE_KIB),
      host_swap_out_pages: Math.round(delta(cur.hout, p?.hout) / PAGE_KIB),
      ksm_run: w.ksm.run,
      ksm_pages_to_scan: w.ksm.pages_to_scan,
      ksm_pages_sharing: Math.round(w.ksmSavings().savedKiB / PAGE_KIB),
      ksmd_cpu_pct: Math.round(rate(cur.ksmCpu, p?.ksmCpu) * 1000) / 10,
      balloon_total_kib: Math.round(balloon),
      guest_used_kib: Math.round(used),
      guest_swap_in_kib: Math.round(delta(cur.gin, p?.gin)),
      guest_swap_out_kib: Math.round(delta(cur.gout, p?.gout)),
      pages_touched_per_s: Math.round(rate(cur.touches, p?.touches)),
      requests_per_s: Math.round(rate(cur.req, p?.req) * 10) / 10,
      oom_kills: tot.guestOomKills + w.host.hostOomKills,
      balloon_actions: balloonActions,
    };
    this.prev = cur;
    return { row, guests };
  }
}

export interface SeriesWriter {
  write(row: SeriesRow, guests: GuestPoint[]): void;
  close(): Promise<void>;
}

/** A writer chosen by the file's extension: .csv or .jsonl (also .ndjson, .json). */
export function openSeries(path: string): SeriesWriter {
  const ext = extname(path).toLowerCase();
  const csv = ext === '.csv';
  if (!csv && !['.jsonl', '.ndjson', '.json'].includes(ext)) throw new Error(`--out ${path}: the file name must end in .csv or .jsonl`);
  // Opened now, synchronously: a path that cannot be written is an error before the run, not
  // a silent loss after it.
  let fd: number;
  try {
    fd = openSync(path, 'w');
  } catch (err) {
    throw new Error(`--out ${path}: cannot write: ${(err as Error).message}`);
  }
  const out: WriteStream = createWriteStream(path, { fd });
  let failed: Error | null = null;
  out.on('error', (e) => {
    failed ??= e;
  });
  if (csv) out.write(SERIES_COLUMNS.join(',') + '\n');
  return {
    write(row, guests) {
      if (csv) out.write(SERIES_COLUMNS.map((c) => row[c]).join(',') + '\n');
      else out.write(JSON.stringify({ ...row, guest: guests }) + '\n');
    },
    close() {
      return new Promise((resolve, reject) => {
        const done = (err?: Error | null) => {
          const e = err ?? failed;
          if (e) reject(new Error(`--out ${path}: writing failed: ${e.message}`));
          else resolve();
        };
        if (failed || out.destroyed) return done();
        out.end(done);
      });
    },
  };
}
