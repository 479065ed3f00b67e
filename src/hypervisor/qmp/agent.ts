// The QEMU guest agent on its own unix socket (QEMU's `-chardev socket,...,server=on` behind a
// virtserialport named org.qemu.guest_agent.0). Unlike QMP it has no greeting and no command
// ids: replies come in order, and a reply the client stopped waiting for (a timeout, a guest
// that was busy) would be taken for the next command's. So every connection starts with
// guest-sync-delimited: the agent answers it after a 0xFF byte, everything before that byte is
// stale, and only the reply carrying our random id ends the sync. Any timeout or garbage drops
// the connection; the next command reconnects and syncs again.
import { createConnection, type Socket } from 'node:net';
import { randomInt } from 'node:crypto';
import { describeMessage, QmpLineReader, type QmpMessage } from './framing.js';
import { GuestAgentError } from '../guest-agent.js';

export class GuestAgentUnavailable extends Error {
  override name = 'GuestAgentUnavailable';
  readonly kind = 'unavailable';
}

export class GuestAgentCommandError extends Error {
  override name = 'GuestAgentCommandError';
  constructor(
    readonly command: string,
    readonly errorClass: string,
    desc: string,
  ) {
    super(`guest agent ${command}: ${errorClass}: ${desc}`);
  }
}

const DELIMITER = 0xff;

export class GuestAgentClient {
  private sock: Socket | null = null;
  private reader = new QmpLineReader(64 * 1024 * 1024);
  /** Bytes are dropped until the sync reply's 0xFF. */
  private awaitingDelimiter = true;
  private inbox: QmpMessage[] = [];
  private waiter: ((m: QmpMessage | Error) => void) | null = null;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    readonly path: string,
    private readonly timeoutMs = 2000,
  ) {}

  /** Runs an agent command (one at a time, in call order); resolves with its `return`. A
   *  command that makes the guest work (a reclaim) may wait longer than the client's default. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, timeoutMs = this.timeoutMs): Promise<T> {
    const run = () => this.run(command, args, timeoutMs) as Promise<T>;
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => undefined);
    return p;
  }

  close(): void {
    this.drop(new GuestAgentUnavailable(`guest agent ${this.path}: closed by ballast`));
  }

  private async run(command: string, args: Record<string, unknown> | undefined, timeoutMs: number): Promise<unknown> {
    if (!this.sock) await this.connectAndSync();
    const m = await this.request(args === undefined ? { execute: command } : { execute: command, arguments: args }, command, timeoutMs);
    if ('error' in m) {
      const e = (m.error ?? {}) as { class?: unknown; desc?: unknown };
      throw new GuestAgentCommandError(command, String(e.class ?? 'UnknownError'), String(e.desc ?? '(no description)'));
    }
    if (!('return' in m)) {
      const err = new GuestAgentError(`guest agent ${this.path}: reply to ${command} has no "return": ${describeMessage(m)}`);
      this.drop(err);
      throw err;
    }
    return m.return;
  }

  private async connectAndSync(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const sock = createConnection(this.path);
      const timer = setTimeout(() => {
        sock.destroy();
        reject(new GuestAgentUnavailable(`guest agent ${this.path}: cannot connect within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      sock.once('connect', () => {
        clearTimeout(timer);
        this.attach(sock);
        resolve();
      });
      sock.once('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        const why = err.code === 'ENOENT' ? 'no such socket' : err.code === 'ECONNREFUSED' ? 'connection refused (QEMU gone?)' : err.message;
        reject(new GuestAgentUnavailable(`guest agent ${this.path}: ${why}`));
      });
    });
    const id = randomInt(1, 2 ** 47);
    // A leading 0xFF resets the agent's JSON parser, whatever a dropped client left half-sent.
    this.sock!.write(Buffer.from([DELIMITER]));
    for (let m = await this.request({ execute: 'guest-sync-delimited', arguments: { id } }, 'guest-sync-delimited'); ; ) {
      if (m.return === id) return;
      m = await this.next('guest-sync-delimited'); // a stale reply after the delimiter
    }
  }

  private attach(sock: Socket): void {
    this.sock = sock;
    this.reader = new QmpLineReader(64 * 1024 * 1024);
    this.awaitingDelimiter = true;
    this.inbox = [];
    sock.on('data', (chunk: Buffer) => {
      if (this.sock !== sock) return;
      try {
        let data = chunk;
        if (this.awaitingDelimiter) {
          const at = data.indexOf(DELIMITER);
          if (at < 0) return;
          this.awaitingDelimiter = false;
          data = data.subarray(at + 1);
        }
        for (const f of this.reader.push(data)) {
          if (!f.ok) throw new GuestAgentError(`guest agent ${this.path}: garbage on the socket, ${f.error}`);
          this.deliver(f.message);
        }
      } catch (err) {
        this.drop(err instanceof GuestAgentError ? err : new GuestAgentError(`guest agent ${this.path}: ${(err as Error).message}`));
      }
    });
    sock.on('error', () => undefined); // 'close' follows
    sock.on('close', () => {
      if (this.sock === sock) this.drop(new GuestAgentUnavailable(`guest agent ${this.path}: connection closed`));
    });
  }

  private deliver(m: QmpMessage): void {
    const w = this.waiter;
    if (w) {
      this.waiter = null;
      w(m);
    } else this.inbox.push(m);
  }

  private request(msg: Record<string, unknown>, what: string, timeoutMs = this.timeoutMs): Promise<QmpMessage> {
    if (!this.sock) return Promise.reject(new GuestAgentUnavailable(`guest agent ${this.path}: not connected`));
    this.sock.write(JSON.stringify(msg) + '\n');
    return this.next(what, timeoutMs);
  }

  private next(what: string, timeoutMs = this.timeoutMs): Promise<QmpMessage> {
    const queued = this.inbox.shift();
    if (queued) return Promise.resolve(queued);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const err = new GuestAgentUnavailable(`guest agent ${this.path}: no reply to ${what} within ${timeoutMs} ms (agent not running?)`);
        this.drop(err);
      }, timeoutMs);
      this.waiter = (m) => {
        clearTimeout(timer);
        if (m instanceof Error) reject(m);
        else resolve(m);
      };
    });
  }

  /** Ends the connection; whoever waits gets `err`. The next command reconnects. */
  private drop(err: Error): void {
    const sock = this.sock;
    this.sock = null;
    this.inbox = [];
    sock?.destroy();
    const w = this.waiter;
    this.waiter = null;
    w?.(err);
  }
}
