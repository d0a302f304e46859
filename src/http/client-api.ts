/**
 * The client API (v1): a thin fastify layer that parses, calls the replica
 * and lets the error handler map failures. Route schemas validate params and
 * queries and are published as the OpenAPI description at /openapi.json. Each
 * route declares the access it needs (src/http/auth.ts): probes, metrics and
 * the description are public, reads need `read`, appends and readers'
 * positions `append`, and every command that changes a log, its retention or
 * its leadership `admin`.
 */
import type { FastifyInstance } from 'fastify';
import swagger from '@fastify/swagger';
import type { FastifyBaseLogger } from 'fastify';
import { RETRY_AFTER_SECONDS, TernError } from '../errors.js';
import { FRAMES_CONTENT_TYPE, TIMED_FRAMES_CONTENT_TYPE, encodeFrames, encodeTimedFrames } from '../frames.js';
import { AppendForwarder } from '../peer/append-forwarder.js';
import type { HttpLimits, ReplicaApi } from '../replica/api.js';
import { answerAppend } from './append-request.js';
import { JSON_TYPE, LOG_NAME_PATTERN, OCTETS, parseCreateBody, parseJsonObject, parseReaderBody } from './bodies.js';
import { allows, installAuth, visibleLogs, type TokenLookup } from './auth.js';
import { sendReply, serveDirectly, type DirectRoute } from './direct-routes.js';
import { installErrorHandling } from './error-handler.js';
import { FORWARDED_HEADER, Forwarder } from './forward.js';
import { buildServer, capConnections } from './server-options.js';
import { listenerTls, outgoingTls, type TlsMaterial } from '../peer/tls.js';
import { addMetricsRoute } from './metrics-api.js';
import { streamTail } from './tail.js';

/**
 * A forwarded log command (handoff) fails after the leader's ack timeout and
 * this much more: the leader answers it once the new leader took over, which
 * takes a recovery (fences, etcd transactions) beyond the ack timeout.
 */
const COMMAND_FORWARD_SLACK_MS = 5_000;
/** Logs in one page of GET /v1/logs, unless `limit` says otherwise, and the most a page holds. */
const DEFAULT_LIST_LIMIT = 1000;
const MAX_LIST_LIMIT = 10_000;
/**
 * A batch of forwarded appends fails after the leader's ack timeout and this
 * much more: the leader answers every append by its ack timeout (ACK_TIMEOUT
 * at the latest), so a batch unanswered past this went to an unreachable or
 * stalled leader.
 */
const APPEND_FORWARD_SLACK_MS = 1_000;
/**
 * Batches of forwarded appends in flight to one leader at once, pipelined on its PeerLink: with one,
 * an append arriving while a batch is out waited for that batch's whole round before it left.
 */
const FORWARDED_BATCHES_IN_FLIGHT = 4;
/** Entries a read returns when it names no `limit` (README, Client API); never more than --max-read-entries. */
const DEFAULT_READ_LIMIT = 1000;
const LOG_NAME = new RegExp(LOG_NAME_PATTERN);

const errorSchema = {
  type: 'object',
  properties: {
    error: {
      type: 'object',
      properties: { code: { type: 'string' }, message: { type: 'string' }, maybeApplied: { type: 'boolean' }, epoch: { type: 'integer' }, expectedSeq: { type: 'integer' } },
      required: ['code', 'message'],
    },
  },
};
const logParams = { type: 'object', properties: { log: { type: 'string', pattern: LOG_NAME_PATTERN } }, required: ['log'] };
/** Reader names follow the rule of log names. */
const readerParams = { type: 'object', properties: { log: { type: 'string', pattern: LOG_NAME_PATTERN }, reader: { type: 'string', pattern: LOG_NAME_PATTERN } }, required: ['log', 'reader'] };
const readerProperties = { name: { type: 'string' }, nextId: { type: 'integer' }, holdsRetention: { type: 'boolean' }, updatedAt: { type: 'string' } };
const readerSchema = { type: 'object', properties: readerProperties };
/** A reader with its lag, as reads of readers and the status list them. */
const readerStatusSchema = { type: 'object', properties: { ...readerProperties, lagEntries: { type: 'integer' } } };
const retentionSchema = { type: 'object', properties: { maxAgeMs: { type: 'integer' }, maxBytes: { type: 'integer' }, maxEntries: { type: 'integer' } } };
const statusSchema = {
  type: 'object',
  properties: {
    log: { type: 'string' },
    leader: { type: ['string', 'null'] },
    quiesced: { type: 'boolean' },
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
          closedClean: { type: 'boolean' },
          quiesced: { type: 'boolean' },
          replicas: { type: 'object', additionalProperties: { type: 'string' } },
        },
      },
    },
    retention: retentionSchema,
    readers: { type: 'array', items: readerStatusSchema },
    retentionHeldBy: { type: 'object', properties: { reader: { type: 'string' }, nextId: { type: 'integer' }, entries: { type: 'integer' } } },
  },
};

export interface ClientApiOptions {
  /** The tokens in force; undefined: no authentication (an open cluster). */
  tokens: TokenLookup | undefined;
  /** Serve GET /metrics here (false when it has a listener of its own). */
  metrics: boolean;
  /** With it, clients get HTTPS, and forwards to the leader verify it and show this replica's certificate. */
  tls?: TlsMaterial;
}

export async function buildClientApi(replica: ReplicaApi, config: HttpLimits, logger: FastifyBaseLogger, options: ClientApiOptions): Promise<FastifyInstance> {
  const { tls } = options;
  const app = buildServer(logger, config.maxRequestBytes, config, tls && listenerTls(tls, 'client'));
  const isOverCap = capConnections(app, config.maxConnections);
  const outgoing = tls && outgoingTls(tls);
  const forwarder = new Forwarder(replica.id, config.ackTimeoutMs + COMMAND_FORWARD_SLACK_MS, outgoing);
  // A batch unanswered past APPEND_FORWARD_SLACK_MS went to an unreachable or stalled leader: fail it
  // (maybe applied) rather than hold the client, and the appends gathered behind it, for longer.
  const appendForwarder = new AppendForwarder(replica.id, { maxAppends: config.maxBatchEntries, maxBytes: config.maxBatchBytes, maxInFlight: FORWARDED_BATCHES_IN_FLIGHT }, config.ackTimeoutMs + APPEND_FORWARD_SLACK_MS, outgoing, config.keepAliveTimeoutMs / 2);
  const metrics = replica.metrics;
  app.addHook('onClose', () => Promise.all([forwarder.close(), appendForwarder.close()]));
  installErrorHandling(app, { etcdUnavailable: () => metrics.etcdFailed('request') });
  const { tokens } = options;
  const appendRoute: DirectRoute<string> = {
    method: 'POST',
    path: { prefix: '/v1/logs/', suffix: '/entries' },
    contentTypes: new Set([OCTETS, FRAMES_CONTENT_TYPE, JSON_TYPE]),
    maxBodyBytes: config.maxRequestBytes,
    // A refused token goes to fastify, whose auth hook says why and counts it.
    accept: (req, log) => (log !== undefined && LOG_NAME.test(log) && !isOverCap(req.socket) && (!tokens || allows(tokens, req.headers.authorization, 'append', log)) ? log : undefined),
    answer: (log, req, body) => answerAppend(replica, appendForwarder, config, log, req.headers, body),
  };
  serveDirectly(app.server, [appendRoute as DirectRoute<unknown>], { isStopping: () => replica.isStopping, etcdUnavailable: () => metrics.etcdFailed('request'), logger });
  installAuth(app, tokens, (code) => metrics.authRefused(code));
  // A stopping replica asks each client to close its connection after the answer, so that none
  // is reused at the moment the listener closes (a request cut off there has an unknown outcome).
  // A callback hook, not an async one: it runs on every answer, appends included, and needs no promise.
  app.addHook('onSend', (_req, reply, payload, done) => {
    if (replica.isStopping) void reply.header('connection', 'close');
    done(null, payload);
  });

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

  app.get('/healthz', { config: { access: 'public' }, schema: { summary: 'Liveness: the process serves HTTP; incarnation is new at every start' } }, async () => ({ status: 'ok', id: replica.id, incarnation: replica.incarnation ?? null }));

  app.get('/readyz', { config: { access: 'public' }, schema: { summary: 'Readiness, meaning "another replica may be stopped now": registered in etcd, not stopping, and counted by the open segment of every log it holds. 503 NOT_READY says why and how many logs are catching up' } }, async (_req, reply) => {
    const r = replica.readiness();
    if (!r.ready) return reply.code(503).header('retry-after', String(RETRY_AFTER_SECONDS)).send({ ...new TernError('NOT_READY', `replica ${replica.id} is not ready: ${r.reason}`).toBody(), catchingUp: r.catchingUp });
    return { status: 'ready', id: replica.id, catchingUp: 0 };
  });

  app.get('/openapi.json', { config: { access: 'public' }, schema: { hide: true } }, async () => app.swagger());

  if (options.metrics) addMetricsRoute(app, metrics);

  app.get<{ Querystring: { after?: string; limit: number } }>(
    '/v1/logs',
    {
      config: { access: 'read' },
      schema: {
        summary: "List logs (those the token's prefixes cover) by name, a page at a time: names after `after`, at most `limit`; `next`, when present, is the `after` of the next page",
        querystring: {
          type: 'object',
          properties: {
            after: { type: 'string', maxLength: 256 },
            limit: { type: 'integer', minimum: 1, maximum: MAX_LIST_LIMIT, default: DEFAULT_LIST_LIMIT },
          },
          additionalProperties: false,
        },
        response: { 200: { type: 'object', properties: { logs: { type: 'array', items: { type: 'string' } }, next: { type: 'string' } } }, '4xx': errorSchema },
      },
    },
    async (req) => logPage(visibleLogs(req, replica.listLogs()), req.query.after, req.query.limit),
  );

  app.put<{ Params: { log: string }; Body: Buffer | undefined }>(
    '/v1/logs/:log',
    {
      config: { access: 'admin' },
      schema: {
        summary:
          'Create a log (idempotent): 201 when created, 200 when it existed. An optional body {"retention": {"maxAgeMs"?, "maxBytes"?, "maxEntries"?}} sets its retention policy; on an existing log it replaces the policy ({} clears it)',
        params: logParams,
        response: { 200: statusSchema, 201: statusSchema, '4xx': errorSchema, '5xx': errorSchema },
      },
    },
    async function createLog(req, reply) {
      const { created, status } = await replica.createLog(req.params.log, parseCreateBody(req.body));
      return reply.code(created ? 201 : 200).send(status);
    },
  );

  app.get<{ Params: { log: string } }>(
    '/v1/logs/:log/readers',
    { config: { access: 'read' }, schema: { summary: "The log's named readers, by name, with their lag in entries", params: logParams, response: { 200: { type: 'object', properties: { readers: { type: 'array', items: readerStatusSchema } } }, '4xx': errorSchema, '5xx': errorSchema } } },
    async function listReaders(req) {
      return { readers: await replica.readers(req.params.log) };
    },
  );

  app.put<{ Params: { log: string; reader: string }; Body: Buffer | undefined }>(
    '/v1/logs/:log/readers/:reader',
    {
      config: { access: 'append' },
      schema: {
        summary:
          'Commit a named reader\'s position: {"nextId": N, "holdsRetention"?: false}; N at most the next id to be committed. A reader holding retention stops truncation (by policy or by POST /truncate) below N',
        params: readerParams,
        response: { 200: readerSchema, '4xx': errorSchema, '5xx': errorSchema },
      },
    },
    async function commitReader(req) {
      const { nextId, holdsRetention } = parseReaderBody(req.body);
      return replica.commitReader(req.params.log, req.params.reader, nextId, holdsRetention);
    },
  );

  app.get<{ Params: { log: string; reader: string } }>(
    '/v1/logs/:log/readers/:reader',
    { config: { access: 'read' }, schema: { summary: 'One named reader, with its lag in entries', params: readerParams, response: { 200: readerStatusSchema, '4xx': errorSchema, '5xx': errorSchema } } },
    async function getReader(req) {
      return replica.reader(req.params.log, req.params.reader);
    },
  );

  app.delete<{ Params: { log: string; reader: string } }>(
    '/v1/logs/:log/readers/:reader',
    { config: { access: 'append' }, schema: { summary: 'Delete a named reader (releasing the retention it held)', params: readerParams, response: { '4xx': errorSchema, '5xx': errorSchema } } },
    async function deleteReader(req) {
      return replica.deleteReader(req.params.log, req.params.reader);
    },
  );

  app.delete<{ Params: { log: string } }>(
    '/v1/logs/:log',
    { config: { access: 'admin' }, schema: { summary: 'Delete a log: its entries, metadata and objects', params: logParams, response: { '4xx': errorSchema, '5xx': errorSchema } } },
    async (req) => replica.deleteLog(req.params.log),
  );

  app.get<{ Params: { log: string } }>(
    '/v1/logs/:log',
    { config: { access: 'read' }, schema: { summary: 'Log status; ids are -1 when none', params: logParams, response: { 200: statusSchema, '4xx': errorSchema, '5xx': errorSchema } } },
    async (req) => replica.status(req.params.log),
  );

  app.post<{ Params: { log: string }; Body: Buffer | undefined }>(
    '/v1/logs/:log/entries',
    {
      config: { access: 'append' },
      schema: {
        summary:
          'Append: application/octet-stream = one entry (raw body); application/json {"entries": [base64...]} or application/vnd.tern.frames = an atomic batch. Headers Tern-Producer-Id and Tern-Producer-Seq make it an idempotent producer\'s: a retry is answered with the original ids and duplicate: true (README, Idempotent producer)',
        params: logParams,
        response: {
          200: {
            type: 'object',
            properties: { id: { type: 'integer' }, firstId: { type: 'integer' }, lastId: { type: 'integer' }, epoch: { type: 'integer' }, duplicate: { type: 'boolean' } },
          },
          '4xx': errorSchema,
          '5xx': errorSchema,
        },
      },
    },
    async (req, reply) => {
      const answer = await answerAppend(replica, appendForwarder, config, req.params.log, req.headers, req.body);
      return sendReply(reply, answer);
    },
  );

  app.post<{ Params: { log: string }; Body: Buffer | undefined }>(
    '/v1/logs/:log/handoff',
    { config: { access: 'admin' }, schema: { summary: 'Move leadership to another replica: {"to": "r2"}; answers the new status once it leads', params: logParams, response: { 200: statusSchema, '4xx': errorSchema, '5xx': errorSchema } } },
    async (req, reply) => {
      const name = req.params.log;
      const leader = req.headers[FORWARDED_HEADER] === undefined ? await replica.leaderElsewhere(name) : undefined;
      // The leader's client port checks the same token again: the forwarded mark alone proves nothing.
      if (leader) return forwarder.forward(leader.clientUrl, req.url, req, reply);
      const { to } = parseJsonObject(req.body, ['to']);
      return replica.handoff(name, String(to));
    },
  );

  app.post<{ Params: { log: string }; Body: Buffer | undefined }>(
    '/v1/logs/:log/truncate',
    { config: { access: 'admin' }, schema: { summary: 'Retention: {"beforeId": N} makes ids below N unreadable (410 TRUNCATED) and deletes their objects in the background; 409 HELD_BY_READER when a reader holding retention is below N', params: logParams, response: { 200: statusSchema, '4xx': errorSchema, '5xx': errorSchema } } },
    async (req) => {
      const { beforeId } = parseJsonObject(req.body, ['beforeId']);
      if (!Number.isSafeInteger(beforeId) || (beforeId as number) < 0) throw new TernError('BAD_REQUEST', '"beforeId" must be a non-negative integer');
      return replica.truncate(req.params.log, beforeId as number);
    },
  );

  app.post<{ Params: { log: string }; Body: Buffer | undefined }>(
    '/v1/logs/:log/recover',
    {
      config: { access: 'admin' },
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

  app.get<{ Params: { log: string }; Querystring: { from?: number; fromTime?: number; limit: number; waitMs: number; follow: boolean } }>(
    '/v1/logs/:log/entries',
    {
      config: { access: 'read' },
      schema: {
        summary:
          'Read committed entries from `from` (default 0), or from the first entry whose time is at least `fromTime` (ms since the Unix epoch); JSON with base64 data and each entry\'s timeMs, or frames with Accept: application/octet-stream (ids in headers tern-from-id, tern-next-id, tern-committed-id), or frames that carry each entry\'s time with Accept: application/vnd.tern.timed-frames. ' +
          'With follow=true (no limit or waitMs): a streaming tail, one chunked answer that carries every entry from `from` as it commits, as frames (keep-alive frame: length 0xFFFFFFFF, no data), timed frames, or, with Accept: application/json, as application/x-ndjson; the trailer tern-end says why it ended',
        params: logParams,
        querystring: {
          type: 'object',
          properties: {
            from: { type: 'integer', minimum: 0 },
            fromTime: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER },
            limit: { type: 'integer', minimum: 1, maximum: config.maxReadEntries, default: Math.min(DEFAULT_READ_LIMIT, config.maxReadEntries) },
            waitMs: { type: 'integer', minimum: 0, maximum: config.maxWaitMs, default: 0 },
            follow: { type: 'boolean', default: false },
          },
          additionalProperties: false,
        },
        response: { '4xx': errorSchema, '5xx': errorSchema },
      },
    },
    async (req, reply) => {
      const { limit, waitMs, follow } = req.query;
      const log = req.params.log;
      const from = await startOfRead(replica, log, req.query);
      if (follow) return streamTail(replica, req, reply, log, from);
      const r = await replica.read(log, from, limit, waitMs);
      const binary = binaryFormatOf(req.headers.accept);
      if (binary) {
        return reply
          .header('content-type', binary)
          .header('tern-from-id', String(r.fromId))
          .header('tern-next-id', String(r.nextId))
          .header('tern-committed-id', String(r.committedId))
          .send(Buffer.concat(binary === TIMED_FRAMES_CONTENT_TYPE ? encodeTimedFrames(r.entries, r.times) : encodeFrames(r.entries)));
      }
      return {
        entries: r.entries.map((data, i) => ({ id: r.fromId + i, timeMs: r.times[i], data: data.toString('base64') })),
        nextId: r.nextId,
        committedId: r.committedId,
      };
    },
  );

  app.get<{ Params: { log: string }; Querystring: { time: number } }>(
    '/v1/logs/:log/offsets',
    {
      config: { access: 'read' },
      schema: {
        summary: 'The id of the first retained, committed entry whose time is at least `time` (ms since the Unix epoch), and that entry\'s time; when none is yet, the next id to commit and timeMs null',
        params: logParams,
        querystring: { type: 'object', properties: { time: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER } }, required: ['time'], additionalProperties: false },
        response: { '4xx': errorSchema, '5xx': errorSchema },
      },
    },
    async (req) => {
      const found = await replica.seekTime(req.params.log, req.query.time);
      return { log: req.params.log, time: req.query.time, id: found.id, timeMs: found.timeMs };
    },
  );

  return app;
}

/** The binary body a read's Accept asks for (timed frames, frames or octets: the last two are the same frames), or undefined for JSON. */
function binaryFormatOf(accept = ''): string | undefined {
  if (accept.includes(TIMED_FRAMES_CONTENT_TYPE)) return TIMED_FRAMES_CONTENT_TYPE;
  if (accept.includes(FRAMES_CONTENT_TYPE)) return FRAMES_CONTENT_TYPE;
  return accept.includes(OCTETS) ? OCTETS : undefined;
}

/** Where a read starts: `from`, or the first entry at or after `fromTime` (not both). */
async function startOfRead(replica: ReplicaApi, log: string, query: { from?: number; fromTime?: number }): Promise<number> {
  if (query.fromTime === undefined) return query.from ?? 0;
  if (query.from !== undefined) throw new TernError('BAD_REQUEST', 'from and fromTime say where to start in two ways: give one');
  return (await replica.seekTime(log, query.fromTime)).id;
}

/**
 * One page of `names` (sorted): the names after `after`, at most `limit`,
 * with `next` when more follow (S3's ListObjectsV2 and etcd's ranges page the same way).
 */
export function logPage(names: readonly string[], after: string | undefined, limit: number): { logs: string[]; next?: string } {
  let start = 0;
  if (after !== undefined) {
    // Binary search: the first name greater than `after`.
    let hi = names.length;
    while (start < hi) {
      const mid = (start + hi) >>> 1;
      if (names[mid]! <= after) start = mid + 1;
      else hi = mid;
    }
  }
  const logs = names.slice(start, start + limit);
  return start + limit < names.length ? { logs, next: logs[logs.length - 1]! } : { logs };
}
