/**
 * GET /metrics (Prometheus text format): served on the client port, or, with
 * --metrics-port, on a listener of its own that serves nothing else, so the
 * client port can be closed to scrapers (and metrics to clients).
 */
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { RequestMetrics } from '../replica/api.js';
import { installErrorHandling } from './error-handler.js';
import { serverOptions } from './server-options.js';

/** The metrics listener takes no request bodies: the smallest limit fastify allows is plenty. */
const METRICS_BODY_LIMIT = 1024;

/** Adds GET /metrics to `app`, reachable without a token (Prometheus scrapes it). */
export function addMetricsRoute(app: FastifyInstance, metrics: RequestMetrics): void {
  app.get('/metrics', { config: { access: 'public' }, schema: { summary: 'Prometheus metrics (text exposition format)' } }, async function serveMetrics(_req, reply) {
    const { contentType, body } = await metrics.render();
    return reply.header('content-type', contentType).send(body);
  });
}

export function buildMetricsApi(metrics: RequestMetrics, logger: FastifyBaseLogger): FastifyInstance {
  const app = Fastify(serverOptions(logger, METRICS_BODY_LIMIT));
  installErrorHandling(app);
  addMetricsRoute(app, metrics);
  return app;
}
