// What run.ts needs of a run's manager, whoever it is (ballast's engine in MOM's style or
// ballast's own, Proxmox VE's auto-ballooning, ...): start it once the guests are up, tell it
// when the measured window opens, and stop it for its report.
import type { ManagerReport } from './manager.js';

export interface LabManager {
  /** Connects to the guests and starts its loop. */
  start(): Promise<void>;
  /** The measured window begins now: the report's event counts start here. */
  markWindow(): void;
  /** Stops the loop and closes its connections (once; later calls get the same report). */
  stop(): Promise<ManagerReport>;
}
