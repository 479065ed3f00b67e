// The balloon's config table, [shutdown]: what becomes of the balloons when the daemon stops.
// (Its floor, steps and rollback are [safeguards], shared with every control that can take
// memory from a guest: src/controls/floor.ts.)
import { oneOf, section } from '../../config-fields.js';

export const balloonSection = section({
  /** On stop: leave balloons as they are, or deflate every guest to balloon_max. */
  balloons: oneOf(['leave', 'restore'] as const).default('leave'),
});

export interface BalloonSection {
  balloons: 'leave' | 'restore';
}
