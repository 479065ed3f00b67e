// The simulator's reclaim inside a guest behind the same capability as the real drivers: the
// guest's kernel frees page cache (down to its own minimum) at its next step; with free page
// reporting on, that memory then goes back to the host. Like memory.reclaim, a request for
// more than the guest can give is 'short'. Unlike it, only page cache is taken (the
// simulator's reclaim pushes no anonymous memory to guest swap on request).
import type { GuestReclaimCapability } from '../../types.js';
import type { SimWorld } from '../../sim/world.js';
import { checkReclaimKiB } from '../guest-reclaim.js';

export class SimGuestReclaim implements GuestReclaimCapability {
  constructor(private readonly world: SimWorld) {}

  async reclaim(guestId: string, kib: number): Promise<'done' | 'short'> {
    checkReclaimKiB(kib);
    const g = this.world.guests.get(guestId);
    if (!g) throw new Error(`sim: guest ${guestId} is not running`);
    const spare = Math.max(0, g.cache.size - g.reclaimAskedKiB - this.world.params.guestMinCacheKiB);
    g.reclaimAskedKiB += Math.min(kib, spare);
    return kib <= spare ? 'done' : 'short';
  }
}
