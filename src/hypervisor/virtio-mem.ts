// The checks every driver makes before asking a virtio-mem device for a new size, so that a bad
// request is refused with the same clear message whichever hypervisor would have refused it.
import type { MemoryDevice } from '../types.js';

/** The device `deviceId` among `devices`, once `requestedKiB` is a size it can take; throws otherwise. */
export function checkResize(guestId: string, devices: readonly MemoryDevice[], deviceId: string, requestedKiB: number): MemoryDevice {
  if (!Number.isSafeInteger(requestedKiB) || requestedKiB < 0) {
    throw new RangeError(`virtio-mem ${deviceId} on ${guestId}: requested size must be a whole, non-negative KiB count, not ${requestedKiB}`);
  }
  const dev = devices.find((d) => d.id === deviceId);
  if (!dev) {
    const have = devices.map((d) => d.id).join(', ') || 'none';
    throw new Error(`guest ${guestId} has no virtio-mem device ${deviceId} (its devices: ${have})`);
  }
  if (requestedKiB % dev.block !== 0)
    throw new RangeError(`virtio-mem ${deviceId} on ${guestId}: ${requestedKiB} KiB is not a multiple of its ${dev.block} KiB block`);
  if (requestedKiB > dev.max) throw new RangeError(`virtio-mem ${deviceId} on ${guestId}: ${requestedKiB} KiB is more than its ${dev.max} KiB`);
  return dev;
}
