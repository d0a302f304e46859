/**
 * How both listeners meet the network: the replica's pino logger with no
 * per-request log lines (they would cost more than the request on the append
 * path), router limits wide enough for 128-char log names, the timeouts that
 * close slow connections (slowloris), errors of the router and of the HTTP
 * parser answered in the documented shape, HTTPS when TLS is configured
 * (src/peer/tls.ts says which options each listener takes), and the client
 * listener's cap on connections (whether a connection is over it is returned,
 * for the direct append path).
 */
import { STATUS_CODES, type Server } from 'node:http';
import type { Socket } from 'node:net';
import type { TlsOptions } from 'node:tls';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyHttpOptions, type FastifyInstance } from 'fastify';
import { RETRY_AFTER_SECONDS, TernError } from '../errors.js';
import type { HttpLimits } from '../replica/api.js';
import { sendError } from './error-handler.js';

/** Longest URL parameter the router accepts: room for the longest log name (128 chars) and to spare, so a name somewhat too long gets our own BAD_REQUEST rather than fastify's 414. */
const MAX_PARAM_LENGTH = 256;
/** Node looks for connections past their header or request timeout this often (its default, 30 s, would let a timeout run that much late). */
const TIMEOUT_CHECK_MS = 1000;
/**
 * Connections past --max-connections that are still read and answered (503
 * TOO_MANY, then closed), so a client learns why; past these, Node drops new
 * connections at once, so an attacker cannot make the replica hold sockets
 * without bound.
 */
const OVER_CAP_ANSWERED = 64;

export type ConnectionLimits = Pick<HttpLimits, 'requestTimeoutMs' | 'headersTimeoutMs' | 'keepAliveTimeoutMs'>;

/** A listener's fastify instance: plain HTTP, or HTTPS with `tls`. */
export function buildServer(logger: FastifyBaseLogger, bodyLimit: number, limits: ConnectionLimits, tls: TlsOptions | undefined): FastifyInstance {
  const options = serverOptions(logger, bodyLimit, limits);
  if (!tls) return Fastify(options) as unknown as FastifyInstance;
  // The routes are the same over https; only the type of the underlying server differs, and no route touches it.
  // https.createServer takes the http server's options (the timeouts) beside the TLS ones.
  return Fastify({ ...options, https: { ...tls, ...options.http } } as FastifyHttpOptions<Server, FastifyBaseLogger>) as unknown as FastifyInstance;
}

function serverOptions(logger: FastifyBaseLogger, bodyLimit: number, limits: ConnectionLimits): FastifyHttpOptions<Server, FastifyBaseLogger> {
  return {
    loggerInstance: logger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit,
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH },
    // Held tail reads do not count: Node's request timeout ends once the request is in.
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    http: { headersTimeout: limits.headersTimeoutMs, connectionsCheckingInterval: TIMEOUT_CHECK_MS },
    // Errors the router raises before any route (a parameter over MAX_PARAM_LENGTH, a bad URL).
    frameworkErrors: (err, req, reply) => sendError(err, req, reply),
    clientErrorHandler: answerClientError,
  };
}

/**
 * Errors of the HTTP parser, before fastify has a request: timeouts, headers
 * too large, malformed HTTP. Answered on the raw socket in the documented
 * shape, then the connection is closed (its state is unknown).
 */
function answerClientError(err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const te =
    err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? new TernError('REQUEST_TIMEOUT', 'the request did not arrive in time (--headers-timeout-ms, --request-timeout-ms)')
      : err.code === 'HPE_HEADER_OVERFLOW'
        ? new TernError('TOO_LARGE', 'the request headers are over the limit')
        : new TernError('BAD_REQUEST', `malformed HTTP request (${err.code ?? err.message})`);
  const body = JSON.stringify(te.toBody());
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${te.status} ${STATUS_CODES[te.status]}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy();
}

/**
 * The client listener serves at most `maxConnections` connections: a request
 * on one beyond them is answered 503 TOO_MANY (with Retry-After) and its
 * connection closed, and past OVER_CAP_ANSWERED more Node drops them unread.
 * The peer listener has no cap: its connections are the other replicas'.
 */
export function capConnections(app: FastifyInstance, maxConnections: number): (socket: Socket) => boolean {
  const overCap = new WeakSet<Socket>();
  let open = 0;
  app.server.maxConnections = maxConnections + OVER_CAP_ANSWERED;
  app.server.on('connection', (socket: Socket) => {
    if (++open > maxConnections) overCap.add(socket);
    socket.once('close', () => open--);
  });
  app.addHook('onRequest', (req, reply, done) => {
    if (!overCap.has(req.raw.socket)) return done();
    void reply.header('connection', 'close');
    done(new TernError('TOO_MANY', `the replica serves ${open} connections, the most --max-connections allows (${maxConnections}); retry in ${RETRY_AFTER_SECONDS} s`));
  });
  return (socket) => overCap.has(socket);
}
