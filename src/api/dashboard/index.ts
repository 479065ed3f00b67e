// The dashboard: one page (web/) that draws the daemon's host and guests over time with uPlot
// and lists policies, actions with their reasons, alerts and errors, polling the read-only JSON
// API. Everything it loads is served here: the page from the package's web/ folder, uPlot from
// node_modules. Nothing comes from the internet.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HttpError, type Handler } from '../http/server.js';

const here = dirname(fileURLToPath(import.meta.url));
// src/api/dashboard and dist/api/dashboard are both three levels below the package root.
const WEB = resolve(here, '..', '..', '..', 'web');

function uplotDir(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve('uplot')), '.');
}

interface Asset {
  file: () => string;
  type: string;
}

const ASSETS: Record<string, Asset> = {
  '/': { file: () => join(WEB, 'index.html'), type: 'text/html; charset=utf-8' },
  '/dashboard.js': { file: () => join(WEB, 'dashboard.js'), type: 'text/javascript; charset=utf-8' },
  '/dashboard.css': { file: () => join(WEB, 'dashboard.css'), type: 'text/css; charset=utf-8' },
  '/uplot.js': { file: () => join(uplotDir(), 'uPlot.iife.min.js'), type: 'text/javascript; charset=utf-8' },
  '/uplot.css': { file: () => join(uplotDir(), 'uPlot.min.css'), type: 'text/css; charset=utf-8' },
};

export function dashboardHandler(): Handler {
  const cache = new Map<string, Buffer>();
  return (ctx) => {
    const path = ctx.url.pathname === '/index.html' ? '/' : ctx.url.pathname;
    if (path === '/favicon.ico') {
      ctx.res.writeHead(204).end();
      return true;
    }
    const asset = ASSETS[path];
    if (!asset) return false;
    if (ctx.req.method !== 'GET' && ctx.req.method !== 'HEAD') {
      ctx.res.setHeader('allow', 'GET, HEAD');
      throw new HttpError(405, 'method not allowed', `${ctx.req.method} is not one of GET, HEAD`);
    }
    let body = cache.get(path);
    if (!body) {
      body = readFileSync(asset.file());
      cache.set(path, body);
    }
    ctx.res.writeHead(200, {
      'content-type': asset.type,
      'content-length': body.length,
      'cache-control': 'no-cache',
      // The page loads only what this server serves.
      'content-security-policy': "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:",
      'x-content-type-options': 'nosniff',
    });
    ctx.res.end(ctx.req.method === 'HEAD' ? undefined : body);
    return true;
  };
}
