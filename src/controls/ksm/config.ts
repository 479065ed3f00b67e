// The [ksm] config section.
import { bool, section } from '../../config-fields.js';

export const ksmSection = section({
  /** Let policies drive KSM (ksm_* host controls). */
  enabled: bool().default(true),
  /** Put the KSM settings found at start back when the daemon stops. */
  restore_on_exit: bool().default(true),
});

export interface KsmSection {
  enabled: boolean;
  restore_on_exit: boolean;
}
