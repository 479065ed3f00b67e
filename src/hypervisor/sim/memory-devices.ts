// The simulator's virtio-mem devices behind the same capability as the real drivers: a guest
// whose scenario gives it `virtioMem` has one device, `virtiomem0` (libvirt's name for it).
import type { MemoryDevice, MemoryDeviceCapability } from '../../types.js';
import type { SimWorld } from '../../sim/world.js';
import { checkResize } from '../virtio-mem.js';

export class SimMemoryDevices implements MemoryDeviceCapability {
  constructor(private readonly world: SimWorld) {}

  private guest(id: string) {
    const g = this.world.guests.get(id);
    if (!g) throw new Error(`sim: guest ${id} is not running`);
    return g;
  }

  async list(guestId: string): Promise<MemoryDevice[]> {
    const d = this.guest(guestId).vmem;
    return d ? [{ id: d.id, size: d.size, requested: d.requested, block: d.blockKiB, max: d.maxKiB }] : [];
  }

  async resize(guestId: string, deviceId: string, requestedKiB: number): Promise<void> {
    const g = this.guest(guestId);
    checkResize(guestId, await this.list(guestId), deviceId, requestedKiB);
    g.vmem!.requested = requestedKiB;
  }
}
