/**
 * Owns the direct path of the hottest route: `POST /v1/logs/{log}/entries`
 * answered from Node's request event, without fastify's router, hooks,
 * schemas, body parser (which copies every body into a new buffer) and reply
 * machinery. Per request these cost the replica about as much CPU as Node's
 * HTTP itself, and on the append path every replica pays them: the leader for
 * its own clients, a follower for the appends it forwards (bench/results,
 * 2026-12-03-compare).
 *
 * Only a request of the common shape takes it: a plain path (no query, no
 * escapes) naming a log the route accepts, one of the append media types, a
 * Content-Length within --max-request-bytes, a connection under the cap and,
 * on a cluster with tokens, a token that may append to that log. Any other
 * goes to fastify, whose route carries it out with the same answerAppend,
 * and whose hooks answer what is wrong with it (auth refusals, 413 with a
 * lingering close, 415...) as before: the two paths cannot answer a request
 * differently, they only differ in what it costs.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyBaseLogger } from 'fastify';
import { FRAMES_CONTENT_TYPE } from '../frames.js';
import { isEtcdUnavailable } from '../etcd-unavailable.js';
import type { AppendHeaders, AppendReply } from './append-request.js';
import { JSON_TYPE, JSON_UTF8, LOG_NAME_PATTERN, OCTETS, mediaType } from './bodies.js';
import { errorHeaders, toTernError } from './error-handler.js';

const PREFIX = '/v1/logs/';
const SUFFIX = '/entries';
const LOG_NAME = new RegExp(LOG_NAME_PATTERN);
const APPEND_TYPES = new Set([OCTETS, FRAMES_CONTENT_TYPE, JSON_TYPE]);

export interface DirectAppendOptions {
  maxRequestBytes: number;
  isOverCap(socket: Socket): boolean;
  /** Whether the request's Authorization may append to `log` (auth.ts); absent on an open cluster. */
  mayAppend?(authorization: string | undefined, log: string): boolean;
  isStopping(): boolean;
  answer(log: string, headers: AppendHeaders, body: Buffer): Promise<AppendReply>;
  /** A failure reaching etcd, for its metric. */
  etcdUnavailable(): void;
  logger: FastifyBaseLogger;
}

/** Puts the direct path in front of the server's one request handler (fastify's), which takes every request it does not. */
export function serveAppendsDirectly(server: Server, options: DirectAppendOptions): void {
  const handlers = server.listeners('request') as ((req: IncomingMessage, res: ServerResponse) => void)[];
  if (handlers.length !== 1) throw new Error(`the client listener has ${handlers.length} request handlers, expected fastify's alone`);
  const fastify = handlers[0]!;
  server.removeAllListeners('request');
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const log = directAppendLog(req, options);
    if (log === undefined) return fastify.call(server, req, res);
    readBody(req).then(
      (body) => options.answer(log, req.headers, body).then((reply) => send(res, reply, options), (err: unknown) => sendError(res, err, options)),
      () => res.destroy(),
    );
  });
}

/** The log of a request the direct path takes; undefined for any other. */
function directAppendLog(req: IncomingMessage, options: DirectAppendOptions): string | undefined {
  const url = req.url;
  if (req.method !== 'POST' || url === undefined || !url.startsWith(PREFIX) || !url.endsWith(SUFFIX)) return undefined;
  const log = url.slice(PREFIX.length, url.length - SUFFIX.length);
  if (!LOG_NAME.test(log)) return undefined;
  const length = req.headers['content-length'];
  if (length === undefined || req.headers['transfer-encoding'] !== undefined || !(Number(length) <= options.maxRequestBytes)) return undefined;
  if (!APPEND_TYPES.has(mediaType(req.headers['content-type']))) return undefined;
  if (options.isOverCap(req.socket)) return undefined;
  if (options.mayAppend && !options.mayAppend(req.headers.authorization, log)) return undefined;
  return log;
}

/** The body, within the Content-Length Node's parser holds it to; rejects if the client goes away first. */
function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.once('end', () => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)));
    req.once('error', reject);
    req.once('close', () => {
      if (!req.complete) reject(new Error('the client closed the request'));
    });
  });
}

function send(res: ServerResponse, reply: AppendReply, options: DirectAppendOptions): void {
  const headers: Record<string, string | number> = { ...reply.headers, 'content-type': JSON_UTF8, 'content-length': Buffer.byteLength(reply.json) };
  // As the client listener's onSend hook does: no connection is reused at the moment the listener closes.
  if (options.isStopping()) headers.connection = 'close';
  res.writeHead(reply.status, headers).end(reply.json);
}

function sendError(res: ServerResponse, err: unknown, options: DirectAppendOptions): void {
  if (isEtcdUnavailable(err)) options.etcdUnavailable();
  const te = toTernError(err);
  if (te.code === 'INTERNAL') options.logger.error({ err }, 'unhandled error');
  send(res, { status: te.status, json: JSON.stringify(te.toBody()), headers: errorHeaders(te) }, options);
}
