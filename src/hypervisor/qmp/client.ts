// A QMP client over a unix socket: waits for the greeting, negotiates capabilities, sends
// commands with ids and matches replies by id, and passes asynchronous events (which QEMU
// may send between a command and its reply) to listeners.
import type { FailureKind } from '../../errors.js';
import { EventEmitter } from 'node:events';
import { createConnection, type Socket } from 'node:net';
import { describeMessage, LineTooLongError, QmpLineReader, type QmpMessage } from './framing.js';

export interface QmpEvent {
  event: string;
  data: Record<string, unknown>;
  /** Seconds since the epoch, from QEMU's timestamp. */
  timestamp: number;
}

export interface QmpGreeting {
  version: { qemu: { major: number; minor: number; micro: number }; package?: string };
  capabilities: string[];
}

/** An error reply from QEMU: `class` is QMP's error class (GenericError, DeviceNotFound, ...). */
export class QmpCommandError extends Error {
  constructor(
    readonly command: string,
    readonly errorClass: string,
    readonly desc: string,
  ) {
    super(`QMP ${command}: ${errorClass}: ${desc}`);
    this.name = 'QmpCommandError';
  }

  /** QMP's error classes as failure kinds (src/errors.ts). */
  get kind(): FailureKind {
    if (this.errorClass === 'CommandNotFound') return 'unsupported';
    if (this.errorClass === 'DeviceNotActive' || this.errorClass === 'DeviceNotFound') return 'unavailable';
    return 'failed';
  }
}

/** The connection failed or the peer does not speak QMP. */
export class QmpConnectionError extends Error {
  readonly kind: FailureKind = 'unavailable';
  constructor(
    message: string,
    readonly code?: string,
  ) {
    super(message);
    this.name = 'QmpConnectionError';
  }
}

export interface QmpClientOptions {
  /** Per-command reply timeout. */
  timeoutMs?: number;
  /** Time allowed for connecting, the greeting and capability negotiation. */
  connectTimeoutMs?: number;
}

interface Pending {
  command: string;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

/**
 * Events: 'event' (QmpEvent), 'protocol-error' (Error: garbage on the socket; the connection
 * goes on), 'close' (reason string), 'greeted' (QmpGreeting, before qmp_capabilities). Call connect() again after a close to reconnect.
 */
export class QmpClient extends EventEmitter {
  private socket: Socket | null = null;
  private pending = new Map<string, Pending>();
  private nextId = 1;
  private ready = false;
  greeting: QmpGreeting | null = null;

  constructor(
    readonly path: string,
    private readonly opts: QmpClientOptions = {},
  ) {
    super();
  }

  get connected(): boolean {
    return this.ready && this.socket !== null && !this.socket.destroyed;
  }

  connect(): Promise<QmpGreeting> {
    if (this.socket) this.close();
    const timeoutMs = this.opts.connectTimeoutMs ?? 5000;
    return new Promise<QmpGreeting>((resolve, reject) => {
      const sock = createConnection(this.path);
      this.socket = sock;
      const reader = new QmpLineReader();
      let settled = false;
      let greeted = false;
      const fail = (err: Error) => {
        if (settled) return;
        settled = true;
        this.ready = false;
        clearTimeout(timer);
        if (this.socket === sock) this.socket = null;
        sock.destroy();
        reject(err);
      };
      const timer = setTimeout(
        () => fail(new QmpConnectionError(`QMP ${this.path}: no greeting within ${timeoutMs} ms (not a QMP socket, or QEMU is busy with another client)`)),
        timeoutMs,
      );

      sock.on('error', (err: NodeJS.ErrnoException) => {
        const msg = err.code === 'ENOENT' ? 'no such socket' : err.code === 'ECONNREFUSED' ? 'connection refused (QEMU gone?)' : err.message;
        if (!settled) fail(new QmpConnectionError(`QMP ${this.path}: ${msg}`, err.code));
        // After setup, 'close' follows and reports.
      });
      sock.on('close', () => {
        if (!settled) fail(new QmpConnectionError(`QMP ${this.path}: closed before the greeting`));
        this.onClosed(sock, 'connection closed');
      });
      sock.on('data', (chunk: Buffer) => {
        // Nothing a peer sends may end the process: any failure here drops this connection.
        try {
          onData(chunk);
        } catch (err) {
          const e = new QmpConnectionError(`QMP ${this.path}: ${(err as Error).message}; dropping the connection`);
          if (!settled) fail(e);
          else this.emit('protocol-error', e);
          sock.destroy();
        }
      });
      const onData = (chunk: Buffer) => {
        let frames;
        try {
          frames = reader.push(chunk);
        } catch (err) {
          const e = new QmpConnectionError(`QMP ${this.path}: ${(err as Error).message}; dropping the connection`);
          if (!settled) return fail(e);
          if (err instanceof LineTooLongError) this.emit('protocol-error', e);
          sock.destroy();
          return;
        }
        for (const f of frames) {
          if (!f.ok) {
            const e = new QmpConnectionError(`QMP ${this.path}: garbage on the socket, ${f.error}`);
            if (!settled) return fail(e);
            this.emit('protocol-error', e);
            continue;
          }
          const m = f.message;
          if (!greeted) {
            if (!('QMP' in m)) return fail(new QmpConnectionError(`QMP ${this.path}: expected the QMP greeting, got ${describeMessage(m)}`));
            const g = m.QMP as QmpGreeting;
            this.greeting = g;
            greeted = true;
            // A caller sharing the socket with other clients counts its hold from here: QEMU
            // serves nobody else from the moment it greets us.
            this.emit('greeted', g);
            // Capabilities negotiation: the only command allowed before it.
            this.ready = true;
            this.send('qmp_capabilities', undefined, timeoutMs).then(
              () => {
                if (settled) return;
                settled = true;
                clearTimeout(timer);
                resolve(g);
              },
              (err: Error) => fail(err),
            );
            continue;
          }
          this.dispatch(m);
        }
      };
    });
  }

  private dispatch(m: QmpMessage): void {
    if (typeof m.event === 'string') {
      const ts = m.timestamp as { seconds?: number; microseconds?: number } | undefined;
      this.emit('event', {
        event: m.event,
        data: (m.data as Record<string, unknown>) ?? {},
        timestamp: (ts?.seconds ?? 0) + (ts?.microseconds ?? 0) / 1e6,
      } satisfies QmpEvent);
      return;
    }
    if ('return' in m || 'error' in m) {
      const id = typeof m.id === 'string' ? m.id : undefined;
      const p = id === undefined ? undefined : this.pending.get(id);
      if (!p) {
        this.emit('protocol-error', new QmpConnectionError(`QMP ${this.path}: reply with unknown id ${describeMessage(m.id)}`));
        return;
      }
      this.pending.delete(id!);
      clearTimeout(p.timer);
      if ('error' in m) {
        const e = (m.error ?? {}) as { class?: string; desc?: string };
        p.reject(new QmpCommandError(p.command, e.class ?? 'UnknownError', e.desc ?? '(no description)'));
      } else p.resolve(m.return);
      return;
    }
    this.emit('protocol-error', new QmpConnectionError(`QMP ${this.path}: unexpected message ${describeMessage(m)}`));
  }

  private send(command: string, args: Record<string, unknown> | undefined, timeoutMs: number): Promise<unknown> {
    const sock = this.socket;
    if (!sock || sock.destroyed || !this.ready) return Promise.reject(new QmpConnectionError(`QMP ${this.path}: not connected`));
    const id = `b${this.nextId++}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new QmpConnectionError(`QMP ${this.path}: no reply to ${command} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { command, resolve, reject, timer });
      const msg: Record<string, unknown> = { execute: command, id };
      if (args !== undefined) msg.arguments = args;
      sock.write(JSON.stringify(msg) + '\n');
    });
  }

  /** Runs a QMP command; resolves with its `return`, rejects with QmpCommandError on an error reply. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T> {
    return this.send(command, args, this.opts.timeoutMs ?? 10000) as Promise<T>;
  }

  private onClosed(sock: Socket, reason: string): void {
    if (this.socket !== sock) return;
    this.socket = null;
    const wasReady = this.ready;
    this.ready = false;
    for (const [, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new QmpConnectionError(`QMP ${this.path}: ${reason} while waiting for ${p.command}`));
    }
    this.pending.clear();
    if (wasReady) this.emit('close', reason);
  }

  close(): void {
    const sock = this.socket;
    if (!sock) return;
    this.onClosed(sock, 'closed by ballast');
    sock.destroy();
  }
}
