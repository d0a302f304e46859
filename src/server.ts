/**
 * The composition root: owns the wiring of one replica process (logger,
 * object store, peer transport, replica, the HTTP listeners, the tokens
 * file, etcd directory) and its lifecycle, above every layer it wires. Listen
 * on the peer, client (and metrics) ports, register in etcd under a lease with a fresh
 * incarnation, serve; on SIGTERM or SIGINT drain (hand off or close clean
 * every led log, bounded by --shutdown-timeout-ms), then stop taking
 * requests, revoke the lease, exit.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { withTimeout } from './with-timeout.js';
import { pino, type Logger } from 'pino';
import { TokenFile } from './auth/token-file.js';
import { ClusterDirectory } from './fencing/directory.js';
import { ObjectStore } from './flusher/object-store.js';
import { buildClientApi } from './http/client-api.js';
import { buildMetricsApi } from './http/metrics-api.js';
import { buildPeerApi } from './http/peer-api.js';
import { outgoingTls } from './peer/tls.js';
import { PeerTransport } from './peer/transport.js';
import { peerRouteMap, type ReplicaConfig } from './replica/config.js';
import { missingNodeFlags } from './replica/node-flags.js';
import type { ReplicaMetrics } from './replica/metrics.js';
import { Replica, type DrainReport } from './replica/replica.js';
import { loadSecrets, plainRemoteEndpoint } from './replica/secrets.js';

/** How long a drained replica keeps answering before it closes its listeners (etcd watches carry the news in milliseconds). */
const SHUTDOWN_LINGER_MS = 250;
/**
 * A message to a peer unanswered for this many retransmit periods fails its
 * link (the connection is dropped and a new one made): one period late is a
 * slow peer, whose message the leader resends anyway; this many is a paused or
 * cut-off one.
 */
const PEER_TIMEOUT_RETRANSMITS = 2;
/** ...but never sooner than this, so that a short --retransmit-ms on a loaded machine does not churn connections. */
const MIN_PEER_TIMEOUT_MS = 1000;

export interface RunningReplica {
  replica: Replica;
  clientUrl: string;
  peerUrl: string;
  /** Controlled shutdown: drain within --shutdown-timeout-ms, then stop. */
  shutdown(): Promise<DrainReport>;
  /** Stops at once (what is left to drain is left as after a crash). */
  stop(): Promise<void>;
}

/** Throws ConfigError (before anything listens) when a file the configuration names cannot be used. */
export async function startReplica(config: ReplicaConfig): Promise<RunningReplica> {
  const secrets = loadSecrets(config);
  const logger = pino({ level: config.logLevel, base: { replica: config.id } });
  const transport = new PeerTransport({
    timeoutMs: Math.max(config.retransmitMs * PEER_TIMEOUT_RETRANSMITS, MIN_PEER_TIMEOUT_MS),
    tls: secrets.tls && outgoingTls(secrets.tls),
    // Every replica runs with the same keep-alive timeout: half of it keeps clear of a peer's close.
    idleMs: config.keepAliveTimeoutMs / 2,
  });
  const store = config.s3Endpoint
    ? new ObjectStore({
        endpoint: config.s3Endpoint,
        region: config.s3Region,
        bucket: config.s3Bucket,
        credentials: secrets.s3,
        forcePathStyle: config.s3ForcePathStyle === 'true',
        timeoutMs: config.s3TimeoutMs,
        onError: (operation) => replica.metrics.storeFailed(operation),
      })
    : undefined;
  if (!store) logger.warn({}, 'no --s3-endpoint: entries stay in memory only, bounded by --max-buffer-bytes');
  else if (plainRemoteEndpoint(config.s3Endpoint)) logger.warn({ endpoint: config.s3Endpoint }, 'the object store is reached over plain http beyond this machine: entries and request signatures cross the network in the clear; use an https endpoint');
  const missing = missingNodeFlags(process.execArgv);
  if (missing.length > 0) logger.warn({ missing }, `node was started without ${missing.join(' ')}: expect frequent full GCs under load (README, Configuration)`);
  const replica = new Replica(config, transport, logger, store);
  const tokens = openTokens(config, logger, replica.metrics);
  const peerApp = buildPeerApi(replica, config, logger, secrets.tls);
  const clientApp = await buildClientApi(replica, config, logger, { tokens, metrics: config.metricsPort === 0, tls: secrets.tls });
  const metricsApp = config.metricsPort === 0 ? undefined : buildMetricsApi(replica.metrics, logger, config);
  let directory: ClusterDirectory | undefined;
  const stop = async () => {
    await replica.stop();
    tokens?.close();
    await Promise.allSettled([clientApp.close(), peerApp.close(), metricsApp?.close()]);
    await directory?.close();
    await transport.close();
    store?.close();
  };
  try {
    const peerAddress = await peerApp.listen({ host: config.host, port: config.peerPort });
    const clientAddress = await clientApp.listen({ host: config.host, port: config.clientPort });
    const metricsAddress = await metricsApp?.listen({ host: config.host, port: config.metricsPort });
    const peerUrl = advertised(peerAddress, config.advertiseHost);
    const clientUrl = advertised(clientAddress, config.advertiseHost);
    directory = await ClusterDirectory.connect({
      endpoints: config.etcd,
      credentials: secrets.etcd,
      cluster: config.cluster,
      leaseTtlSeconds: config.leaseTtlSeconds,
      peerRoutes: peerRouteMap(config.peerRoutes),
      self: { id: config.id, clientUrl, peerUrl, incarnation: randomUUID() },
    });
    replica.start(directory);
    logger.info({ clientUrl, peerUrl, metricsUrl: metricsAddress, incarnation: directory.self.incarnation }, 'replica ready');
    const shutdown = async (): Promise<DrainReport> => {
      const started = Date.now();
      const report: DrainReport = { handedOff: [], closedClean: [], lost: [], unfinished: [] };
      logger.info({ timeoutMs: config.shutdownTimeoutMs }, 'controlled shutdown: draining');
      const drained = replica.drain(report).catch((err: Error) => void report.unfinished.push({ log: '*', reason: err.message }));
      // False when the deadline came first: the drain is abandoned, not cancelled.
      const finished = await withTimeout(drained, config.shutdownTimeoutMs).then(() => true, () => false);
      const summary = { ms: Date.now() - started, handedOff: report.handedOff.length, closedClean: report.closedClean.length, lost: report.lost.length, unfinished: report.unfinished };
      if (finished && report.unfinished.length === 0) logger.info(summary, 'drained: stopping');
      else logger.error({ ...summary, timedOut: !finished }, 'drain did not finish: stopping as after a crash; the logs left recover from their counted replicas');
      // Peers and clients learn from etcd that this replica leads nothing any more; until they do,
      // it answers what still reaches it (refusing appends) rather than cutting a request off mid-way,
      // which would leave its outcome unknown.
      await sleep(SHUTDOWN_LINGER_MS);
      await stop();
      return report;
    };
    return { replica, clientUrl, peerUrl, shutdown, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * The tokens file, read now (a bad one stops the start-up with a ConfigError)
 * and kept up to date; undefined, with a warning on every start, when the
 * replica runs open.
 */
function openTokens(config: ReplicaConfig, logger: Logger, metrics: ReplicaMetrics): TokenFile | undefined {
  if (config.tokensFile === '') {
    metrics.authState({ open: true });
    logger.warn({}, 'no --tokens-file: the client API is OPEN, anyone who reaches the client port may append, read, delete, truncate, recover and hand off (README, Authentication)');
    return undefined;
  }
  return TokenFile.open(config.tokensFile, logger, {
    loaded: (count) => metrics.authState({ open: false, tokens: count }),
    reloaded: (result) => metrics.authReloaded(result),
  });
}

/** The URL others use: the bound port with the advertised host. */
function advertised(address: string, host: string): string {
  const url = new URL(address);
  url.hostname = host.includes(':') ? `[${host}]` : host;
  return url.origin;
}
