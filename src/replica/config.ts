/**
 * The replica's configuration: one table gives every option its flag, its
 * environment variable, its type, its default and its documentation. It is
 * parsed and validated once at start-up and frozen; nothing else reads argv
 * or the environment. README's configuration table is this table.
 */
import { parseArgs } from 'node:util';

type Kind = 'string' | 'int' | 'list' | 'enum';

interface OptionSpec {
  kind: Kind;
  doc: string;
  default?: string | number | string[];
  min?: number;
  max?: number;
  values?: readonly string[];
  /**
   * A secret: taken from its environment variable (or the file option named
   * here) only, never a flag, whose value anyone can read in `ps`; kept out of
   * the parsed config's enumerable properties, so that logging the config
   * never prints it.
   */
  secret?: string;
}

/** Flags are the keys in kebab-case (`ackTimeoutMs` -> `--ack-timeout-ms`); env vars are TERN_ + SNAKE_CASE. */
export const replicaOptions = {
  id: { kind: 'string', doc: 'Replica id, unique in the cluster ([A-Za-z0-9_-], 1-32 chars), e.g. r1. Required.' },
  host: { kind: 'string', default: '127.0.0.1', doc: 'Address both listeners bind to.' },
  advertiseHost: { kind: 'string', default: '', doc: 'Host other replicas and forwarded clients use to reach this one; defaults to --host.' },
  clientPort: { kind: 'int', default: 7001, min: 0, max: 65535, doc: 'Port of the client API (0: any free port).' },
  peerPort: { kind: 'int', default: 7101, min: 0, max: 65535, doc: 'Port of the peer (replication) API, a separate listener (0: any free port).' },
  etcd: { kind: 'list', default: ['http://127.0.0.1:2379'], doc: 'Comma-separated etcd endpoints.' },
  peerRoutes: { kind: 'list', default: [], doc: 'Reach these replicas\' peer APIs through these URLs instead of the ones they advertise in etcd: comma-separated id=URL pairs (a proxy, NAT or sidecar in between; the fault-injection suite routes every link through its own proxy this way).' },
  cluster: { kind: 'string', default: 'tern', doc: 'Cluster name: the etcd key prefix is /tern/<cluster>/.' },
  replicas: { kind: 'int', default: 3, min: 3, max: 3, doc: 'Replicas per log (2-of-3 quorum; only 3 is supported).' },
  leaseTtlSeconds: { kind: 'int', default: 5, min: 2, max: 60, doc: 'TTL of the etcd lease that holds this replica\'s membership and leader keys.' },
  tickMs: { kind: 'int', default: 10, min: 1, max: 1000, doc: 'Protocol clock: every timeout below is counted in ticks of this length.' },
  ackTimeoutMs: { kind: 'int', default: 2000, min: 10, max: 600_000, doc: 'An append not held by a quorum after this long fails with 503 ACK_TIMEOUT; a replica silent this long counts as down (new appends get 503 NO_QUORUM at once).' },
  retransmitMs: { kind: 'int', default: 500, min: 10, max: 600_000, doc: 'A replication message unanswered this long is presumed lost and resent.' },
  heartbeatMs: { kind: 'int', default: 200, min: 10, max: 600_000, doc: 'An idle follower hears from its leader this often (commit point, liveness).' },
  backoffMs: { kind: 'int', default: 200, min: 0, max: 600_000, doc: 'Pause before retrying a follower after a connection error.' },
  maxInflight: { kind: 'int', default: 4, min: 1, max: 64, doc: 'Replication messages in flight per follower (pipelining).' },
  pipelineMinBytes: { kind: 'int', default: 64 * 1024, min: 0, max: 256 * 1024 * 1024, doc: 'A follower with a replication message in flight gets another only once this many bytes (or --max-batch-entries entries) wait; smaller appends gather into the next round. 0 pipelines every append.' },
  maxBatchEntries: { kind: 'int', default: 1000, min: 1, max: 100_000, doc: 'Entries per replication message (group commit bound).' },
  maxBatchBytes: { kind: 'int', default: 2 * 1024 * 1024, min: 1024, max: 256 * 1024 * 1024, doc: 'Bytes of entries per replication message (group commit bound).' },
  maxEntryBytes: { kind: 'int', default: 1024 * 1024, min: 1, max: 256 * 1024 * 1024, doc: 'Largest entry accepted (413 TOO_LARGE above).' },
  maxRequestBytes: { kind: 'int', default: 16 * 1024 * 1024, min: 1024, max: 1024 * 1024 * 1024, doc: 'Largest client request body accepted (413 TOO_LARGE above).' },
  maxBufferBytes: { kind: 'int', default: 1024 * 1024 * 1024, min: 1024, max: Number.MAX_SAFE_INTEGER, doc: 'Memory this replica holds in unflushed entries, all logs together: their bytes plus a fixed overhead per entry (the cost of holding it). Appends beyond get 503 BUFFER_FULL; a follower beyond it takes no more entries until it has room, and its leader resends them later.' },
  maxReadEntries: { kind: 'int', default: 10_000, min: 1, max: 1_000_000, doc: 'Largest `limit` of a read.' },
  maxReadBytes: { kind: 'int', default: 8 * 1024 * 1024, min: 1024, max: 1024 * 1024 * 1024, doc: 'A read returns at most about this many entry bytes (at least one entry).' },
  maxWaitMs: { kind: 'int', default: 60_000, min: 0, max: 3_600_000, doc: 'Longest `waitMs` of a tail read.' },
  maxRequestEntries: { kind: 'int', default: 100_000, min: 1, max: 10_000_000, doc: 'Most entries one append request may carry (413 TOO_LARGE above): each entry costs memory beyond its bytes, so many tiny or empty entries are bounded by count.' },
  maxLogs: { kind: 'int', default: 10_000, min: 1, max: 10_000_000, doc: 'Most logs the cluster holds: creating one more gets 409 TOO_MANY_LOGS (checked against this replica\'s view of etcd, so replicas creating at once may pass it by a few).' },
  producerExpiryMs: { kind: 'int', default: 86_400_000, min: 1000, max: 365 * 86_400_000, doc: 'An idempotent producer (Tern-Producer-Id) with no append for this long, by the leader\'s clock, is forgotten: a retry after that is appended again (24 h, as Kafka\'s transactional.id window).' },
  maxFutureTimeMs: { kind: 'int', default: 3_600_000, min: 0, max: 365 * 86_400_000, doc: 'An append\'s own time (Tern-Time-Ms) may be at most this far ahead of the leader\'s clock (1 h): one far ahead would hold every later entry of the log at its time, since times never decrease (Kafka\'s message.timestamp.after.max.ms).' },
  maxProducers: { kind: 'int', default: 10_000, min: 1, max: 10_000_000, doc: 'Idempotent producers remembered per log; one more forgets the least recently used.' },
  maxConnections: { kind: 'int', default: 1024, min: 1, max: 1_000_000, doc: 'Open connections the client listener serves; a request on a connection beyond it gets 503 TOO_MANY and the connection is closed (a few dozen more are dropped at once).' },
  maxTailReads: { kind: 'int', default: 1000, min: 0, max: 1_000_000, doc: 'Tail reads (`waitMs` > 0) and streaming tails (`follow=true`) held at once on this replica; one more gets 503 TOO_MANY.' },
  tailCommitPush: { kind: 'enum', default: 'true', values: ['true', 'false'], doc: 'No effect since followers commit what they take from their leader (the pair rule: a follower and its leader are two of three); accepted so that command lines of earlier releases still start.' },
  maxConcurrentReads: { kind: 'int', default: 256, min: 1, max: 1_000_000, doc: 'Reads served at once on this replica, not counting held tail reads while they wait (reads from object storage take a while); one more gets 503 TOO_MANY.' },
  requestTimeoutMs: { kind: 'int', default: 30_000, min: 100, max: 3_600_000, doc: 'A request (headers and body) must arrive within this long (slow clients, slowloris): past it 408 REQUEST_TIMEOUT and the connection is closed. Answers, such as held tail reads, do not count.' },
  headersTimeoutMs: { kind: 'int', default: 10_000, min: 100, max: 3_600_000, doc: 'The request headers must arrive within this long of the connection or the previous request (at most --request-timeout-ms); past it 408 REQUEST_TIMEOUT and the connection is closed.' },
  keepAliveTimeoutMs: { kind: 'int', default: 5_000, min: 100, max: 3_600_000, doc: 'An idle keep-alive connection is closed after this long without a request.' },
  s3Endpoint: { kind: 'string', default: '', doc: 'S3-compatible endpoint URL (AWS S3, MinIO, s3rver). Empty: no object storage; entries stay in memory (bounded by --max-buffer-bytes) and are never flushed.' },
  s3Region: { kind: 'string', default: 'us-east-1', doc: 'Object store region.' },
  s3Bucket: { kind: 'string', default: 'tern', doc: 'Bucket that holds the flushed objects.' },
  s3Prefix: { kind: 'string', default: '', doc: 'Key prefix inside the bucket; objects go under <prefix><cluster>/<log>/.' },
  s3AccessKeyId: { kind: 'string', default: '', secret: 's3CredentialsFile', doc: 'Access key id, from the environment only (the flag is refused: command lines show in ps). Empty, and no --s3-credentials-file: the AWS SDK default credential chain (AWS_* variables, web identity, instance role).' },
  s3SecretAccessKey: { kind: 'string', default: '', secret: 's3CredentialsFile', doc: 'Secret access key, from the environment only (the flag is refused).' },
  s3ForcePathStyle: { kind: 'enum', default: 'true', values: ['true', 'false'], doc: 'Path-style bucket addressing (MinIO, s3rver); false for virtual-hosted AWS S3.' },
  s3TimeoutMs: { kind: 'int', default: 10_000, min: 100, max: 600_000, doc: 'An object store request (connect, or the whole answer) unanswered this long fails; uploads are then retried with backoff while their entries stay in memory.' },
  flushMaxBytes: { kind: 'int', default: 4 * 1024 * 1024, min: 1, max: 1024 * 1024 * 1024, doc: 'An object is cut once this many committed bytes wait (object size target).' },
  flushMaxEntries: { kind: 'int', default: 100_000, min: 1, max: 10_000_000, doc: 'An object holds at most this many entries.' },
  flushIntervalMs: { kind: 'int', default: 1000, min: 1, max: 3_600_000, doc: 'Committed entries wait at most about this long before they are flushed, however few.' },
  readCacheBytes: { kind: 'int', default: 64 * 1024 * 1024, min: 0, max: 64 * 1024 * 1024 * 1024, doc: 'Bytes of recently read objects each replica keeps for reads below its memory.' },
  orphanGraceMs: { kind: 'int', default: 600_000, min: 0, max: 7 * 24 * 3_600_000, doc: 'An object in the store that no manifest records (a fenced leader\'s late upload) is deleted once this old.' },
  quiesceAfterMs: { kind: 'int', default: 10_000, min: 0, max: 86_400_000, doc: 'A log with no append for this long, all of it flushed, is sealed clean in etcd by its leader (quiesced): from then on it costs no timer, no message and no memory beyond its metadata, and it survives a whole-cluster crash. The next append, at any replica, reopens it with one etcd transaction. 0: logs never quiesce.' },
  shutdownTimeoutMs: { kind: 'int', default: 20_000, min: 100, max: 3_600_000, doc: 'Longest controlled shutdown (SIGTERM/SIGINT): hand off or close clean every led log, then exit; past it the replica exits as a crash would. The default leaves room inside Kubernetes\' 30 s grace period.' },
  tokensFile: { kind: 'string', default: '', doc: 'Client tokens (README, Authentication): one JSON line per token with its SHA-256, name, scopes and log-name prefixes; re-read on SIGHUP or when it changes. Empty: no authentication, the cluster is open to anyone who reaches the client port (a warning at start-up, tern_auth_open 1).' },
  metricsPort: { kind: 'int', default: 0, min: 0, max: 65535, doc: 'Serve GET /metrics on this port only, a listener of its own (on --host); 0: on the client port, as the probes are.' },
  metricsPerLog: { kind: 'enum', default: 'auto', values: ['auto', 'true', 'false'], doc: 'Label per-log metrics with the log name (7 to 11 series per log): true always, false never (every log folds into log="_all"), auto while this replica holds at most --metrics-per-log-max logs, so the series stay bounded on a cluster of thousands of logs.' },
  metricsPerLogMax: { kind: 'int', default: 1000, min: 0, max: 10_000_000, doc: 'With --metrics-per-log auto: the most logs this replica labels one by one; with more, new samples fold into log="_all" (series already made stay until the replica restarts).' },
  logLevel: { kind: 'enum', default: 'info', values: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], doc: 'Log level of the JSON logs on stdout.' },
  tlsCert: { kind: 'string', default: '', doc: 'PEM certificate of this replica (with --tls-key and --tls-ca): both listeners serve HTTPS with it, and it is the client certificate this replica shows its peers. It names the replica by the URI SAN tern://replica/<id>, which must be --id. Empty: plain HTTP, as behind a TLS-terminating proxy.' },
  tlsKey: { kind: 'string', default: '', doc: 'PEM private key of --tls-cert.' },
  tlsCa: { kind: 'string', default: '', doc: 'PEM CA certificate(s): the peer listener accepts only client certificates it signed, and this replica verifies the replicas it connects to against it.' },
  etcdCa: { kind: 'string', default: '', doc: 'PEM CA certificate(s) that verify etcd; needed for https:// --etcd endpoints. Empty: plain connections to etcd.' },
  etcdCert: { kind: 'string', default: '', doc: 'PEM client certificate for etcd (with --etcd-key and --etcd-ca), for an etcd that requires client certificates.' },
  etcdKey: { kind: 'string', default: '', doc: 'PEM private key of --etcd-cert.' },
  etcdUser: { kind: 'string', default: '', doc: 'etcd user (etcd authentication); its password is TERN_ETCD_PASSWORD or the file --etcd-password-file names.' },
  etcdPassword: { kind: 'string', default: '', secret: 'etcdPasswordFile', doc: 'Password of --etcd-user, from the environment only (the flag is refused: command lines show in ps).' },
  etcdPasswordFile: { kind: 'string', default: '', doc: 'File holding the password of --etcd-user (a mounted Secret, say); a trailing newline is ignored.' },
  s3CredentialsFile: { kind: 'string', default: '', doc: 'JSON file {"accessKeyId", "secretAccessKey", "sessionToken" (optional)} with the object store credentials (a mounted Secret, say), instead of TERN_S3_ACCESS_KEY_ID and TERN_S3_SECRET_ACCESS_KEY.' },
} as const satisfies Record<string, OptionSpec>;

type Options = typeof replicaOptions;
type ValueOf<S> = S extends { kind: 'int' } ? number : S extends { kind: 'list' } ? string[] : string;
export type ReplicaConfig = Readonly<{ [K in keyof Options]: ValueOf<Options[K]> }>;

export class ConfigError extends Error {
  override name = 'ConfigError';
}

export function flagOf(name: string): string {
  return '--' + name.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
}

export function envOf(name: string): string {
  return 'TERN_' + name.replace(/[A-Z]/g, (c) => '_' + c).toUpperCase();
}

/** Parses flags (which win) and TERN_* environment variables; throws ConfigError with a message for people. */
export function parseReplicaConfig(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): ReplicaConfig {
  const names = Object.keys(replicaOptions) as (keyof Options)[];
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      options: Object.fromEntries(names.map((n) => [flagOf(n).slice(2), { type: 'string' as const }])),
      strict: true,
      allowPositionals: false,
    });
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
  const out: Record<string, unknown> = {};
  for (const name of names) {
    const spec: OptionSpec = replicaOptions[name];
    const flagValue = parsed.values[flagOf(name).slice(2)];
    if (spec.secret !== undefined && flagValue !== undefined) {
      throw new ConfigError(`${flagOf(name)} is refused: a secret on the command line shows in ps. Set ${envOf(name)} or use ${flagOf(spec.secret)}`);
    }
    const raw = flagValue ?? env[envOf(name)];
    const value = raw === undefined ? requiredDefault(name, spec) : convert(name, spec, String(raw));
    Object.defineProperty(out, name, { value, enumerable: spec.secret === undefined, writable: true });
  }
  if (!/^[A-Za-z0-9_-]{1,32}$/.test(out.id as string)) throw new ConfigError(`${flagOf('id')} must be 1-32 chars of [A-Za-z0-9_-], got "${out.id}"`);
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(out.cluster as string)) throw new ConfigError(`${flagOf('cluster')} must be 1-64 chars of [A-Za-z0-9_.-]`);
  if (out.advertiseHost === '') out.advertiseHost = out.host;
  peerRouteMap(out.peerRoutes as string[]);
  if ((out.maxEntryBytes as number) > (out.maxRequestBytes as number)) throw new ConfigError('--max-entry-bytes must not exceed --max-request-bytes');
  // Node refuses a headers timeout longer than the request timeout it is part of.
  if ((out.headersTimeoutMs as number) > (out.requestTimeoutMs as number)) throw new ConfigError('--headers-timeout-ms must not exceed --request-timeout-ms');
  checkTogether(out);
  const metricsPort = out.metricsPort as number;
  if (metricsPort !== 0 && (metricsPort === out.clientPort || metricsPort === out.peerPort)) throw new ConfigError(`${flagOf('metricsPort')} must differ from the client and peer ports`);
  return Object.freeze(out) as ReplicaConfig;
}

/** `--peer-routes` as a map from replica id to the peer URL to use for it; throws ConfigError on a malformed pair. */
export function peerRouteMap(routes: readonly string[]): ReadonlyMap<string, string> {
  const map = new Map<string, string>();
  for (const route of routes) {
    const m = /^([A-Za-z0-9_-]{1,32})=(https?:\/\/[^\s,]+)$/.exec(route);
    if (!m) throw new ConfigError(`${flagOf('peerRoutes')} takes id=URL pairs such as r2=http://10.0.0.2:7102, got "${route}"`);
    map.set(m[1]!, new URL(m[2]!).origin);
  }
  return map;
}

/** Options that only make sense with others: refused at start-up rather than half applied. */
function checkTogether(out: Record<string, unknown>): void {
  const set = (name: keyof Options) => out[name] !== '';
  const allOrNone = (group: (keyof Options)[]) => {
    const given = group.filter(set);
    if (given.length > 0 && given.length < group.length) {
      throw new ConfigError(`${given.map(flagOf).join(', ')} needs ${group.filter((n) => !set(n)).map(flagOf).join(' and ')} as well`);
    }
  };
  allOrNone(['tlsCert', 'tlsKey', 'tlsCa']);
  allOrNone(['etcdCert', 'etcdKey']);
  if (set('etcdCert') && !set('etcdCa')) throw new ConfigError(`${flagOf('etcdCert')} needs ${flagOf('etcdCa')} as well`);
  const etcdHttps = (out.etcd as string[]).some((e) => e.startsWith('https://'));
  if (etcdHttps !== set('etcdCa')) throw new ConfigError(`${flagOf('etcdCa')} goes with https:// etcd endpoints, and they need it`);
  if (set('etcdPassword') && set('etcdPasswordFile')) throw new ConfigError(`give the etcd password once: ${envOf('etcdPassword')} or ${flagOf('etcdPasswordFile')}`);
  if (set('etcdUser') !== (set('etcdPassword') || set('etcdPasswordFile'))) {
    throw new ConfigError(`${flagOf('etcdUser')} needs a password (${envOf('etcdPassword')} or ${flagOf('etcdPasswordFile')}), and a password needs ${flagOf('etcdUser')}`);
  }
  allOrNone(['s3AccessKeyId', 's3SecretAccessKey']);
  if (set('s3AccessKeyId') && set('s3CredentialsFile')) throw new ConfigError(`give the object store credentials once: ${envOf('s3AccessKeyId')} or ${flagOf('s3CredentialsFile')}`);
}

function requiredDefault(name: string, spec: OptionSpec): unknown {
  if (spec.default === undefined) throw new ConfigError(`${flagOf(name)} (or ${envOf(name)}) is required: ${spec.doc}`);
  return spec.default;
}

function convert(name: string, spec: OptionSpec, raw: string): unknown {
  const where = `${flagOf(name)} / ${envOf(name)}`;
  switch (spec.kind) {
    case 'string':
      return raw;
    case 'list': {
      const items = raw.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
      if (items.length === 0) throw new ConfigError(`${where} needs at least one value`);
      return items;
    }
    case 'enum':
      if (!spec.values!.includes(raw)) throw new ConfigError(`${where} must be one of ${spec.values!.join(', ')}, got "${raw}"`);
      return raw;
    case 'int': {
      if (!/^-?\d+$/.test(raw)) throw new ConfigError(`${where} must be an integer, got "${raw}"`);
      const n = Number(raw);
      if (n < spec.min! || n > spec.max!) throw new ConfigError(`${where} must be within [${spec.min}, ${spec.max}], got ${n}`);
      return n;
    }
  }
}

/** Usage text for `tern replica --help`, generated from the same table. */
export function replicaUsage(): string {
  const lines = ['Usage: tern replica --id ID [options]', '', 'Options (flag / environment variable, default):'];
  for (const [name, spec] of Object.entries(replicaOptions) as [string, OptionSpec][]) {
    const def = spec.default === undefined ? 'required' : Array.isArray(spec.default) ? spec.default.join(',') : String(spec.default);
    lines.push(`  ${flagOf(name)} / ${envOf(name)} (${def === '' ? 'unset' : def})`, `      ${spec.doc}`);
  }
  return lines.join('\n');
}
