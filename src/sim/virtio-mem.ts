// A simulated virtio-mem device: memory beside the guest's base RAM, plugged and unplugged in
// whole blocks at the device's rates. Plugging adds untouched memory; unplugging takes free
// memory (after dropping page cache to the guest's minimum), never the guest's used memory:
// when what the guest uses would not fit in what remains, the unplug stops short and `size`
// stays above `requested` (Linux's driver cannot empty a block it cannot migrate, and retries).

/** A scenario guest's device, MiB and MiB/s. */
export interface VirtioMemSpec {
  /** The most the device can hold. */
  maxMiB: number;
  /** Plugged at boot (default: all of it). */
  requestedMiB?: number;
  /** Plug granularity (default 2 MiB, a host huge page). */
  blockMiB?: number;
  /** How fast the guest onlines new blocks (default 512 MiB/s). */
  plugMiBps?: number;
  /** How fast it empties and hands back blocks (default 256 MiB/s: pages are migrated first). */
  unplugMiBps?: number;
}

const MIB = 1024;

/** What the guest offers the device: the memory it could give up now, and giving it. */
export interface VirtioMemHost {
  /** KiB the guest could hand back now without touching memory it uses. */
  releasableKiB(): number;
  /** Hand back exactly `kib` KiB (at most releasableKiB()); the host frees what backed it. */
  release(kib: number): void;
  /** `kib` KiB of new, untouched memory. */
  add(kib: number): void;
}

export class SimVirtioMem {
  readonly id = 'virtiomem0';
  readonly maxKiB: number;
  readonly blockKiB: number;
  private readonly plugKiBps: number;
  private readonly unplugKiBps: number;
  /** Plugged now, KiB (whole blocks). */
  size: number;
  /** What was last asked for, KiB. */
  requested: number;
  private budget = 0;

  constructor(spec: VirtioMemSpec) {
    const block = (spec.blockMiB ?? 2) * MIB;
    const max = spec.maxMiB * MIB;
    const req = (spec.requestedMiB ?? spec.maxMiB) * MIB;
    if (!(block > 0) || max % block !== 0 || req % block !== 0 || req > max) {
      throw new Error(
        `virtio-mem: maxMiB ${spec.maxMiB} and requestedMiB ${spec.requestedMiB ?? spec.maxMiB} must be multiples of blockMiB ${block / MIB}, requested at most max`,
      );
    }
    this.maxKiB = max;
    this.blockKiB = block;
    this.plugKiBps = (spec.plugMiBps ?? 512) * MIB;
    this.unplugKiBps = (spec.unplugMiBps ?? 256) * MIB;
    this.size = req;
    this.requested = req;
  }

  /** Move `size` toward `requested` for `dt` seconds, whole blocks only. A rate too slow for a
   *  block per step builds up over steps; nothing builds up while there is nothing to do. */
  step(guest: VirtioMemHost, dt: number): void {
    const blocks = (kib: number) => Math.floor(kib / this.blockKiB + 1e-9) * this.blockKiB;
    const plug = this.requested > this.size;
    const rate = plug ? this.plugKiBps : this.unplugKiBps;
    if (this.requested === this.size) {
      this.budget = 0;
      return;
    }
    this.budget = Math.min(this.budget + rate * dt, Math.max(rate * dt, this.blockKiB));
    const room = plug ? this.requested - this.size : Math.min(this.size - this.requested, guest.releasableKiB());
    const x = blocks(Math.min(room, this.budget));
    if (x <= 0) return;
    this.budget -= x;
    if (plug) {
      guest.add(x);
      this.size += x;
    } else {
      guest.release(x);
      this.size -= x;
    }
  }
}
