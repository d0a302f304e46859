/**
 * The fastify instance both listeners are built on: the replica's pino
 * logger with no per-request log lines (they would cost more than the request
 * on the append path), router limits wide enough for 128-char log names
 * (fastify answers 414 past its default of 100), and HTTPS when TLS is
 * configured (src/peer/tls.ts says which options each listener takes).
 */
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { TlsOptions } from 'node:tls';

/** Longest URL parameter the router accepts: room for the longest log name (128 chars) and to spare, so a name somewhat too long gets our own BAD_REQUEST rather than fastify's 414. */
const MAX_PARAM_LENGTH = 256;

export function buildServer(logger: FastifyBaseLogger, bodyLimit: number, tls: TlsOptions | undefined): FastifyInstance {
  const options = {
    loggerInstance: logger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit,
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH },
  };
  // The routes are the same over https; only the type of the underlying server differs, and no route touches it.
  return (tls ? Fastify({ ...options, https: tls }) : Fastify(options)) as unknown as FastifyInstance;
}
