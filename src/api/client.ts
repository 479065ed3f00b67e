// A client of the daemon's JSON API over its unix socket, for `ballast status` and
// `ballast policy set|get|list|delete`. Whatever answers on the socket may be something else
// or broken, so an answer is bounded in time (idle and overall) and size, and a cut-short
// body is an error with a message, never a silent exit.
import { request } from 'node:http';
import { printable } from '../printable.js';

export const DEFAULT_API_SOCKET = '/run/ballast/api.sock';

/** The whole call, connect to last byte (a peer trickling bytes never trips the idle timeout). */
export const DEFAULT_DEADLINE_MS = 30_000;
/** Silence this long on the socket ends the call. */
export const DEFAULT_IDLE_MS = 10_000;
/** The largest answer taken: /api/v1/guests at thousands of guests is a few MiB. */
export const DEFAULT_MAX_BYTES = 64 * 1024 * 1024;

export interface ApiCallOptions {
  deadlineMs?: number;
  idleMs?: number;
  maxBytes?: number;
}

export class ApiError extends Error {
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
  }
}

const seconds = (ms: number) => `${ms % 1000 === 0 ? ms / 1000 : (ms / 1000).toFixed(1)} s`;

function fetchText(socket: string, method: string, path: string, body: string | undefined, contentType: string, o: ApiCallOptions) {
  const deadlineMs = o.deadlineMs ?? DEFAULT_DEADLINE_MS;
  const idleMs = o.idleMs ?? DEFAULT_IDLE_MS;
  const maxBytes = o.maxBytes ?? DEFAULT_MAX_BYTES;
  return new Promise<{ status: number; text: string }>((resolve, reject) => {
    let settled = false;
    const fail = (why: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      req.destroy();
      reject(new ApiError(`${socket}: ${why}`));
    };
    const req = request(
      {
        socketPath: socket,
        method,
        path: `/api/v1/${path}`,
        headers: body === undefined ? {} : { 'content-type': contentType, 'content-length': Buffer.byteLength(body) },
        timeout: idleMs,
      },
      (r) => {
        const status = r.statusCode ?? 0;
        const declared = Number(r.headers['content-length']);
        if (Number.isFinite(declared) && declared > maxBytes) {
          fail(`the answer (HTTP ${status}) would be ${declared} bytes, more than the ${maxBytes} a ballast daemon sends: not a ballast daemon?`);
          return;
        }
        const chunks: Buffer[] = [];
        let size = 0;
        r.on('data', (c: Buffer) => {
          size += c.length;
          if (size > maxBytes) fail(`the answer (HTTP ${status}) passed ${maxBytes} bytes and was cut off: not a ballast daemon?`);
          else chunks.push(c);
        });
        const cutShort = () => fail(`the answer (HTTP ${status}) was cut short after ${size} bytes: the daemon closed the connection`);
        r.on('error', (e) => (e.message === 'aborted' ? cutShort() : fail(`the answer (HTTP ${status}) broke off after ${size} bytes: ${e.message}`)));
        r.on('end', () => {
          if (settled) return;
          settled = true;
          clearTimeout(deadline);
          resolve({ status, text: Buffer.concat(chunks).toString('utf8') });
        });
        // A peer that closes mid-body: Node ends the response without 'end' (and, depending on
        // the framing, without 'error').
        r.on('close', () => {
          if (!r.complete) cutShort();
        });
      },
    );
    const deadline = setTimeout(() => fail(`no complete answer within ${seconds(deadlineMs)}`), deadlineMs);
    req.on('timeout', () => fail(`nothing received for ${seconds(idleMs)}`));
    req.on('error', (e: NodeJS.ErrnoException) => {
      fail(e.code === 'ENOENT' || e.code === 'ECONNREFUSED' ? 'no ballast daemon answers there (is it running? see api.socket in its config)' : e.message);
    });
    if (body !== undefined) req.write(body);
    req.end();
  });
}

export async function apiCall(
  socket: string,
  method: string,
  path: string,
  body?: string,
  contentType = 'text/plain',
  opts: ApiCallOptions = {},
): Promise<unknown> {
  const res = await fetchText(socket, method, path, body, contentType, opts);
  if (res.status === 204) return null;
  let json: unknown;
  try {
    json = JSON.parse(res.text);
  } catch {
    throw new ApiError(`HTTP ${res.status}, not JSON: ${printable(res.text.slice(0, 200))}`, res.status);
  }
  if (res.status >= 400) {
    const e = (json ?? {}) as { error?: unknown; detail?: unknown };
    const detail = Array.isArray(e.detail) ? e.detail.join('; ') : e.detail;
    // The daemon's words, printed on a terminal: shown, never obeyed.
    throw new ApiError(printable(`${e.error ?? `HTTP ${res.status}`}${detail ? `: ${detail}` : ''}`), res.status);
  }
  return json;
}
