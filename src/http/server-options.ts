/**
 * Fastify options both listeners share: the replica's pino logger with no
 * per-request log lines (they would cost more than the request on the append
 * path), and router limits wide enough for 128-char log names (fastify
 * answers 414 past its default of 100).
 */
import { LogController, type FastifyBaseLogger, type FastifyHttpOptions } from 'fastify';
import type { Server } from 'node:http';

/** Longest URL parameter the router accepts: room for the longest log name (128 chars) and to spare, so a name somewhat too long gets our own BAD_REQUEST rather than fastify's 414. */
const MAX_PARAM_LENGTH = 256;

export function serverOptions(logger: FastifyBaseLogger, bodyLimit: number): FastifyHttpOptions<Server, FastifyBaseLogger> {
  return {
    loggerInstance: logger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit,
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH },
  };
}
