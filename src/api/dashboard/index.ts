import type { Handler } from '../http/server.js';
export function dashboardHandler(): Handler { return () => false; }
