/**
 * The peer API, on its own listener: replication messages (binary) and the
 * few commands replicas send each other. Never exposed to clients. Its paths
 * are src/peer/paths.ts, shared with the senders.
 */
import type { IncomingMessage } from 'node:http';
import type { FastifyBaseLogger, FastifyInstance, FastifyRequest } from 'fastify';
import { TernError } from '../errors.js';
import { FORWARDED_APPENDS_CONTENT_TYPE, FORWARDED_APPENDS_PATH, PEER_APPEND_PATH, PEER_CONTENT_TYPE, PEER_HEALTH_PATH, peerRoutes } from '../peer/paths.js';
import { WireError, decodeAppendRequest, encodeAppendReply, requestVersion } from '../peer/wire.js';
import { MAX_EPOCH, MAX_ID } from '../quorum/messages.js';
import type { HttpLimits, ReplicaApi } from '../replica/api.js';
import { installErrorHandling } from './error-handler.js';
import { answerForwardedAppends } from './forwarded-appends.js';
import { heldAnswersFor } from '../peer/forwarded-appends.js';
import { LOG_NAME_PATTERN } from './bodies.js';
import { checkSender, connectionSender, installPeerIdentity } from './peer-identity.js';
import { sendReply, serveDirectly, type DirectReply, type DirectRoute } from './direct-routes.js';
import { buildServer } from './server-options.js';
import { listenerTls, type TlsMaterial } from '../peer/tls.js';

/** Room in a peer request's body limit beyond its entries, for the message's own framing (headers, runs, log names); far more than they take. */
const BODY_OVERHEAD_BYTES = 1024 * 1024;
/** A forwarded-appends body may be this many times its expected bound (a full batch plus one client request): a margin, since refusing a batch fails every append in it. */
const FORWARDED_BODY_HEADROOM = 2;

// The commands' bodies, checked before anything acts on them: numbers past the formats' ranges (a u32 epoch,
// an i48 id) could neither be encoded back nor ever be passed by a real epoch, so they are 400 BAD_REQUEST.
const logParams = { type: 'object', properties: { log: { type: 'string', pattern: LOG_NAME_PATTERN } }, required: ['log'] };
const replicaId = { type: 'string', minLength: 1, maxLength: 255 };
const epoch = { type: 'integer', minimum: 1, maximum: MAX_EPOCH };
const id = { type: 'integer', minimum: 0, maximum: MAX_ID };
const fenceBody = { type: 'object', properties: { epoch, leader: replicaId }, required: ['epoch', 'leader'] };
// A takeover claims expectedEpoch + 1, which must be an epoch too.
const takeoverBody = {
  type: 'object',
  properties: { expectedEpoch: { type: 'integer', minimum: 0, maximum: MAX_EPOCH - 1 }, from: replicaId, unsafe: { type: 'boolean' }, replacing: { type: 'string', maxLength: 1024 } },
  required: ['expectedEpoch'],
};
const fetchBody = { type: 'object', properties: { fromId: id, toId: id }, required: ['fromId', 'toId'] };
interface TakeoverBody {
  expectedEpoch: number;
  /** The sending replica (absent from replicas that predate the check: known by `replacing`, else refused). */
  from?: string;
  unsafe?: boolean;
  replacing?: string;
}

/**
 * The replica a peer request comes from: with TLS, the one its client
 * certificate names (a body naming another is refused); without, the one
 * the body names, as behind a proxy that terminates TLS. A takeover from a
 * replica that predates the `from` field is known by the key it replaces.
 */
function senderOf(req: FastifyRequest, named: string | undefined): string | undefined {
  if (named !== undefined) checkSender(req.peerId, named);
  return req.peerId ?? named;
}

function replacingSender(replacing: string | undefined): string | undefined {
  if (replacing === undefined) return undefined;
  try {
    const id = (JSON.parse(replacing) as { id?: unknown }).id;
    return typeof id === 'string' ? id : undefined;
  } catch {
    return undefined;
  }
}

/** With `tls`, the listener is mutual TLS and every request carries the sending replica's id (peer-identity.ts). */
export function buildPeerApi(replica: ReplicaApi, config: HttpLimits, logger: FastifyBaseLogger, tls?: TlsMaterial): FastifyInstance {
  // A message carries at most maxBatchBytes of entries, but always at least one entry.
  const bodyLimit = config.maxBatchBytes + config.maxEntryBytes + BODY_OVERHEAD_BYTES;
  const app = buildServer(logger, bodyLimit, config, tls && listenerTls(tls, 'peer'));
  installErrorHandling(app);
  installPeerIdentity(app, tls !== undefined);
  for (const type of [PEER_CONTENT_TYPE, FORWARDED_APPENDS_CONTENT_TYPE]) app.addContentTypeParser(type, { parseAs: 'buffer' }, (_req, body, done) => done(null, body));

  const replicate = async (peerId: string | undefined, body: Buffer): Promise<DirectReply> => {
    let msg;
    try {
      msg = decodeAppendRequest(body);
    } catch (err) {
      if (err instanceof WireError) throw new TernError('BAD_REQUEST', err.message);
      throw err;
    }
    checkSender(peerId, msg.leader);
    const answer = await replica.handlePeerAppend(msg);
    return { status: 200, body: encodeAppendReply(answer, requestVersion(body)), headers: { 'content-type': PEER_CONTENT_TYPE } };
  };
  const forwardedAppends = async (peerId: string | undefined, contentType: string | undefined, body: Buffer): Promise<DirectReply> => {
    // With TLS a batch asks held answers only for the replica its certificate names.
    const heldBy = heldAnswersFor(contentType);
    if (heldBy !== undefined) checkSender(peerId, heldBy);
    return { status: 200, body: await answerForwardedAppends(replica, config, body, heldBy), headers: { 'content-type': FORWARDED_APPENDS_CONTENT_TYPE } };
  };
  // A follower closes a batch once it reaches maxBatchBytes, so a batch holds less than that plus one
  // client request; frames add 4 bytes an entry, which a JSON client body paid for at least as much.
  const forwardedLimit = FORWARDED_BODY_HEADROOM * (config.maxBatchBytes + config.maxRequestBytes);

  app.post<{ Body: Buffer }>(PEER_APPEND_PATH, async (req, reply) => sendReply(reply, await replicate(req.peerId, req.body)));
  app.post<{ Body: Buffer }>(FORWARDED_APPENDS_PATH, { bodyLimit: forwardedLimit }, async (req, reply) => sendReply(reply, await forwardedAppends(req.peerId, req.headers['content-type'], req.body)));
  const sender = (req: IncomingMessage) => connectionSender(req.socket, tls !== undefined);
  serveDirectly(
    app.server,
    [
      { method: 'POST', path: { exact: PEER_APPEND_PATH }, contentTypes: new Set([PEER_CONTENT_TYPE]), maxBodyBytes: bodyLimit, accept: sender, answer: (s, _req, body) => replicate(s.peerId, body) },
      { method: 'POST', path: { exact: FORWARDED_APPENDS_PATH }, contentTypes: new Set([FORWARDED_APPENDS_CONTENT_TYPE]), maxBodyBytes: forwardedLimit, accept: sender, answer: (s, req, body) => forwardedAppends(s.peerId, req.headers['content-type'], body) },
    ] satisfies DirectRoute<{ peerId: string | undefined }>[] as DirectRoute<unknown>[],
    { logger },
  );

  app.post<{ Params: { log: string }; Body: TakeoverBody }>(peerRoutes.takeover, { schema: { params: logParams, body: takeoverBody } }, async function takeoverCommand(req) {
    const { expectedEpoch, unsafe, replacing } = req.body;
    return replica.peerTakeOver(req.params.log, { expectedEpoch, unsafe: unsafe === true, replacing }, senderOf(req, req.body.from ?? replacingSender(replacing)));
  });
  app.post<{ Params: { log: string }; Body: { epoch: number; leader: string } }>(peerRoutes.fence, { schema: { params: logParams, body: fenceBody } }, async function fenceCommand(req) {
    return replica.fence(req.params.log, req.body.epoch, senderOf(req, req.body.leader));
  });
  app.post<{ Params: { log: string }; Body: { fromId: number; toId: number } }>(peerRoutes.fetch, { schema: { params: logParams, body: fetchBody } }, async function fetchCommand(req, reply) {
    return reply.header('content-type', 'application/octet-stream').send(await replica.fetchRuns(req.params.log, req.body.fromId, req.body.toId));
  });

  // Failure detection probes this (src/peer/probe.ts): a different incarnation means the process it knew is gone.
  // A leader's replication connection closes the moment its process dies: tell failure detection.
  app.server.on('connection', (socket) => socket.once('close', () => replica.peerConnectionClosed()));
  app.get(PEER_HEALTH_PATH, async () => ({ status: 'ok', id: replica.id, incarnation: replica.incarnation ?? null }));
  return app;
}
