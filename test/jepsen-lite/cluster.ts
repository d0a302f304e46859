/**
 * The cluster under test: a real local cluster (etcd, s3rver, three replica
 * processes) with a fault-injecting proxy on every network link, so the
 * nemeses can cut, slow or break one link without root:
 *
 *   peer links   one proxy per ordered pair (r1->r2 is not r2->r1), routed
 *                with each replica's --peer-routes
 *   etcd links   one proxy per replica (its --etcd)
 *   store links  one proxy per replica (its --s3-endpoint)
 *
 * Client traffic from the harness goes direct: the faults are on the links
 * the protocol depends on (forwarded appends travel on the peer links, so
 * they meet the peer faults too).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { LocalCluster, REPLICA_IDS, freeClusterPorts } from '../../src/cli/local-cluster.js';
import { FaultProxy } from './proxy.js';

export type LinkKind = 'peer' | 'etcd' | 'store';

export interface ProxiedCluster {
  cluster: LocalCluster;
  dataDir: string;
  /** `r1->r2` for peer links; the replica id for its etcd and store links. */
  links: Record<LinkKind, Map<string, FaultProxy>>;
  /** The replica currently leading `log`, as the given replica (or the first that answers) sees it. */
  leaderOf(log: string): Promise<string | undefined>;
  stop(): Promise<void>;
}

export const peerLink = (from: string, to: string): string => `${from}->${to}`;

/**
 * With `tls`, the cluster runs mutual TLS (LocalClusterOptions.tls): the peer
 * proxies pass the TLS bytes through unchanged, so the routes through them
 * are https and the certificates' 127.0.0.1 still matches.
 */
export async function startProxiedCluster(options: { replicaArgs?: readonly string[]; keepDataDir?: boolean; tls?: boolean } = {}): Promise<ProxiedCluster> {
  const dataDir = mkdtempSync(join(tmpdir(), 'tern-jepsen-'));
  const ports = await freeClusterPorts();
  const links: Record<LinkKind, Map<string, FaultProxy>> = { peer: new Map(), etcd: new Map(), store: new Map() };
  const all = () => [...links.peer.values(), ...links.etcd.values(), ...links.store.values()];
  // The cluster's ports were free a moment ago but nobody holds them yet: a proxy the OS puts on
  // one of them would make that process fail to listen, so such a proxy gets another port.
  const reserved = new Set<number>([...ports.clientPorts, ...ports.peerPorts, ports.etcdClientPort!, ports.etcdPeerPort!, ports.s3Port!]);
  const proxy = async (port: number, name: string): Promise<FaultProxy> => {
    for (;;) {
      const p = await FaultProxy.start({ target: { host: '127.0.0.1', port }, name });
      if (!reserved.has(p.port)) return p;
      await p.close();
    }
  };
  let cluster: LocalCluster | undefined;
  try {
    for (const [i, id] of REPLICA_IDS.entries()) {
      for (const [j, to] of REPLICA_IDS.entries()) {
        if (i !== j) links.peer.set(peerLink(id, to), await proxy(ports.peerPorts[j]!, peerLink(id, to)));
      }
      links.etcd.set(id, await proxy(ports.etcdClientPort!, `${id}->etcd`));
      links.store.set(id, await proxy(ports.s3Port!, `${id}->store`));
    }
    cluster = await LocalCluster.start({
      dataDir,
      ...ports,
      replicaArgs: ['--log-level', process.env.TERN_TEST_LOG_LEVEL ?? 'info', ...(options.replicaArgs ?? [])],
      replicaArgsFor: (id) => [
        '--etcd', links.etcd.get(id)!.url,
        '--s3-endpoint', links.store.get(id)!.url,
        '--peer-routes', REPLICA_IDS.filter((to) => to !== id).map((to) => `${to}=${links.peer.get(peerLink(id, to))!.url.replace(/^http:/, options.tls ? 'https:' : 'http:')}`).join(','),
      ],
      tls: options.tls,
    });
  } catch (err) {
    await Promise.all(all().map((p) => p.close()));
    rmSync(dataDir, { recursive: true, force: true });
    throw err;
  }
  const started = cluster;
  return {
    cluster: started,
    dataDir,
    links,
    async leaderOf(log) {
      for (const r of started.replicas) {
        try {
          const res = await request(`${r.clientUrl}/v1/logs/${log}`, { headersTimeout: 1000, bodyTimeout: 1000 });
          const body = (await res.body.json()) as { leader?: string | null };
          if (res.statusCode === 200 && body.leader) return body.leader;
        } catch {
          // a dead or paused replica: ask the next one
        }
      }
      return undefined;
    },
    async stop() {
      await started.stop();
      await Promise.all(all().map((p) => p.close()));
      if (!options.keepDataDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
