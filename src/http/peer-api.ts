/**
 * The peer API, on its own listener: replication messages (binary) and the
 * few commands replicas send each other. Never exposed to clients. Its paths
 * are src/peer/paths.ts, shared with the senders.
 */
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import { TernError } from '../errors.js';
import { FORWARDED_APPENDS_CONTENT_TYPE, FORWARDED_APPENDS_PATH, PEER_APPEND_PATH, PEER_CONTENT_TYPE, PEER_HEALTH_PATH, peerRoutes } from '../peer/paths.js';
import { WireError, decodeAppendRequest, encodeAppendReply, requestVersion } from '../peer/wire.js';
import type { HttpLimits, ReplicaApi } from '../replica/api.js';
import { installErrorHandling } from './error-handler.js';
import { answerForwardedAppends } from './forwarded-appends.js';
import { checkSender, installPeerIdentity } from './peer-identity.js';
import { buildServer } from './server-options.js';
import { listenerTls, type TlsMaterial } from '../peer/tls.js';

/** Room in a peer request's body limit beyond its entries, for the message's own framing (headers, runs, log names); far more than they take. */
const BODY_OVERHEAD_BYTES = 1024 * 1024;
/** A forwarded-appends body may be this many times its expected bound (a full batch plus one client request): a margin, since refusing a batch fails every append in it. */
const FORWARDED_BODY_HEADROOM = 2;

/** With `tls`, the listener is mutual TLS and every request carries the sending replica's id (peer-identity.ts). */
export function buildPeerApi(replica: ReplicaApi, config: HttpLimits, logger: FastifyBaseLogger, tls?: TlsMaterial): FastifyInstance {
  // A message carries at most maxBatchBytes of entries, but always at least one entry.
  const bodyLimit = config.maxBatchBytes + config.maxEntryBytes + BODY_OVERHEAD_BYTES;
  const app = buildServer(logger, bodyLimit, tls && listenerTls(tls, 'peer'));
  installErrorHandling(app);
  installPeerIdentity(app, tls !== undefined);
  for (const type of [PEER_CONTENT_TYPE, FORWARDED_APPENDS_CONTENT_TYPE]) app.addContentTypeParser(type, { parseAs: 'buffer' }, (_req, body, done) => done(null, body));

  app.post<{ Body: Buffer }>(PEER_APPEND_PATH, async (req, reply) => {
    let msg;
    try {
      msg = decodeAppendRequest(req.body);
    } catch (err) {
      if (err instanceof WireError) throw new TernError('BAD_REQUEST', err.message);
      throw err;
    }
    checkSender(req, msg.leader);
    const answer = replica.handlePeerAppend(msg);
    return reply.header('content-type', PEER_CONTENT_TYPE).send(encodeAppendReply(answer, requestVersion(req.body)));
  });

  // A follower closes a batch once it reaches maxBatchBytes, so a batch holds less than that plus one
  // client request; frames add 4 bytes an entry, which a JSON client body paid for at least as much.
  const forwardedLimit = FORWARDED_BODY_HEADROOM * (config.maxBatchBytes + config.maxRequestBytes);
  app.post<{ Body: Buffer }>(FORWARDED_APPENDS_PATH, { bodyLimit: forwardedLimit }, async (req, reply) =>
    reply.header('content-type', FORWARDED_APPENDS_CONTENT_TYPE).send(await answerForwardedAppends(replica, config.maxEntryBytes, req.body)),
  );

  app.post<{ Params: { log: string }; Body: { expectedEpoch: number; unsafe?: boolean; replacing?: string } }>(peerRoutes.takeover, async (req) =>
    replica.takeOver(req.params.log, req.body.expectedEpoch, req.body.unsafe === true, req.body.replacing),
  );
  app.post<{ Params: { log: string }; Body: { epoch: number; leader: string } }>(peerRoutes.fence, async (req) => {
    checkSender(req, req.body.leader);
    return replica.fence(req.params.log, req.body.epoch, req.body.leader);
  });
  app.post<{ Params: { log: string }; Body: { fromId: number; toId: number } }>(peerRoutes.fetch, async (req, reply) =>
    reply.header('content-type', 'application/octet-stream').send(replica.fetchRuns(req.params.log, req.body.fromId, req.body.toId)),
  );

  // Failure detection probes this (src/peer/probe.ts): a different incarnation means the process it knew is gone.
  // A leader's replication connection closes the moment its process dies: tell failure detection.
  app.server.on('connection', (socket) => socket.once('close', () => replica.peerConnectionClosed()));
  app.get(PEER_HEALTH_PATH, async () => ({ status: 'ok', id: replica.id, incarnation: replica.incarnation ?? null }));
  return app;
}
