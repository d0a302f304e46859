/**
 * Lifecycle of one replica process: listen on the peer and client ports,
 * register in etcd under a lease with a fresh incarnation, serve; on SIGTERM
 * or SIGINT stop taking requests, step down, revoke the lease, exit.
 */
import { randomUUID } from 'node:crypto';
import { pino } from 'pino';
import { ClusterDirectory } from '../fencing/directory.js';
import { buildClientApi } from '../http/client-api.js';
import { buildPeerApi } from '../http/peer-api.js';
import { peerRouteMap, type ReplicaConfig } from './config.js';
import { ObjectStore } from '../flusher/object-store.js';
import { missingNodeFlags } from './node-flags.js';
import { PeerTransport } from './peer-transport.js';
import { Replica } from './replica.js';

export interface RunningReplica {
  replica: Replica;
  clientUrl: string;
  peerUrl: string;
  stop(): Promise<void>;
}

export async function startReplica(config: ReplicaConfig): Promise<RunningReplica> {
  const logger = pino({ level: config.logLevel, base: { replica: config.id } });
  const transport = new PeerTransport({ timeoutMs: Math.max(config.retransmitMs * 2, 1000) });
  const store = config.s3Endpoint
    ? new ObjectStore({
        endpoint: config.s3Endpoint,
        region: config.s3Region,
        bucket: config.s3Bucket,
        accessKeyId: config.s3AccessKeyId,
        secretAccessKey: config.s3SecretAccessKey,
        forcePathStyle: config.s3ForcePathStyle === 'true',
        timeoutMs: 10_000,
        onError: (operation) => replica.metrics.storeFailed(operation),
      })
    : undefined;
  if (!store) logger.warn({}, 'no --s3-endpoint: entries stay in memory only, bounded by --max-buffer-bytes');
  const missing = missingNodeFlags(process.execArgv);
  if (missing.length > 0) logger.warn({ missing }, `node was started without ${missing.join(' ')}: expect frequent full GCs under load (README, Configuration)`);
  const replica = new Replica(config, transport, logger, store);
  const peerApp = buildPeerApi(replica, logger);
  const clientApp = await buildClientApi(replica, logger);
  let directory: ClusterDirectory | undefined;
  const stop = async () => {
    await replica.stop();
    await Promise.allSettled([clientApp.close(), peerApp.close()]);
    await directory?.close();
    await transport.close();
    store?.close();
  };
  try {
    const peerAddress = await peerApp.listen({ host: config.host, port: config.peerPort });
    const clientAddress = await clientApp.listen({ host: config.host, port: config.clientPort });
    const peerUrl = advertised(peerAddress, config.advertiseHost);
    const clientUrl = advertised(clientAddress, config.advertiseHost);
    directory = await ClusterDirectory.connect({
      endpoints: config.etcd,
      cluster: config.cluster,
      leaseTtlSeconds: config.leaseTtlSeconds,
      peerRoutes: peerRouteMap(config.peerRoutes),
      self: { id: config.id, clientUrl, peerUrl, incarnation: randomUUID() },
    });
    replica.start(directory);
    logger.info({ clientUrl, peerUrl, incarnation: directory.self.incarnation }, 'replica ready');
    return { replica, clientUrl, peerUrl, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** The URL others use: the bound port with the advertised host. */
function advertised(address: string, host: string): string {
  const url = new URL(address);
  url.hostname = host.includes(':') ? `[${host}]` : host;
  return url.origin;
}
