// Swap that costs what it costs on a real host. The lab machine's disk, with 24 GiB of page
// cache around it, makes swap nearly free, which hides what ballooning buys. A preset puts the
// experiment's swap on a loop device over a file (direct I/O, so the host's page cache does
// not absorb it) and throttles that device for the guests' QEMUs with the block cgroup
// (v1 blkio.throttle.*, v2 io.max): swap-ins (read in the faulting task's context) and swap-outs
// from direct reclaim then wait as they would on the device the preset names. Background
// writeback by kswapd is not throttled (it runs outside the guests' cgroup), as on a real host
// where kswapd's writes also compete less with the faulting task.
import { existsSync, mkdirSync, readFileSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { run, runOk } from '../../lab/proc.js';
import { LabUnavailable } from './errors.js';
import { v1Mount } from './domain.js';
import { majorMinor } from '../../host/swap-speed.js';

export type SwapPresetName = 'host' | 'nvme' | 'ssd' | 'hdd';
export const SWAP_PRESETS: readonly SwapPresetName[] = ['host', 'nvme', 'ssd', 'hdd'];

export interface SwapPreset {
  name: Exclude<SwapPresetName, 'host'>;
  /** I/O operations per second the device allows, reads and writes (each a throttle). */
  readIops: number;
  writeIops: number;
  /** Bytes per second, reads and writes. */
  readBps: number;
  writeBps: number;
  /** Where the figures come from. */
  basis: string;
}

const MB = 1_000_000;

/**
 * Random 4 KiB operations at a queue depth of one are what a swap-in is: the faulting thread
 * waits for one page cluster at a time. The figures are typical of each class at that depth
 * (datasheets quote far higher numbers at queue depth 32): a 7,200 rpm disk's seek plus half a
 * rotation is ~8 ms, so ~120 operations per second; a SATA SSD answers a 4 KiB read in
 * ~100-200 µs; an NVMe drive in ~50-100 µs. Bandwidth caps are the sequential rates.
 */
export const PRESETS: Record<SwapPreset['name'], SwapPreset> = {
  nvme: {
    name: 'nvme',
    readIops: 12_000,
    writeIops: 12_000,
    readBps: 2_000 * MB,
    writeBps: 1_500 * MB,
    basis: '~80 µs per 4 KiB read at queue depth 1, 2 GB/s',
  },
  ssd: {
    name: 'ssd',
    readIops: 5_000,
    writeIops: 4_000,
    readBps: 500 * MB,
    writeBps: 450 * MB,
    basis: '~200 µs per 4 KiB read at queue depth 1, 500 MB/s (SATA)',
  },
  hdd: {
    name: 'hdd',
    readIops: 120,
    writeIops: 120,
    readBps: 150 * MB,
    writeBps: 150 * MB,
    basis: '~8 ms per random operation (7,200 rpm: seek + half a turn), 150 MB/s',
  },
};

export function parseSwapPreset(v: string): SwapPresetName {
  const s = v.trim().toLowerCase();
  if (!(SWAP_PRESETS as readonly string[]).includes(s)) throw new Error(`--swap must be one of ${SWAP_PRESETS.join(', ')}, got "${v}"`);
  return s as SwapPresetName;
}

/** The throttle files' contents for a device (pure): v1 one file per limit, v2 one io.max line. */
export function throttleLines(dev: string, p: SwapPreset): { v1: Record<string, string>; v2: string } {
  return {
    v1: {
      'blkio.throttle.read_iops_device': `${dev} ${p.readIops}`,
      'blkio.throttle.write_iops_device': `${dev} ${p.writeIops}`,
      'blkio.throttle.read_bps_device': `${dev} ${p.readBps}`,
      'blkio.throttle.write_bps_device': `${dev} ${p.writeBps}`,
    },
    v2: `${dev} riops=${p.readIops} wiops=${p.writeIops} rbps=${p.readBps} wbps=${p.writeBps}`,
  };
}

export interface ThrottledSwap {
  preset: SwapPreset;
  file: string;
  loop: string;
  /** MAJ:MIN of the loop device. */
  dev: string;
  /** v1: the blkio cgroup the QEMUs join; v2: null (io.max is set on each run's domain). */
  blkioDir: string | null;
  /** What a probe measured through the throttle: 4 KiB direct reads, one at a time. */
  measured: { readIops: number; readLatencyMs: number } | null;
}

function devOf(path: string): string {
  return majorMinor(statSync(path, { bigint: true }).rdev);
}

/**
 * Adds a swap file on a throttled loop device. Priority 32767 so the domain swaps there before
 * any swap the host already has. `version`: the memory cgroup's (v2 sets io.max per domain).
 */
export async function addThrottledSwap(preset: SwapPreset, sizeMiB: number, dir: string, version: 1 | 2, say: (m: string) => void): Promise<ThrottledSwap> {
  const file = join(dir, `ballast-lab-experiment-${process.pid}.swap`);
  let blkioDir: string | null = null;
  if (version === 1) {
    const mount = v1Mount('blkio');
    if (!mount) throw new LabUnavailable(`--swap ${preset.name} needs the blkio cgroup controller (cgroup v1) or io (v2); none is mounted`);
    blkioDir = join(mount, `ballast-lab-experiment-${process.pid}`);
  }
  const out: ThrottledSwap = { preset, file, loop: '', dev: '', blkioDir, measured: null };
  let flag = preset.name === 'hdd' ? 'rotational' : 'not rotational';
  try {
    await runOk('fallocate', ['-l', `${sizeMiB}M`, file]);
    await runOk('chmod', ['600', file]);
    out.loop = (await runOk('losetup', ['--find', '--show', '--direct-io=on', file])).trim();
    out.dev = devOf(out.loop);
    // The device reports what the preset emulates (a loop device inherits the flag of the
    // disk under its file, which is the lab machine's, not the preset's): ballast's guard
    // reads it (swap_rotational) as a real host's swap would give it.
    try {
      writeFileSync(`/sys/block/${basename(out.loop)}/queue/rotational`, preset.name === 'hdd' ? '1' : '0');
    } catch (e) {
      flag = `rotational flag left as the kernel set it (${(e as Error).message})`;
    }
    await runOk('mkswap', [out.loop]);
    await runOk('swapon', ['--priority', '32767', out.loop]);
    if (blkioDir) {
      mkdirSync(blkioDir, { recursive: true });
      for (const [f, v] of Object.entries(throttleLines(out.dev, preset).v1)) writeFileSync(join(blkioDir, f), v);
    }
  } catch (e) {
    await removeThrottledSwap(out, () => {});
    if (e instanceof LabUnavailable) throw e;
    throw new LabUnavailable(`cannot set up the ${preset.name} swap device: ${(e as Error).message}`);
  }
  say(`swap: ${sizeMiB} MiB on ${out.loop} (${out.dev}, over ${file}, direct I/O), throttled as ${preset.name}: ${preset.basis}; ${flag}`);
  return out;
}

/** Sets the device's limits on a v2 cgroup (the run's domain; the root must delegate io). */
export function throttleV2(domainDir: string, mountPoint: string, s: ThrottledSwap): void {
  writeFileSync(join(mountPoint, 'cgroup.subtree_control'), '+io');
  writeFileSync(join(domainDir, 'io.max'), throttleLines(s.dev, s.preset).v2);
}

/**
 * How fast the throttled device answers: `dd` of 4 KiB direct reads, one at a time, from a
 * shell that first joins the throttling cgroup (v1; on v2 `cgroupDir` is a domain with io.max).
 * Reads only: the swap area's header and first pages, nothing is written.
 */
export async function probeSwap(s: ThrottledSwap, cgroupDir: string, seconds = 3): Promise<{ readIops: number; readLatencyMs: number }> {
  const count = Math.max(20, Math.round(Math.min(s.preset.readIops, 20_000) * seconds));
  const t0 = process.hrtime.bigint();
  const r = await run(
    'sh',
    ['-c', `echo $$ > "${join(cgroupDir, 'cgroup.procs')}" && exec dd if="${s.loop}" of=/dev/null bs=4096 count=${count} iflag=direct status=none`],
    { timeoutMs: 120_000 },
  );
  const s_ = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.code !== 0) throw new Error(`probe of ${s.loop} failed: ${r.stderr.trim()}`);
  const iops = count / s_;
  return { readIops: Math.round(iops), readLatencyMs: Math.round((1000 / iops) * 100) / 100 };
}

export async function removeThrottledSwap(s: ThrottledSwap, say: (m: string) => void): Promise<void> {
  if (s.loop) {
    const active = readFileSync('/proc/swaps', 'utf8').includes(s.loop + ' ');
    if (active) {
      const r = await run('swapoff', [s.loop], { timeoutMs: 600_000 });
      if (r.code !== 0) say(`swap: swapoff ${s.loop} failed: ${r.stderr.trim()} (left active; run swapoff ${s.loop}; losetup -d ${s.loop}; rm ${s.file})`);
    }
    await run('losetup', ['-d', s.loop]);
  }
  if (s.blkioDir && existsSync(s.blkioDir)) {
    try {
      rmdirSync(s.blkioDir);
    } catch (e) {
      say(`swap: cannot remove ${s.blkioDir}: ${(e as Error).message}`);
    }
  }
  await run('rm', ['-f', s.file]);
  if (s.loop) say(`swap: ${s.loop} switched off and detached, ${s.file} deleted`);
}
