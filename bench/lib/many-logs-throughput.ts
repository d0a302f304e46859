/**
 * Aggregate appends per second over many logs (issue 19): one closed loop of
 * `outstanding` producers in the driver, each append going to the next log
 * (or NATS stream) in turn, 1 KiB entries, run by bench/lib/workload.ts's
 * driver so the rows compare with bench:compare's. Three targets:
 *
 * - tern-leader: each append to its log's leader, looked up from the log's
 *   status (field `leader`, the cluster's client URL of that replica) before
 *   the run and again after an append to it failed with a 503, a redirect or
 *   no answer;
 * - tern-spread: round-robin over the three replicas whatever the log, as a
 *   Kubernetes Service spreads requests (a follower forwards to the leader);
 * - nats: N memory streams with num_replicas 3, one subject each, published
 *   through a connection to each stream leader's node (one per node).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { DiscardPolicy, RetentionPolicy, StorageType, connect, type JetStreamClient, type JetStreamManager, type NatsConnection } from 'nats';
import { Pool } from 'undici';
import type { LocalCluster } from '../../src/cli/local-cluster.js';
import type { AckedEntries } from './acked-entries.js';
import { round1, ms } from './format.js';
import { OCTET_STREAM_HEADERS, append as httpAppend, httpJson } from './http.js';
import type { NatsCluster } from './nats-cluster.js';
import { leaderStatus, runPool } from './tern-logs.js';
import { AppendError, type OpenTarget } from './targets.js';
import { runScenario, type Scenario } from './workload.js';

export const ENTRY_BYTES = 1024;
/** Not counted: the first second of each row (connections opened, leaders' caches warm). */
export const WARMUP_S = 1;
const REQUEST_TIMEOUT_MS = 30_000;
/** Creating a NATS stream is retried this long while JetStream settles (meta leader elected, peers current). */
const NATS_STREAM_TIMEOUT_MS = 60_000;
const NATS_RETRY_MS = 250;

export type ThroughputSystem = 'tern-leader' | 'tern-spread' | 'nats';

export interface ThroughputRow {
  system: ThroughputSystem;
  appendsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  errorsByCode: Record<string, number>;
  /** % of one core summed over the system's server processes, over the measured window; null where /proc could not tell. */
  serverCpuPct: number | null;
  /** The driver's event-loop use over the window, %: near 100 the driver, not the system, limits the row. */
  driverLoopPct: number | null;
}

export interface ThroughputRun {
  outstanding: number;
  seconds: number;
}

/** One row: `outstanding` producers against `target` for `run.seconds` (after WARMUP_S), then the target is closed. */
export async function measureThroughput(system: ThroughputSystem, target: OpenTarget, run: ThroughputRun, pids: Record<string, number | undefined>, signal: AbortSignal): Promise<ThroughputRow> {
  const sc: Scenario = { id: `many-${system}`, title: `${run.outstanding} outstanding over many logs`, kind: 'closed', entryBytes: ENTRY_BYTES, producers: run.outstanding, batch: 1 };
  let out;
  try {
    out = await runScenario(target, sc, { warmupS: WARMUP_S, durationS: run.seconds }, pids, signal);
  } finally {
    await target.close();
  }
  const h = out.histogram;
  const row: ThroughputRow = {
    system,
    appendsPerSec: round1(out.acked / run.seconds),
    p50Ms: h.totalCount ? ms(h.getValueAtPercentile(50)) : NaN,
    p99Ms: h.totalCount ? ms(h.getValueAtPercentile(99)) : NaN,
    errors: out.errors,
    errorsByCode: out.errorsByCode,
    serverCpuPct: out.cpu ? round1(Object.values(out.cpu.processCpuPct).reduce((a, b) => a + b, 0)) : null,
    driverLoopPct: out.cpu?.driverElPct ?? null,
  };
  h.destroy();
  return row;
}

// ---------------------------------------------------------------------------
// Tern

/** Error keys after which the leader-mode target looks the log's leader up again: 503s, redirects, no answer. */
const RELOOKUP = /^(503|3\d\d|0) /;

export class TernManyLogsTarget implements OpenTarget {
  private next = 0;
  private nextReplica = 0;
  private readonly leaders = new Map<string, string>();
  private readonly lookups = new Map<string, Promise<string>>();

  private constructor(
    private readonly cluster: LocalCluster,
    private readonly logs: readonly string[],
    private readonly mode: 'leader' | 'spread',
    private readonly pools: Map<string, Pool>,
    private readonly acked: AckedEntries,
  ) {}

  /** Pools to every replica, `connections` each (no append waits for a connection); in leader mode, every log's leader looked up first. */
  static async open(cluster: LocalCluster, logs: readonly string[], mode: 'leader' | 'spread', connections: number, acked: AckedEntries, signal: AbortSignal): Promise<TernManyLogsTarget> {
    const pools = new Map(cluster.replicas.map((r) => [r.clientUrl, new Pool(r.clientUrl, { connections, pipelining: 1, keepAliveTimeout: 60_000, headersTimeout: REQUEST_TIMEOUT_MS, bodyTimeout: REQUEST_TIMEOUT_MS })]));
    const t = new TernManyLogsTarget(cluster, logs, mode, pools, acked);
    if (mode === 'leader') await runPool(logs.length, connections, signal, (i) => t.leaderUrl(logs[i]!).then(() => undefined));
    return t;
  }

  private leaderUrl(log: string): Promise<string> {
    const known = this.leaders.get(log);
    if (known !== undefined) return Promise.resolve(known);
    let lookup = this.lookups.get(log);
    if (lookup === undefined) {
      const via = this.cluster.replicas[this.nextReplica++ % this.cluster.replicas.length]!.clientUrl;
      lookup = leaderStatus(this.cluster, log, via)
        .then(
          (s) => {
            this.leaders.set(log, s.leaderUrl);
            return s.leaderUrl;
          },
          // A quiesced log has no leader: an append wakes it where it is sent, and that replica leads it then.
          async (err: Error) => ((await httpJson(`${via}/v1/logs/${log}`, 'GET')).body?.quiesced === true ? via : Promise.reject(err)),
        )
        .finally(() => this.lookups.delete(log));
      this.lookups.set(log, lookup);
    }
    return lookup;
  }

  async append(): Promise<void> {
    const log = this.logs[this.next++ % this.logs.length]!;
    let url: string;
    if (this.mode === 'spread') url = this.cluster.replicas[this.nextReplica++ % this.cluster.replicas.length]!.clientUrl;
    else {
      try {
        url = await this.leaderUrl(log);
      } catch {
        throw new AppendError('no leader (status lookup failed)');
      }
    }
    const entry = this.acked.entry();
    const key = await httpAppend(this.pools.get(url)!, `/v1/logs/${log}/entries`, entry, OCTET_STREAM_HEADERS);
    if (key === undefined) return this.acked.ack(log, entry);
    if (this.mode === 'leader' && RELOOKUP.test(key)) this.leaders.delete(log);
    throw new AppendError(key);
  }

  appendBatch(): Promise<void> {
    return Promise.reject(new Error('the many-logs targets append single entries'));
  }

  async close(): Promise<void> {
    await Promise.all([...this.pools.values()].map((p) => p.close().catch(() => undefined)));
  }

  async destroy(): Promise<void> {
    await Promise.all([...this.pools.values()].map((p) => p.destroy().catch(() => undefined)));
  }
}

// ---------------------------------------------------------------------------
// NATS JetStream

const natsStream = (i: number) => `MANY_${String(i).padStart(6, '0')}`;
const natsSubject = (i: number) => `many.${String(i).padStart(6, '0')}`;

function natsKey(err: unknown): string {
  const e = err as { code?: string | number; message?: string };
  return `nats ${e.code ?? e.message ?? String(err)}`;
}

/** N R3 memory streams on a NATS cluster, one subject each, and where each stream's leader is. */
export class NatsManyStreams {
  private constructor(
    private readonly cluster: NatsCluster,
    private readonly admin: NatsConnection,
    readonly leaders: string[],
  ) {}

  /** Creates the streams (`concurrency` at a time, retried while JetStream settles) and waits until each has a leader. */
  static async create(cluster: NatsCluster, n: number, concurrency: number, signal: AbortSignal): Promise<NatsManyStreams> {
    const admin = await connect({ servers: cluster.urls, name: 'tern-many-logs-admin' });
    try {
      const jsm = await admin.jetstreamManager({ timeout: REQUEST_TIMEOUT_MS });
      const leaders: string[] = new Array(n).fill('');
      const failed = await runPool(n, concurrency, signal, async (i) => {
        await retrying(signal, () =>
          jsm.streams.add({ name: natsStream(i), subjects: [natsSubject(i)], num_replicas: 3, storage: StorageType.Memory, retention: RetentionPolicy.Limits, discard: DiscardPolicy.Old }),
        );
        leaders[i] = await streamLeader(jsm, natsStream(i), signal);
      });
      if (failed > 0) throw new Error(`${failed} of ${n} NATS streams could not be created or have no leader after ${NATS_STREAM_TIMEOUT_MS / 1000} s`);
      return new NatsManyStreams(cluster, admin, leaders);
    } catch (err) {
      await admin.close().catch(() => undefined);
      throw err;
    }
  }

  /** How many streams each node leads ("n1 334, n2 333, n3 333"). */
  describeLeaders(): string {
    const count = new Map<string, number>();
    for (const l of this.leaders) count.set(l, (count.get(l) ?? 0) + 1);
    return [...count.entries()].sort().map(([node, k]) => `${node} ${k}`).join(', ');
  }

  /** A connection to each node; each stream published through its leader's. */
  async open(): Promise<NatsManyStreamsTarget> {
    const conns = new Map<string, NatsConnection>();
    try {
      for (const node of this.cluster.nodes) {
        conns.set(node.name, await connect({ servers: [node.url], noRandomize: true, ignoreClusterUpdates: true, reconnect: false, name: `tern-many-logs-${node.name}` }));
      }
    } catch (err) {
      await Promise.all([...conns.values()].map((c) => c.close().catch(() => undefined)));
      throw err;
    }
    const js = new Map([...conns.entries()].map(([node, nc]) => [node, nc.jetstream({ timeout: REQUEST_TIMEOUT_MS })]));
    return new NatsManyStreamsTarget(
      [...conns.values()],
      this.leaders.map((l, i) => ({ subject: natsSubject(i), js: js.get(l) ?? js.values().next().value! })),
    );
  }

  async close(): Promise<void> {
    await this.admin.close().catch(() => undefined);
  }
}

async function retrying<T>(signal: AbortSignal, attempt: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + NATS_STREAM_TIMEOUT_MS;
  for (;;) {
    try {
      return await attempt();
    } catch (err) {
      if (signal.aborted || Date.now() > deadline) throw err;
      await sleep(NATS_RETRY_MS);
    }
  }
}

async function streamLeader(jsm: JetStreamManager, name: string, signal: AbortSignal): Promise<string> {
  return retrying(signal, async () => {
    const info = await jsm.streams.info(name);
    const leader = info.cluster?.leader;
    if (!leader) throw new Error(`stream ${name} has no leader yet`);
    return leader;
  });
}

export class NatsManyStreamsTarget implements OpenTarget {
  private next = 0;

  constructor(
    private readonly conns: NatsConnection[],
    private readonly streams: { subject: string; js: JetStreamClient }[],
  ) {}

  async append(data: Buffer): Promise<void> {
    const s = this.streams[this.next++ % this.streams.length]!;
    try {
      await s.js.publish(s.subject, data);
    } catch (err) {
      throw new AppendError(natsKey(err));
    }
  }

  appendBatch(): Promise<void> {
    return Promise.reject(new Error('the many-logs targets append single entries'));
  }

  async close(): Promise<void> {
    await Promise.all(this.conns.map((c) => c.close().catch(() => undefined)));
  }

  async destroy(): Promise<void> {
    await this.close();
  }
}
