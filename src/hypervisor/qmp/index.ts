export { QmpClient, QmpCommandError, QmpConnectionError, type QmpEvent, type QmpGreeting } from './client.js';
export { QmpHypervisor, type QmpHypervisorOptions, type QmpGuestConfig } from './hypervisor.js';
export { guestStatsToMom, statValue } from './stats.js';
