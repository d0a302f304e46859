/**
 * The client API (v1): a thin fastify layer that parses, calls the replica
 * and lets the error handler map failures. Route schemas validate params and
 * queries and are published as the OpenAPI description at /openapi.json.
 */
import { performance } from 'node:perf_hooks';
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import swagger from '@fastify/swagger';
import type { FastifyBaseLogger } from 'fastify';
import { TernError } from '../errors.js';
import { FRAMES_CONTENT_TYPE, FrameError, decodeFrames, encodeFrames } from '../frames.js';
import type { Replica } from '../replica/replica.js';
import { installErrorHandling, toTernError } from './error-handler.js';
import { FORWARDED_HEADER, Forwarder } from './forward.js';
import { serverOptions } from './server-options.js';

const LOG_NAME = '^[A-Za-z0-9._-]{1,128}$';
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const OCTETS = 'application/octet-stream';
const JSON_TYPE = 'application/json';

const errorSchema = {
  type: 'object',
  properties: {
    error: {
      type: 'object',
      properties: { code: { type: 'string' }, message: { type: 'string' }, maybeApplied: { type: 'boolean' }, epoch: { type: 'integer' } },
      required: ['code', 'message'],
    },
  },
};
const logParams = { type: 'object', properties: { log: { type: 'string', pattern: LOG_NAME } }, required: ['log'] };
const statusSchema = {
  type: 'object',
  properties: {
    log: { type: 'string' },
    leader: { type: ['string', 'null'] },
    epoch: { type: 'integer' },
    committedId: { type: 'integer' },
    flushedId: { type: 'integer' },
    firstId: { type: 'integer' },
    flushLag: { type: 'object', properties: { entries: { type: 'integer' }, bytes: { type: 'integer' } } },
    segments: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          epoch: { type: 'integer' },
          firstId: { type: 'integer' },
          lastId: { type: ['integer', 'null'] },
          sealed: { type: 'boolean' },
          replicas: { type: 'object', additionalProperties: { type: 'string' } },
        },
      },
    },
  },
};

export async function buildClientApi(replica: Replica, logger: FastifyBaseLogger): Promise<FastifyInstance> {
  const config = replica.config;
  const app = Fastify(serverOptions(logger, config.maxRequestBytes));
  const forwarder = new Forwarder(replica.id, config.ackTimeoutMs + 5_000);
  const metrics = replica.metrics;
  app.addHook('onClose', () => forwarder.close());
  installErrorHandling(app, { etcdUnavailable: () => metrics.etcdFailed('request') });

  // Every body is taken as raw bytes: binary entries stay slices of it, a forwarded
  // append is relayed untouched, and JSON errors become our BAD_REQUEST.
  app.removeAllContentTypeParsers();
  for (const type of [OCTETS, FRAMES_CONTENT_TYPE, JSON_TYPE]) {
    app.addContentTypeParser(type, { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
  }

  // Registered (and awaited) before the routes, so its onRoute hook sees every one of them.
  await app.register(swagger, {
    openapi: {
      info: { title: 'Tern client API', version: '1', description: 'Quorum-replicated write-ahead log. Errors are {"error": {"code", "message"}}.' },
    },
  });

  app.get('/healthz', { schema: { summary: 'Liveness: the process serves HTTP; incarnation is new at every start' } }, async () => ({ status: 'ok', id: replica.id, incarnation: replica.incarnation ?? null }));

  app.get('/readyz', { schema: { summary: 'Readiness: registered in etcd and serving' } }, async () => {
    if (!replica.isReady) throw new TernError('NOT_READY', `replica ${replica.id} is not ready`);
    return { status: 'ready', id: replica.id };
  });

  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  app.get('/metrics', { schema: { summary: 'Prometheus metrics (text exposition format)' } }, async (_req, reply) => {
    const { contentType, body } = await metrics.render();
    return reply.header('content-type', contentType).send(body);
  });

  app.get('/v1/logs', { schema: { summary: 'List logs', response: { 200: { type: 'object', properties: { logs: { type: 'array', items: { type: 'string' } } } } } } }, async () => ({
    logs: replica.listLogs(),
  }));

  app.put<{ Params: { log: string } }>(
    '/v1/logs/:log',
    { schema: { summary: 'Create a log (idempotent): 201 when created, 200 when it existed', params: logParams, response: { 200: statusSchema, 201: statusSchema, '4xx': errorSchema, '5xx': errorSchema } } },
    async (req, reply) => {
      const { created, status } = await replica.createLog(req.params.log);
      return reply.code(created ? 201 : 200).send(status);
    },
  );

  app.delete<{ Params: { log: string } }>(
    '/v1/logs/:log',
    { schema: { summary: 'Delete a log: its entries, metadata and objects', params: logParams, response: { '4xx': errorSchema, '5xx': errorSchema } } },
    async (req) => replica.deleteLog(req.params.log),
  );

  app.get<{ Params: { log: string } }>(
    '/v1/logs/:log',
    { schema: { summary: 'Log status; ids are -1 when none', params: logParams, response: { 200: statusSchema, '4xx': errorSchema, '5xx': errorSchema } } },
    async (req) => replica.status(req.params.log),
  );

  app.post<{ Params: { log: string }; Body: Buffer | undefined }>(
    '/v1/logs/:log/entries',
    {
      schema: {
        summary: 'Append: application/octet-stream = one entry (raw body); application/json {"entries": [base64...]} or application/vnd.tern.frames = an atomic batch',
        params: logParams,
        response: {
          200: {
            type: 'object',
            properties: { id: { type: 'integer' }, firstId: { type: 'integer' }, lastId: { type: 'integer' }, epoch: { type: 'integer' } },
          },
          '4xx': errorSchema,
          '5xx': errorSchema,
        },
      },
    },
    async (req, reply) => {
      const name = req.params.log;
      const started = performance.now();
      const forwardedHere = req.headers[FORWARDED_HEADER] !== undefined;
      let entries: Buffer[] = [];
      try {
        const leaderUrl = await replica.leaderUrl(name);
        if (leaderUrl !== undefined && !forwardedHere) {
          const answer = await forwarder.forward(leaderUrl, req.url, req.headers['content-type'], req.body, reply);
          if (reply.statusCode === 200) metrics.acknowledged((performance.now() - started) / 1000);
          return answer;
        }
        let single: boolean;
        ({ entries, single } = parseEntries(req, config.maxEntryBytes));
        const r = await replica.append(name, entries);
        metrics.appended(name, 'ok', entries.length, sizeOf(entries));
        if (!forwardedHere) metrics.acknowledged((performance.now() - started) / 1000);
        return single ? { id: r.firstId, epoch: r.epoch } : { firstId: r.firstId, lastId: r.lastId, epoch: r.epoch };
      } catch (err) {
        metrics.appended(name, toTernError(err).code, entries.length, entries.length > 0 ? sizeOf(entries) : (req.body?.length ?? 0));
        throw err;
      }
    },
  );

  app.post<{ Params: { log: string }; Body: Buffer | undefined }>(
    '/v1/logs/:log/handoff',
    { schema: { summary: 'Move leadership to another replica: {"to": "r2"}; answers the new status once it leads', params: logParams, response: { 200: statusSchema, '4xx': errorSchema, '5xx': errorSchema } } },
    async (req, reply) => {
      const name = req.params.log;
      const leaderUrl = await replica.leaderUrl(name);
      if (leaderUrl !== undefined && req.headers[FORWARDED_HEADER] === undefined) {
        return forwarder.forward(leaderUrl, req.url, req.headers['content-type'], req.body, reply);
      }
      const { to } = parseJsonObject(req.body, ['to']);
      return replica.handoff(name, String(to));
    },
  );

  app.post<{ Params: { log: string }; Body: Buffer | undefined }>(
    '/v1/logs/:log/truncate',
    { schema: { summary: 'Retention: {"beforeId": N} makes ids below N unreadable (410 TRUNCATED) and deletes their objects in the background', params: logParams, response: { 200: statusSchema, '4xx': errorSchema, '5xx': errorSchema } } },
    async (req) => {
      const { beforeId } = parseJsonObject(req.body, ['beforeId']);
      if (!Number.isSafeInteger(beforeId) || (beforeId as number) < 0) throw new TernError('BAD_REQUEST', '"beforeId" must be a non-negative integer');
      return replica.truncate(req.params.log, beforeId as number);
    },
  );

  app.post<{ Params: { log: string }; Body: Buffer | undefined }>(
    '/v1/logs/:log/recover',
    {
      schema: {
        summary:
          'UNSAFE: {"acceptDataLoss": true} recovers a log that cannot gather two fence answers that count (replicas restarted empty), accepting the loss of acknowledged entries only they held',
        params: logParams,
        response: { '4xx': errorSchema, '5xx': errorSchema },
      },
    },
    async (req) => {
      const { acceptDataLoss } = parseJsonObject(req.body, ['acceptDataLoss']);
      if (acceptDataLoss !== true) throw new TernError('BAD_REQUEST', 'forcing recovery needs {"acceptDataLoss": true}');
      return replica.forceRecovery(req.params.log);
    },
  );

  app.get<{ Params: { log: string }; Querystring: { from: number; limit: number; waitMs: number } }>(
    '/v1/logs/:log/entries',
    {
      schema: {
        summary: 'Read committed entries from `from`; JSON with base64 data, or frames with Accept: application/octet-stream (ids in headers tern-from-id, tern-next-id, tern-committed-id)',
        params: logParams,
        querystring: {
          type: 'object',
          properties: {
            from: { type: 'integer', minimum: 0, default: 0 },
            limit: { type: 'integer', minimum: 1, maximum: config.maxReadEntries, default: Math.min(1000, config.maxReadEntries) },
            waitMs: { type: 'integer', minimum: 0, maximum: config.maxWaitMs, default: 0 },
          },
          additionalProperties: false,
        },
        response: { '4xx': errorSchema, '5xx': errorSchema },
      },
    },
    async (req, reply) => {
      const { from, limit, waitMs } = req.query;
      const r = await replica.read(req.params.log, from, limit, waitMs);
      if (wantsBinary(req)) {
        const accept = req.headers.accept?.includes(FRAMES_CONTENT_TYPE) ? FRAMES_CONTENT_TYPE : OCTETS;
        return reply
          .header('content-type', accept)
          .header('tern-from-id', String(r.fromId))
          .header('tern-next-id', String(r.nextId))
          .header('tern-committed-id', String(r.committedId))
          .send(Buffer.concat(encodeFrames(r.entries)));
      }
      return {
        entries: r.entries.map((data, i) => ({ id: r.fromId + i, data: data.toString('base64') })),
        nextId: r.nextId,
        committedId: r.committedId,
      };
    },
  );

  return app;
}

function sizeOf(entries: readonly Buffer[]): number {
  let bytes = 0;
  for (const e of entries) bytes += e.length;
  return bytes;
}

function wantsBinary(req: FastifyRequest): boolean {
  const accept = req.headers.accept ?? '';
  return accept.includes(OCTETS) || accept.includes(FRAMES_CONTENT_TYPE);
}

function mediaType(req: FastifyRequest): string {
  return (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
}

/** The entries of an append body; all-or-nothing validation so no partial batch is ever proposed. */
function parseEntries(req: FastifyRequest<{ Body: Buffer | undefined }>, maxEntryBytes: number): { entries: Buffer[]; single: boolean } {
  const body = req.body ?? Buffer.alloc(0);
  const type = mediaType(req);
  let entries: Buffer[];
  if (type === OCTETS) {
    entries = [body];
  } else if (type === FRAMES_CONTENT_TYPE) {
    try {
      entries = decodeFrames(body, maxEntryBytes);
    } catch (err) {
      if (err instanceof FrameError && err.message.includes('entry limit')) throw new TernError('TOO_LARGE', err.message);
      throw new TernError('BAD_REQUEST', (err as Error).message);
    }
  } else if (type === JSON_TYPE) {
    entries = parseJsonBatch(body);
  } else {
    throw new TernError('UNSUPPORTED_MEDIA_TYPE', `content type "${type}" is not one of ${OCTETS}, ${JSON_TYPE}, ${FRAMES_CONTENT_TYPE}`);
  }
  if (type !== OCTETS && entries.length === 0) throw new TernError('BAD_REQUEST', 'a batch needs at least one entry');
  for (const e of entries) {
    if (e.length > maxEntryBytes) throw new TernError('TOO_LARGE', `entry of ${e.length} bytes is over the ${maxEntryBytes}-byte limit`);
  }
  return { entries, single: type === OCTETS };
}

function parseJsonObject(body: Buffer | undefined, required: string[]): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse((body ?? Buffer.alloc(0)).toString('utf8'));
  } catch (err) {
    throw new TernError('BAD_REQUEST', `body is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new TernError('BAD_REQUEST', 'body must be a JSON object');
  for (const key of required) if (!(key in parsed)) throw new TernError('BAD_REQUEST', `body needs "${key}"`);
  return parsed as Record<string, unknown>;
}

function parseJsonBatch(body: Buffer): Buffer[] {
  const list = parseJsonObject(body, []).entries;
  if (!Array.isArray(list)) throw new TernError('BAD_REQUEST', 'body must be {"entries": ["<base64>", ...]}');
  return list.map((item, i) => {
    if (typeof item !== 'string' || !BASE64.test(item)) throw new TernError('BAD_REQUEST', `entries[${i}] is not a base64 string`);
    return Buffer.from(item, 'base64');
  });
}
