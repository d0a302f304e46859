/**
 * A local cluster: etcd (unless an endpoint is given) and three replica
 * processes on loopback. The `tern cluster` command, the integration tests
 * and the benchmark all start clusters through this one piece, and describe
 * them with the same cluster.json.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent } from 'undici';
import { REPLICA_NODE_FLAGS } from '../replica/node-flags.js';
import { writeLocalAdminToken } from './cluster-auth.js';
import { startEtcd, type EtcdServer } from './etcd.js';
import type { LocalTlsFiles } from './local-ca.js';
import { S3RVER_BUCKET, s3rverReplicaArgs, startS3rver, type S3Server } from './s3rver.js';
import { freePort, stopChild, waitForHttp } from './processes.js';

export interface LocalClusterOptions {
  dataDir: string;
  /** Client and peer port of each replica, in the order r1, r2, r3. */
  clientPorts: readonly number[];
  peerPorts: readonly number[];
  /** Use this etcd instead of starting one. */
  etcdEndpoint?: string;
  /** Ports for the etcd this cluster starts (when no endpoint is given). */
  etcdClientPort?: number;
  etcdPeerPort?: number;
  /** Port for the s3rver this cluster starts; without it the replicas have no object store. */
  s3Port?: number;
  /** Where that s3rver keeps its files (default dataDir/s3rver); the side-by-side benchmark puts them on tmpfs. */
  s3Dir?: string;
  /** Extra `tern replica` flags for every replica. */
  replicaArgs?: readonly string[];
  /** Extra flags for one replica, after the shared ones (a later flag wins): per-replica routes through proxies, say. */
  replicaArgsFor?: (id: string) => readonly string[];
  /** Node.js flags for the replica processes, after REPLICA_NODE_FLAGS (`--cpu-prof --cpu-prof-dir=DIR` to profile them, say). */
  nodeArgs?: readonly string[];
  /** Where replica output goes: a log file per replica in dataDir (default), or this process's stdio. */
  output?: 'files' | 'inherit';
  /** TLS on both listeners and mutual TLS between replicas, with a throwaway CA and certificates made under dataDir/tls. */
  tls?: boolean;
  /** Require tokens: a new admin token (`adminToken`), its hash in dataDir/tokens.jsonl, the token in dataDir/admin-token (0600). */
  auth?: boolean;
}

/** cluster.json: what scripts, fault tests and the benchmark need to drive the cluster. */
export interface ClusterFile {
  etcd: { endpoint: string; pid: number | null };
  objectStore: { endpoint: string; bucket: string; pid: number } | null;
  /** The CA certificate that clients of a TLS cluster must trust; null for plain HTTP. */
  tls: { ca: string } | null;
  replicas: { id: string; pid: number; clientUrl: string; peerUrl: string; argv: string[] }[];
}

export interface ReplicaProcess {
  id: string;
  clientUrl: string;
  peerUrl: string;
  /** The exact command that starts this replica (again). */
  argv: string[];
  process: ChildProcess;
}

/** How long `stop` lets a replica drain before killing it: tests and scripts should not wait the full --shutdown-timeout-ms on a broken cluster. */
const DEFAULT_STOP_GRACE_MS = 10_000;
/** A replica must be live or ready within this of its start: registration takes well under a second, readiness waits for its logs to catch up. */
const REPLICA_START_TIMEOUT_MS = 30_000;
/** Lines of a replica's log shown when it fails to start: enough for its last error. */
const FAILURE_LOG_LINES = 5;

export const REPLICA_IDS = ['r1', 'r2', 'r3'] as const;

type ClusterPorts = Pick<LocalClusterOptions, 'clientPorts' | 'peerPorts' | 'etcdClientPort' | 'etcdPeerPort' | 's3Port'>;

/** Ports the OS says are free, for every process of a cluster (tests and benchmarks); no s3Port without an object store. */
export async function freeClusterPorts(options: { objectStore?: boolean } = {}): Promise<ClusterPorts> {
  const ports = await Promise.all(Array.from({ length: 9 }, () => freePort()));
  return {
    clientPorts: ports.slice(0, 3),
    peerPorts: ports.slice(3, 6),
    etcdClientPort: ports[6],
    etcdPeerPort: ports[7],
    s3Port: options.objectStore === false ? undefined : ports[8],
  };
}

/** The directory with package.json above this file (in src/ or dist/). */
export function projectRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('cannot find the project root');
    dir = up;
  }
  return dir;
}

/** The compiled CLI entry, whether this module runs from dist/ or from src/ under a test runner. */
export function cliEntry(): string {
  const dir = projectRoot();
  const entry = join(dir, 'dist', 'src', 'cli', 'main.js');
  if (!existsSync(entry)) throw new Error(`${entry} is missing: run npm run build`);
  return entry;
}

export class LocalCluster {
  readonly replicas: ReplicaProcess[];

  private constructor(
    readonly dataDir: string,
    readonly etcdEndpoint: string,
    private etcd: EtcdServer | undefined,
    private readonly etcdPorts: { clientPort: number; peerPort: number } | undefined,
    replicas: ReplicaProcess[],
    private readonly output: 'files' | 'inherit',
    private s3: S3Server | undefined,
    private readonly s3Port: number | undefined,
    private readonly s3Dir: string,
    /** The CA and certificates of a TLS cluster. */
    readonly tls: LocalTlsFiles | undefined,
    /** The admin token of an authenticated cluster (`auth`); undefined when the cluster is open. */
    readonly adminToken: string | undefined,
  ) {
    this.replicas = replicas;
  }

  get objectStoreEndpoint(): string | undefined {
    return this.s3?.endpoint;
  }

  /** Where s3rver keeps the objects (bucket directories), for tests that damage them. */
  get objectStoreDir(): string {
    return join(this.s3Dir, 'data');
  }

  /** Stops the object store (an outage); `startObjectStore` brings it back on the same port with the same data. */
  async stopObjectStore(): Promise<void> {
    await this.s3?.stop();
  }

  async startObjectStore(): Promise<void> {
    if (this.s3Port === undefined) throw new Error('this cluster has no object store');
    this.s3 = await startS3rver({ dataDir: this.s3Dir, port: this.s3Port });
  }

  /** Stops the etcd this cluster started (an outage); `startEtcd` brings it back on the same ports with the same data. */
  async stopEtcd(): Promise<void> {
    await this.etcd?.stop();
  }

  async startEtcd(): Promise<void> {
    if (!this.etcdPorts) throw new Error('this cluster did not start etcd');
    this.etcd = await startEtcd({ dataDir: join(this.dataDir, 'etcd'), ...this.etcdPorts });
  }

  /** Sends a signal to the etcd or the object store this cluster started (SIGSTOP/SIGCONT to pause them). */
  signalService(service: 'etcd' | 'objectStore', signal: NodeJS.Signals): void {
    const child = service === 'etcd' ? this.etcd?.process : this.s3?.process;
    if (!child) throw new Error(`this cluster did not start ${service}`);
    child.kill(signal);
  }

  static async start(options: LocalClusterOptions): Promise<LocalCluster> {
    const dataDir = resolve(options.dataDir);
    mkdirSync(dataDir, { recursive: true });
    let etcd: EtcdServer | undefined;
    if (!options.etcdEndpoint) {
      if (options.etcdClientPort === undefined || options.etcdPeerPort === undefined) throw new Error('etcd ports are needed to start etcd');
      etcd = await startEtcd({ dataDir: join(dataDir, 'etcd'), clientPort: options.etcdClientPort, peerPort: options.etcdPeerPort });
    }
    const etcdEndpoint = options.etcdEndpoint ?? etcd!.endpoint;
    let s3: S3Server | undefined;
    const s3Dir = resolve(options.s3Dir ?? join(dataDir, 's3rver'));
    try {
      if (options.s3Port !== undefined) s3 = await startS3rver({ dataDir: s3Dir, port: options.s3Port });
    } catch (err) {
      await etcd?.stop();
      throw err;
    }
    const entry = cliEntry();
    // Loaded only for a TLS cluster: a replica process never needs the certificate generator.
    const tls = options.tls ? await (await import('./local-ca.js')).writeLocalTls(join(dataDir, 'tls'), REPLICA_IDS) : undefined;
    const scheme = tls ? 'https' : 'http';
    const auth = options.auth ? writeLocalAdminToken(dataDir) : undefined;
    const replicas = REPLICA_IDS.map((id, i) => ({
      id,
      clientUrl: `${scheme}://127.0.0.1:${options.clientPorts[i]}`,
      peerUrl: `${scheme}://127.0.0.1:${options.peerPorts[i]}`,
      argv: [
        process.execPath,
        ...REPLICA_NODE_FLAGS,
        ...(options.nodeArgs ?? []),
        entry,
        'replica',
        '--id', id,
        '--client-port', String(options.clientPorts[i]),
        '--peer-port', String(options.peerPorts[i]),
        '--etcd', etcdEndpoint,
        ...(s3 ? s3rverReplicaArgs(s3) : []),
        ...(tls ? ['--tls-ca', tls.ca, '--tls-cert', tls.cert(id), '--tls-key', tls.key(id)] : []),
        ...(auth ? ['--tokens-file', auth.tokensFile] : []),
        ...(options.replicaArgs ?? []),
        ...(options.replicaArgsFor?.(id) ?? []),
      ],
      process: undefined as unknown as ChildProcess,
    }));
    const etcdPorts = etcd ? { clientPort: options.etcdClientPort!, peerPort: options.etcdPeerPort! } : undefined;
    const cluster = new LocalCluster(dataDir, etcdEndpoint, etcd, etcdPorts, replicas, options.output ?? 'files', s3, options.s3Port, s3Dir, tls, auth?.token);
    try {
      for (const r of replicas) r.process = cluster.spawnReplica(r);
      await Promise.all(replicas.map((r) => cluster.waitFor(r, 'live')));
      return cluster;
    } catch (err) {
      await cluster.stop();
      throw err;
    }
  }

  replica(id: string): ReplicaProcess {
    const r = this.replicas.find((x) => x.id === id);
    if (!r) throw new Error(`no replica ${id}`);
    return r;
  }

  /** Sends a signal to a replica (SIGKILL to crash it, SIGSTOP/SIGCONT to pause it) and waits for death on SIGKILL/SIGTERM. */
  async signal(id: string, signal: NodeJS.Signals): Promise<void> {
    const r = this.replica(id);
    if (signal === 'SIGKILL' || signal === 'SIGTERM') return stopChild(r.process, signal, DEFAULT_STOP_GRACE_MS);
    r.process.kill(signal);
  }

  /**
   * Starts a replica again with its original argv (after a kill) and waits
   * until it is live (registered in etcd), or with `until: 'ready'` until its
   * /readyz says another replica may be stopped (every log counts it again).
   */
  async restart(id: string, until: 'live' | 'ready' = 'live'): Promise<void> {
    const r = this.replica(id);
    if (r.process.exitCode === null && r.process.signalCode === null) throw new Error(`replica ${id} is still running`);
    r.process = this.spawnReplica(r);
    await this.waitFor(r, until);
  }

  describe(): ClusterFile {
    return {
      etcd: { endpoint: this.etcdEndpoint, pid: this.etcd?.process.pid ?? null },
      objectStore: this.s3 ? { endpoint: this.s3.endpoint, bucket: S3RVER_BUCKET, pid: this.s3.process.pid ?? -1 } : null,
      tls: this.tls ? { ca: this.tls.ca } : null,
      replicas: this.replicas.map((r) => ({ id: r.id, pid: r.process.pid ?? -1, clientUrl: r.clientUrl, peerUrl: r.peerUrl, argv: r.argv })),
    };
  }

  writeClusterFile(): string {
    const path = join(this.dataDir, 'cluster.json');
    // Written aside and renamed: a script polling for the file never reads it half-written.
    writeFileSync(`${path}.tmp`, JSON.stringify(this.describe(), null, 2) + '\n');
    renameSync(`${path}.tmp`, path);
    return path;
  }

  /**
   * Stops every process this cluster started: the replicas first, each with
   * a controlled shutdown (SIGTERM: hand off or close clean its logs, in
   * etcd and the object store, which stop after them), killed if still there
   * after `graceMs`. SIGCONT first, so a paused replica can stop.
   */
  async stop(graceMs = DEFAULT_STOP_GRACE_MS): Promise<void> {
    await Promise.all(
      this.replicas.map(async (r) => {
        if (!r.process) return;
        r.process.kill('SIGCONT');
        await stopChild(r.process, 'SIGTERM', graceMs);
      }),
    );
    for (const service of [this.s3, this.etcd]) service?.process.kill('SIGCONT');
    await this.s3?.stop();
    await this.etcd?.stop();
  }

  /** SIGKILL to every process this cluster started, at once (a second Ctrl-C). */
  kill(): void {
    for (const child of [...this.replicas.map((r) => r.process), this.s3?.process, this.etcd?.process]) child?.kill('SIGKILL');
  }

  private spawnReplica(r: ReplicaProcess): ChildProcess {
    const [cmd, ...args] = r.argv;
    const stdio = this.output === 'inherit' ? 'inherit' : (['ignore', openSync(join(this.dataDir, `${r.id}.log`), 'a'), openSync(join(this.dataDir, `${r.id}.log`), 'a')] as const);
    // Its own process group, like etcd's and s3rver's: on a Ctrl-C at the terminal the cluster stops its replicas in order.
    const child = spawn(cmd!, args, { stdio: stdio as never, detached: true });
    return child;
  }

  /**
   * Waits for a replica to be live (its /healthz names an incarnation: it is
   * registered in etcd) or ready (/readyz); a failure names the replica and
   * shows the end of its log.
   */
  private async waitFor(r: ReplicaProcess, until: 'live' | 'ready'): Promise<void> {
    const dispatcher = this.tls && new Agent({ connect: { ca: this.tls.caPem } });
    try {
      if (until === 'ready') await waitForHttp(`${r.clientUrl}/readyz`, REPLICA_START_TIMEOUT_MS, r.process, undefined, dispatcher);
      else await waitForHttp(`${r.clientUrl}/healthz`, REPLICA_START_TIMEOUT_MS, r.process, (body) => (JSON.parse(body) as { incarnation: string | null }).incarnation !== null, dispatcher);
    } catch (err) {
      let tail = '';
      try {
        tail = readFileSync(join(this.dataDir, `${r.id}.log`), 'utf8').trimEnd().split('\n').slice(-FAILURE_LOG_LINES).join('\n');
      } catch {
        // output went to this process's stdio, or nothing was written
      }
      throw new Error(`replica ${r.id}: ${(err as Error).message}${tail ? `\n${tail}` : ''}`, { cause: err });
    } finally {
      await dispatcher?.close();
    }
  }
}
