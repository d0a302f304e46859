/**
 * Owns the direct path of the hot routes (a client's append, a replication
 * message, a batch of forwarded appends): answered from Node's request event,
 * without fastify's router, hooks, schemas, body parser (which copies every
 * body into a new buffer) and reply machinery. Per request these cost about
 * as much CPU as Node's HTTP itself, and every append pays them up to four
 * times: the replica it reaches, the leader's peer API for a forwarded one,
 * and each follower for its replication message (bench/results/
 * 2026-12-03-compare.md).
 *
 * A route takes a request from its head alone, before any byte of the body
 * is read: only one of the common shape (its exact path, its media type, a
 * Content-Length within its limit, a caller it accepts). Any other goes to
 * fastify, whose routes carry out the same handlers and whose hooks answer
 * what is wrong with it (auth refusals, 413 with a lingering close, 415...)
 * as before: the two paths differ in what a request costs, not in its answer.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { FastifyBaseLogger, FastifyReply } from 'fastify';
import { isEtcdUnavailable } from '../etcd-unavailable.js';
import { JSON_UTF8, mediaType } from './bodies.js';
import { errorHeaders, toTernError } from './error-handler.js';

/** An answer: its status, its body, and its headers (the content type among them). */
export interface DirectReply {
  status: number;
  body: string | Buffer;
  headers: Record<string, string>;
}

export interface DirectRoute<T> {
  method: 'POST';
  /** The path without its log, for routes that name one: `prefix` + log + `suffix`. */
  path: { exact: string } | { prefix: string; suffix: string };
  contentTypes: ReadonlySet<string>;
  maxBodyBytes: number;
  /** What `answer` needs from the head, or undefined to leave the request to fastify (after method, path, type and length passed). */
  accept(req: IncomingMessage, log: string | undefined): T | undefined;
  /** Throws what the client must be told (the error handler's mapping answers it). */
  answer(accepted: T, req: IncomingMessage, body: Buffer): Promise<DirectReply>;
}

export interface DirectRouteOptions {
  /** Whether the listener is stopping: then no connection is kept for reuse, as the client listener's onSend hook does. */
  isStopping?(): boolean;
  /** A failure reaching etcd, for its metric. */
  etcdUnavailable?(): void;
  logger: FastifyBaseLogger;
}

/** Answers `reply` through fastify: the routes that serve what the direct path leaves them. */
export function sendReply(reply: FastifyReply, answer: DirectReply): FastifyReply {
  return reply.code(answer.status).headers(answer.headers).send(answer.body);
}

/** Puts `routes` in front of the server's one request handler (fastify's), which takes every request they do not. */
export function serveDirectly(server: Server, routes: readonly DirectRoute<unknown>[], options: DirectRouteOptions): void {
  const handlers = server.listeners('request') as ((req: IncomingMessage, res: ServerResponse) => void)[];
  if (handlers.length !== 1) throw new Error(`the listener has ${handlers.length} request handlers, expected fastify's alone`);
  const fastify = handlers[0]!;
  server.removeAllListeners('request');
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    for (const route of routes) {
      const accepted = acceptedBy(route, req);
      if (accepted === undefined) continue;
      readBody(req).then(
        (body) =>
          route.answer(accepted, req, body).then(
            (reply) => send(res, reply, options),
            (err: unknown) => sendError(res, err, options),
          ),
        () => res.destroy(),
      );
      return;
    }
    fastify.call(server, req, res);
  });
}

function acceptedBy<T>(route: DirectRoute<T>, req: IncomingMessage): T | undefined {
  const url = req.url;
  if (req.method !== route.method || url === undefined) return undefined;
  let log: string | undefined;
  if ('exact' in route.path) {
    if (url !== route.path.exact) return undefined;
  } else {
    const { prefix, suffix } = route.path;
    if (url.length <= prefix.length + suffix.length || !url.startsWith(prefix) || !url.endsWith(suffix)) return undefined;
    log = url.slice(prefix.length, url.length - suffix.length);
  }
  const length = req.headers['content-length'];
  if (length === undefined || req.headers['transfer-encoding'] !== undefined || !(Number(length) <= route.maxBodyBytes)) return undefined;
  if (!route.contentTypes.has(mediaType(req.headers['content-type']))) return undefined;
  return route.accept(req, log);
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

function send(res: ServerResponse, reply: DirectReply, options: DirectRouteOptions): void {
  const headers: Record<string, string | number> = { ...reply.headers, 'content-length': Buffer.byteLength(reply.body) };
  if (options.isStopping?.()) headers.connection = 'close';
  res.writeHead(reply.status, headers).end(reply.body);
}

function sendError(res: ServerResponse, err: unknown, options: DirectRouteOptions): void {
  if (isEtcdUnavailable(err)) options.etcdUnavailable?.();
  const te = toTernError(err);
  if (te.code === 'INTERNAL') options.logger.error({ err }, 'unhandled error');
  send(res, { status: te.status, body: JSON.stringify(te.toBody()), headers: { ...errorHeaders(te), 'content-type': JSON_UTF8 } }, options);
}
