// A client of the daemon's JSON API over its unix socket, for `ballast status` and
// `ballast policy set|get|list|delete`.
import { request } from 'node:http';

export const DEFAULT_API_SOCKET = '/run/ballast/api.sock';

export class ApiError extends Error {
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
  }
}

export async function apiCall(socket: string, method: string, path: string, body?: string, contentType = 'text/plain'): Promise<unknown> {
  const res = await new Promise<{ status: number; text: string }>((resolve, reject) => {
    const req = request(
      {
        socketPath: socket,
        method,
        path: `/api/v1/${path}`,
        headers: body === undefined ? {} : { 'content-type': contentType, 'content-length': Buffer.byteLength(body) },
        timeout: 10_000,
      },
      (r) => {
        const chunks: Buffer[] = [];
        r.on('data', (c: Buffer) => chunks.push(c));
        r.on('end', () => resolve({ status: r.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('no answer within 10 s')));
    req.on('error', (e: NodeJS.ErrnoException) => {
      const why =
        e.code === 'ENOENT' || e.code === 'ECONNREFUSED' ? 'no ballast daemon answers there (is it running? see api.socket in its config)' : e.message;
      reject(new ApiError(`${socket}: ${why}`));
    });
    if (body !== undefined) req.write(body);
    req.end();
  });
  if (res.status === 204) return null;
  let json: unknown;
  try {
    json = JSON.parse(res.text);
  } catch {
    throw new ApiError(`HTTP ${res.status}: ${res.text.slice(0, 200)}`, res.status);
  }
  if (res.status >= 400) {
    const e = json as { error?: string; detail?: unknown };
    const detail = Array.isArray(e.detail) ? e.detail.join('; ') : e.detail;
    throw new ApiError(`${e.error ?? `HTTP ${res.status}`}${detail ? `: ${detail}` : ''}`, res.status);
  }
  return json;
}
