// The real-VM lab: guest image build, libvirtd, guests under libvirt or plain QEMU, console parser.
export {
  ensureLibvirtd,
  stopLibvirtd,
  restartLibvirtd,
  libvirtdAnswers,
  labLibvirtdPid,
  libvirtdIdle,
  libvirtdClientCount,
  LIBVIRTD_PIDFILE,
  type LibvirtdHandle,
} from './libvirtd.js';
export { ensureLabBuilt, currentBuild, BALLOON_MODULES, type LabBuild, type LabManifest } from './build.js';
export {
  startLabGuests,
  stopLabGuests,
  listLabGuests,
  labGuestConsole,
  labGuestSummary,
  waitGuestReady,
  DEFAULT_MEM_MIB,
  DEFAULT_WORKLOAD,
  type LabGuest,
  type StartGuestsOptions,
} from './guests.js';
export { startQemuGuest, stopQemuGuest, stopAllQemuGuests, listQemuGuests, type QemuGuest, type QemuGuestOptions } from './qemu.js';
export {
  parseConsole,
  parseConsoleLine,
  summarizeConsole,
  balloonReady,
  validateWorkloadSpec,
  type ConsoleLine,
  type ConsoleSummary,
  type MeminfoReport,
  type RateReport,
} from './console.js';
export { labAvailable, type LabAvailability } from './available.js';
export { GUEST_PREFIX, LIBVIRT_URI, LIBVIRT_SOCK, RUN_DIR, BUILD_DIR } from './paths.js';
export { memCgroupDirOf, libvirtGuestPid, cgroupPathFrom } from './cgroup.js';
