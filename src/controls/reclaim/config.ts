// The [reclaim] config section: page cache reclaimed inside the guest, through its agent.
import { bool, section } from '../../config-fields.js';

export const reclaimSection = section({
  /** Let policies ask guests to reclaim their own page cache (the cache_target guest control),
   *  through each guest's agent. Off by default: it is the one write ballast makes inside a
   *  guest, and it needs the guest's agent to allow file writes. */
  enabled: bool().default(false),
});

export interface ReclaimSection {
  enabled: boolean;
}
