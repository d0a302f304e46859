/**
 * GET /metrics (Prometheus text format): served on the client port, or, with
 * --metrics-port, on a listener of its own that serves nothing else, so the
 * client port can be closed to scrapers (and metrics to clients).
 */
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import type { HttpLimits, RequestMetrics } from '../replica/api.js';
import { installErrorHandling } from './error-handler.js';
import { buildServer } from './server-options.js';

/** The metrics listener takes no request bodies: the smallest limit fastify allows is plenty. */
const METRICS_BODY_LIMIT = 1024;

/** Adds GET /metrics to `app`, reachable without a token (Prometheus scrapes it). */
export function addMetricsRoute(app: FastifyInstance, metrics: RequestMetrics): void {
  app.get('/metrics', { config: { access: 'public' }, schema: { summary: 'Prometheus metrics (text exposition format)' } }, async function serveMetrics(_req, reply) {
    const { contentType, body } = await metrics.render();
    return reply.header('content-type', contentType).send(body);
  });
}

/** Plain HTTP even when the other listeners have TLS: scrapers reach it inside the cluster's network (deploy/: NetworkPolicy). */
export function buildMetricsApi(metrics: RequestMetrics, logger: FastifyBaseLogger, limits: HttpLimits): FastifyInstance {
  const app = buildServer(logger, METRICS_BODY_LIMIT, limits, undefined);
  installErrorHandling(app);
  addMetricsRoute(app, metrics);
  return app;
}
