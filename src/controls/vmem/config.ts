// The [vmem] config section: virtio-mem, memory plugged and unplugged in whole blocks.
import { bool, section } from '../../config-fields.js';

export const vmemSection = section({
  /** Let policies resize each guest's virtio-mem device (the vmem_target guest control). */
  enabled: bool().default(true),
  /** On stop, plug every device ballast shrank back to its maximum. */
  restore_on_exit: bool().default(false),
});

export interface VmemSection {
  enabled: boolean;
  restore_on_exit: boolean;
}
