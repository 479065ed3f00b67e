// A QMP server in the test process: speaks the greeting and lets each test script replies.
import { createServer, type Server, type Socket } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const GREETING = { QMP: { version: { qemu: { major: 7, minor: 2, micro: 22 }, package: '' }, capabilities: ['oob'] } };

export interface FakeQmp {
  path: string;
  dir: string;
  server: Server;
  sockets: Socket[];
  /** Commands received, in order. */
  received: { execute: string; id?: unknown; arguments?: Record<string, unknown> }[];
  /** Reply handler: return a message object, a raw string to send, or null to stay silent. */
  handle: (cmd: { execute: string; id?: unknown; arguments?: Record<string, unknown> }, sock: Socket) => unknown;
  greeting: string | null;
  close(): Promise<void>;
  start(): Promise<void>;
}

export async function fakeQmp(path?: string): Promise<FakeQmp> {
  const dir = path ? '' : mkdtempSync(join(tmpdir(), 'ballast-qmp-'));
  const f: FakeQmp = {
    path: path ?? join(dir, 'vm.sock'),
    dir,
    server: null as never,
    sockets: [],
    received: [],
    greeting: JSON.stringify(GREETING) + '\r\n',
    handle: (cmd) => ({ return: {}, id: cmd.id }),
    async close() {
      for (const s of f.sockets) s.destroy();
      await new Promise<void>((r) => f.server.close(() => r()));
    },
    async start() {
      f.server = createServer((sock) => {
        f.sockets.push(sock);
        if (f.greeting !== null) sock.write(f.greeting);
        let buf = '';
        sock.on('data', (d) => {
          buf += d.toString();
          let nl;
          while ((nl = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, nl);
            buf = buf.slice(nl + 1);
            const cmd = JSON.parse(line);
            f.received.push(cmd);
            const r = f.handle(cmd, sock);
            if (r === null || r === undefined) continue;
            sock.write(typeof r === 'string' ? r : JSON.stringify(r) + '\r\n');
          }
        });
        sock.on('error', () => {});
      });
      await new Promise<void>((r) => f.server.listen(f.path, () => r()));
    },
  };
  await f.start();
  return f;
}

export function cleanup(f: FakeQmp): Promise<void> {
  return f.close().then(() => {
    if (f.dir) rmSync(f.dir, { recursive: true, force: true });
  });
}
