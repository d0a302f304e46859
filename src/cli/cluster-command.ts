/**
 * `tern cluster`: a local three-replica cluster for development and scripts.
 * Ports: replica i (1..3) serves clients on base+i and peers on base+100+i;
 * the etcd it starts listens on base+379 (clients) and base+380 (peers), the
 * s3rver object store on base+390. With --auth the replicas require tokens
 * and the admin token is printed once (and kept in DIR/admin-token, 0600).
 */
import { parseArgs } from 'node:util';
import { ConfigError } from '../replica/config.js';
import { ADMIN_TOKEN_FILE, TOKENS_FILE } from './cluster-auth.js';
import { LocalCluster } from './local-cluster.js';

/** A replica's drain is bounded by its --shutdown-timeout-ms (20 s by default); after this it is killed. */
const CLUSTER_STOP_GRACE_MS = 30_000;

export interface ClusterArgs {
  dataDir: string;
  basePort: number;
  etcd: string | undefined;
  tls: boolean;
  auth: boolean;
  replicaArgs: string[];
}

export function clusterUsage(): string {
  return `Usage: tern cluster [--data-dir DIR] [--base-port N] [--etcd URL] [--tls] [--auth] [-- REPLICA FLAGS...]
  --data-dir DIR   where etcd data, replica logs and cluster.json go (default .tern)
  --base-port N    replica i serves clients on N+i and peers on N+100+i; etcd uses N+379/N+380,
                   the s3rver object store N+390 (default 7000)
  --etcd URL       use this etcd instead of starting one
  --tls            HTTPS on every listener, mutual TLS between replicas: makes a throwaway CA
                   and a certificate per replica in DIR/tls (ca.crt, r1.crt, r1.key, ...)
  --auth           require client tokens: writes DIR/${TOKENS_FILE} with a new admin token, prints
                   the token once and keeps it in DIR/${ADMIN_TOKEN_FILE} (mode 0600)
  flags after -- are passed to every replica (see tern replica --help)
Writes DIR/cluster.json; Ctrl-C stops everything it started.`;
}

export function parseClusterArgs(argv: string[]): ClusterArgs {
  const split = argv.indexOf('--');
  const own = split < 0 ? argv : argv.slice(0, split);
  let values;
  try {
    ({ values } = parseArgs({
      args: own,
      options: { 'data-dir': { type: 'string' }, 'base-port': { type: 'string' }, etcd: { type: 'string' }, tls: { type: 'boolean' }, auth: { type: 'boolean' } },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
  const basePort = Number(values['base-port'] ?? 7000);
  if (!Number.isInteger(basePort) || basePort < 1 || basePort > 65535 - 400) throw new ConfigError(`--base-port must be an integer in [1, 65135], got "${values['base-port']}"`);
  return { dataDir: values['data-dir'] ?? '.tern', basePort, etcd: values.etcd, tls: values.tls === true, auth: values.auth === true, replicaArgs: split < 0 ? [] : argv.slice(split + 1) };
}

export async function runClusterCommand(args: ClusterArgs): Promise<number> {
  const b = args.basePort;
  const cluster = await LocalCluster.start({
    dataDir: args.dataDir,
    clientPorts: [b + 1, b + 2, b + 3],
    peerPorts: [b + 101, b + 102, b + 103],
    etcdEndpoint: args.etcd,
    etcdClientPort: b + 379,
    etcdPeerPort: b + 380,
    s3Port: b + 390,
    replicaArgs: args.replicaArgs,
    tls: args.tls,
    auth: args.auth,
  });
  const file = cluster.writeClusterFile();
  console.log(`etcd    ${cluster.etcdEndpoint}`);
  console.log(`s3      ${cluster.objectStoreEndpoint} (s3rver, bucket tern)`);
  for (const r of cluster.replicas) console.log(`${r.id}      client ${r.clientUrl}  peer ${r.peerUrl}  (log ${cluster.dataDir}/${r.id}.log)`);
  if (cluster.tls) console.log(`tls     clients trust ${cluster.tls.ca} (curl --cacert ${cluster.tls.ca} ...)`);
  if (cluster.adminToken) console.log(`auth    admin token (shown once; also in ${cluster.dataDir}/${ADMIN_TOKEN_FILE}): ${cluster.adminToken}\n        send it as Authorization: Bearer <token>; more tokens: tern token create, added to ${cluster.dataDir}/${TOKENS_FILE}`);
  else console.log('auth    none: the cluster is open to anyone who reaches its ports (--auth to require tokens)');
  console.log(`cluster.json: ${file}\nCtrl-C stops the cluster.`);
  let stopping = false;
  for (const r of cluster.replicas) {
    r.process.on('exit', (code, signal) => {
      if (!stopping) console.log(`${r.id} exited (${signal ?? code}); restart it with the argv in cluster.json`);
    });
  }
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  stopping = true;
  console.log('stopping: the replicas hand off or close their logs clean (Ctrl-C again to kill them now)...');
  const force = () => {
    console.log('killing everything now');
    cluster.kill();
    process.exit(1);
  };
  process.once('SIGINT', force);
  process.once('SIGTERM', force);
  await cluster.stop(CLUSTER_STOP_GRACE_MS);
  console.log('stopped');
  return 0;
}
