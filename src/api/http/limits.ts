// What one client, and all clients together, can make a listener do (every listener: the JSON
// API's socket and TCP address, the dashboard's, /metrics', MOM's XML-RPC).
//
// Node's http server parses every pipelined request of a chunk and emits each at once; a
// handler's response to a client that never reads waits in memory. So here:
// - one request per connection runs at a time: the next starts when the previous response
//   has been handed to the kernel (its 'finish'); a client that does not read stops its own
//   queue, not the daemon;
// - at most PIPELINE_MAX requests wait behind it; one more and the connection is closed
//   (no HTTP client in use pipelines at all: browsers, curl, Prometheus, Python do not);
// - a connection on which nothing moves for STALL_MS (no byte read or written, e.g. a response
//   the client never reads) is closed;
// - at most CONNECTIONS_MAX connections per listener; the kernel's backlog holds the rest
//   briefly, then they are refused.
// So a listener holds at most CONNECTIONS_MAX responses and CONNECTIONS_MAX x PIPELINE_MAX
// parsed requests, whatever its clients send.
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

export const CONNECTIONS_MAX = 64;
export const PIPELINE_MAX = 8;
export const STALL_MS = 30_000;

type Listener = (req: IncomingMessage, res: ServerResponse) => unknown;

interface Connection {
  busy: boolean;
  waiting: [IncomingMessage, ServerResponse][];
}

/** `handle`, run for one request per connection at a time (see above). */
export function oneAtATime(handle: Listener, pipelineMax = PIPELINE_MAX): Listener {
  const connections = new WeakMap<Socket, Connection>();
  const start = (c: Connection, socket: Socket, req: IncomingMessage, res: ServerResponse) => {
    c.busy = true;
    let done = false;
    const next = () => {
      if (done) return;
      done = true;
      c.busy = false;
      const n = c.waiting.shift();
      if (n && !socket.destroyed) start(c, socket, n[0], n[1]);
    };
    // 'finish': the response is with the kernel; 'close': the connection went first.
    res.once('finish', next);
    res.once('close', next);
    handle(req, res);
  };
  return (req, res) => {
    const socket = req.socket;
    // The rest of a chunk Node goes on parsing after the connection was closed.
    if (socket.destroyed) return;
    let c = connections.get(socket);
    if (!c) connections.set(socket, (c = { busy: false, waiting: [] }));
    if (!c.busy) {
      start(c, socket, req, res);
      return;
    }
    if (c.waiting.length >= pipelineMax) {
      c.waiting.length = 0;
      socket.destroy();
      return;
    }
    c.waiting.push([req, res]);
  };
}

/** The server with the bounds above; `handle` answers its requests. */
export function bounded<S extends Server>(server: S, handle: Listener): S {
  server.on('request', oneAtATime(handle));
  server.maxConnections = CONNECTIONS_MAX;
  // Socket inactivity (no 'timeout' listener: Node closes the socket).
  server.timeout = STALL_MS;
  // Slow clients must not hold sockets forever (slowloris).
  server.requestTimeout = 30_000;
  server.headersTimeout = 10_000;
  server.maxHeadersCount = 100;
  return server;
}
