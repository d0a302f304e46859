/**
 * Owns the addresses of the peer protocol: every path and media type of a
 * replica's peer listener, used both by the senders (link, transport,
 * forwarder, probe) and by the fastify routes that answer them, so the two
 * sides cannot drift apart.
 */

/** Replication messages (wire.ts), leader to follower over the pipelined link. */
export const PEER_APPEND_PATH = '/peer/v1/append';
export const PEER_CONTENT_TYPE = 'application/vnd.tern.peer';

/** Appends a follower took for a log the addressed replica leads, in batches (forwarded-appends.ts). */
export const FORWARDED_APPENDS_PATH = '/peer/v1/forwarded-appends';
export const FORWARDED_APPENDS_CONTENT_TYPE = 'application/vnd.tern.forwarded-appends';

/** The peer listener's liveness route, answering `{ id, incarnation }` (probe.ts). */
export const PEER_HEALTH_PATH = '/healthz';

/** Per-log commands: small JSON requests, except fetch whose answer is entry runs (wire.ts). */
type LogCommand = 'takeover' | 'fence' | 'fetch';

const LOGS = '/peer/v1/logs';
const commandPath = (command: LogCommand) => (log: string) => `${LOGS}/${encodeURIComponent(log)}/${command}`;
const commandRoute = (command: LogCommand) => `${LOGS}/:log/${command}`;

/** The path a sender posts a log's command to. */
export const peerPaths = { takeover: commandPath('takeover'), fence: commandPath('fence'), fetch: commandPath('fetch') };

/** The same paths as fastify routes, the log name in `:log`. */
export const peerRoutes = { takeover: commandRoute('takeover'), fence: commandRoute('fence'), fetch: commandRoute('fetch') };
