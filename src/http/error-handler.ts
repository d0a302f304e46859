/**
 * The one place where failures become HTTP answers: a TernError keeps its
 * code and status, fastify's own errors (body too large, unknown content
 * type, schema validation) are mapped onto the registry, etcd out of reach
 * is 503 NOT_READY, a 401 says to use a bearer token, anything else is a bug: logged, answered 500 INTERNAL.
 */
import type { FastifyError, FastifyInstance } from 'fastify';
import { RETRY_AFTER_SECONDS, TernError } from '../errors.js';
import { isEtcdUnavailable } from '../etcd-unavailable.js';

export function toTernError(err: unknown): TernError {
  if (err instanceof TernError) return err;
  // Nothing was applied: every etcd lookup of a request comes before an append gets an id.
  if (isEtcdUnavailable(err)) return new TernError('NOT_READY', `etcd does not answer right now: ${(err as Error).message}`, { cause: err });
  const fe = err as Partial<FastifyError>;
  const status = typeof fe.statusCode === 'number' ? fe.statusCode : 500;
  const message = fe.message ?? String(err);
  if (status === 413) return new TernError('TOO_LARGE', message, { cause: err });
  if (status === 415) return new TernError('UNSUPPORTED_MEDIA_TYPE', message, { cause: err });
  if (status === 404) return new TernError('NOT_FOUND', message, { cause: err });
  if (status >= 400 && status < 500) return new TernError('BAD_REQUEST', message, { cause: err });
  return new TernError('INTERNAL', 'internal error', { cause: err });
}

export function installErrorHandling(app: FastifyInstance, hooks: { etcdUnavailable?: () => void } = {}): void {
  app.setErrorHandler((err, req, reply) => {
    if (isEtcdUnavailable(err)) hooks.etcdUnavailable?.();
    const te = toTernError(err);
    if (te.code === 'INTERNAL') req.log.error({ err }, 'unhandled error');
    if (te.status === 503) void reply.header('retry-after', String(RETRY_AFTER_SECONDS));
    // RFC 6750: a 401 names the scheme the client must use.
    if (te.code === 'UNAUTHENTICATED') void reply.header('www-authenticate', 'Bearer realm="tern"');
    void reply.code(te.status).send(te.toBody());
  });
  app.setNotFoundHandler((req, reply) => {
    const te = new TernError('NOT_FOUND', `no route ${req.method} ${req.url.split('?')[0]}`);
    void reply.code(te.status).send(te.toBody());
  });
}
