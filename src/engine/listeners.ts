// The loop's one event channel: subscribers of collections and cycles (views, API, metrics,
// alerts). A listener that throws is logged and the others still hear the event: nothing a
// subscriber does may stop the loop.

import { errorMessage } from '../errors.js';
import type { Logger } from '../log/logger.js';

export class Listeners<T> {
  private readonly set = new Set<(x: T) => void>();

  constructor(private readonly log: Logger) {}

  /** Returns the unsubscribe. */
  add(l: (x: T) => void): () => void {
    this.set.add(l);
    return () => this.set.delete(l);
  }

  emit(x: T): void {
    for (const l of this.set) {
      try {
        l(x);
      } catch (err) {
        this.log.error('listener_error', { error: errorMessage(err) });
      }
    }
  }
}
