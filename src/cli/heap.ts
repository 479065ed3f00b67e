// V8 settings for the long-lived daemon (`engine.small_heap`, on by default).
//
// --optimize-for-size: V8 favours memory over speed where it decides at run time.
// --semi-space-growth-factor=1: the young generation keeps its initial size (1 MB per
//   semi-space) instead of doubling up to 8 MB per semi-space (16 MB) whenever enough objects
//   survive a scavenge, which at start-up (module loading) and with 1,000 guests (every
//   collection keeps 1,000 samples for the history) always happens. About 8-10 MB of RSS;
//   the price is more frequent (and smaller) scavenges.
//
// Both flags are read by V8 when it decides to grow, so they can be set after start-up, but
// the young generation never shrinks back once grown: they must be set before the modules
// are loaded. main.ts sets them first thing for `ballast run`; run.ts takes them back when the
// config turns small_heap off.
import { setFlagsFromString } from 'node:v8';

export function smallHeap(on: boolean): void {
  setFlagsFromString(on ? '--optimize-for-size' : '--no-optimize-for-size');
  setFlagsFromString(`--semi-space-growth-factor=${on ? 1 : 2}`);
}
