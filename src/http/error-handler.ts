/**
 * The one place where failures become HTTP answers: a TernError keeps its
 * code and status, fastify's own errors (body too large, unknown content
 * type, schema validation, the router's) are mapped onto the registry, etcd
 * out of reach is 503 NOT_READY, a 401 names the bearer scheme, anything
 * else is a bug: logged, answered 500 INTERNAL. An answer given before the request body was read in full
 * waits until the rest is read and discarded (bounded), so the client reads
 * it instead of a broken pipe.
 */
import type { IncomingMessage } from 'node:http';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { RETRY_AFTER_SECONDS, TernError } from '../errors.js';
import { isEtcdUnavailable } from '../etcd-unavailable.js';

/**
 * Lingering close, as nginx does it: the rest of a refused body (413 over
 * --max-request-bytes, or a request refused before its body was read) is read
 * and discarded, up to this many bytes and this long, before the answer is
 * sent. Closing at once would reset a connection the client still writes to,
 * and it would see EPIPE instead of the answer. Past the bounds the answer is
 * sent and the connection closed.
 */
const LINGER_MAX_BYTES = 128 * 1024 * 1024;
const LINGER_MAX_MS = 5_000;

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

/** The headers that go with an error's answer. */
export function errorHeaders(te: TernError): Record<string, string> {
  const headers: Record<string, string> = {};
  if (te.status === 503) headers['retry-after'] = String(RETRY_AFTER_SECONDS);
  // RFC 6750: a 401 names the scheme the client must use.
  if (te.code === 'UNAUTHENTICATED') headers['www-authenticate'] = 'Bearer realm="tern"';
  return headers;
}

/** Answers `err` in the documented shape, once the body is read or discarded. */
export async function sendError(err: unknown, req: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
  const te = toTernError(err);
  if (te.code === 'INTERNAL') req.log.error({ err }, 'unhandled error');
  void reply.headers(errorHeaders(te));
  if (!(await discardRest(req.raw))) void reply.header('connection', 'close');
  return reply.code(te.status).send(te.toBody());
}

export function installErrorHandling(app: FastifyInstance, hooks: { etcdUnavailable?: () => void } = {}): void {
  app.setErrorHandler((err, req, reply) => {
    if (isEtcdUnavailable(err)) hooks.etcdUnavailable?.();
    return sendError(err, req, reply);
  });
  app.setNotFoundHandler((req, reply) => sendError(new TernError('NOT_FOUND', `no route ${req.method} ${req.url.split('?')[0]}`), req, reply));
}

/** Reads and drops what is left of the request body; false when it did not end within the linger bounds. */
function discardRest(raw: IncomingMessage): Promise<boolean> {
  if (raw.complete) return Promise.resolve(true);
  return new Promise((resolve) => {
    let discarded = 0;
    const finish = (ended: boolean) => {
      clearTimeout(timer);
      raw.off('data', onData).off('end', onEnd).off('close', onClose);
      resolve(ended);
    };
    const onData = (chunk: Buffer) => {
      if ((discarded += chunk.length) > LINGER_MAX_BYTES) finish(false);
    };
    const onEnd = () => finish(true);
    const onClose = () => finish(raw.complete);
    const timer = setTimeout(() => finish(false), LINGER_MAX_MS);
    raw.on('data', onData).once('end', onEnd).once('close', onClose);
    raw.resume();
  });
}
