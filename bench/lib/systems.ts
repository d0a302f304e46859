/**
 * The four systems of bench/compare.ts as `System`s: Tern (leader or spread)
 * over a LocalCluster, NATS JetStream over a NatsCluster, and the ceiling
 * server. Each scenario gets its own Tern log / NATS subject / ceiling path.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { DiscardPolicy, RetentionPolicy, StorageType, connect, consumerOpts, type JetStreamManager, type JetStreamSubscription, type NatsConnection } from 'nats';
import type { LocalCluster } from '../../src/cli/local-cluster.js';
import { createLog, logStatus } from './http.js';
import type { NatsCluster } from './nats-cluster.js';
import { openTernReaders, type TailProbe, type TailReaders } from './tail-latency.js';
import { HttpTarget, NatsTarget, connectToNode, type OpenTarget, type System, type SystemName } from './targets.js';

/** After a Tern run, wait at most this long for its flusher to catch up before the next run starts. */
const SETTLE_TIMEOUT_MS = 60_000;

export class TernSystem implements System {
  readonly name: SystemName;
  private readonly logs = new Map<string, { log: string; leader: string }>();
  private readonly acked = new Map<string, number>();

  constructor(
    private readonly cluster: LocalCluster,
    private readonly mode: 'leader' | 'spread',
    private readonly signal: AbortSignal,
  ) {
    this.name = mode === 'leader' ? 'tern-leader' : 'tern-spread';
  }

  private async log(scenarioId: string): Promise<{ log: string; leader: string }> {
    let l = this.logs.get(scenarioId);
    if (!l) {
      const log = `cmp-${scenarioId}-${this.mode}`;
      const leader = await createLog(this.cluster.replicas[0]!.clientUrl, log, this.signal);
      l = { log, leader };
      this.logs.set(scenarioId, l);
    }
    return l;
  }

  async open(scenarioId: string, connections: number): Promise<OpenTarget> {
    const { log, leader } = await this.log(scenarioId);
    const urls = this.mode === 'leader' ? [this.cluster.replica(leader).clientUrl] : this.cluster.replicas.map((r) => r.clientUrl);
    return HttpTarget.open(urls, `/v1/logs/${log}/entries`, connections);
  }

  describe(scenarioId: string): string {
    const l = this.logs.get(scenarioId);
    return l ? `log ${l.log}, leader ${l.leader}${this.mode === 'spread' ? ', round-robin over r1 r2 r3' : ''}` : '';
  }

  /** A stream (follow=true) on the log's leader and one on the first follower, whichever way the appends go. */
  async openReaders(scenarioId: string, probe: TailProbe): Promise<TailReaders> {
    const { log, leader } = await this.log(scenarioId);
    const follower = this.cluster.replicas.find((r) => r.id !== leader)!;
    return openTernReaders(
      log,
      [
        { name: 'reader@leader', url: this.cluster.replica(leader).clientUrl },
        { name: 'reader@follower', url: follower.clientUrl },
      ],
      probe,
    );
  }

  recordAcked(scenarioId: string, entries: number): void {
    this.acked.set(scenarioId, (this.acked.get(scenarioId) ?? 0) + entries);
  }

  /** Waits until the leader has flushed everything it committed (objects in s3rver, memory released). */
  async settle(scenarioId: string): Promise<string | undefined> {
    const l = this.logs.get(scenarioId);
    if (!l) return undefined;
    const url = this.cluster.replica(l.leader).clientUrl;
    const deadline = Date.now() + SETTLE_TIMEOUT_MS;
    let s = await logStatus(url, l.log);
    while (!this.signal.aborted && s.flushedId < s.committedId) {
      if (Date.now() > deadline) return `log ${l.log} not flushed ${SETTLE_TIMEOUT_MS / 1000} s after the run (flushedId ${s.flushedId}, committedId ${s.committedId})`;
      await sleep(100);
      s = await logStatus(url, l.log);
    }
    return undefined;
  }

  async verify(scenarioId: string): Promise<{ ok: boolean; line: string }> {
    const l = this.logs.get(scenarioId);
    if (!l) return { ok: true, line: `${this.name}: no log` };
    const s = await logStatus(this.cluster.replica(l.leader).clientUrl, l.log);
    const committed = Number(s.committedId) + 1;
    const acked = this.acked.get(scenarioId) ?? 0;
    const ok = committed >= acked;
    return { ok, line: `${this.name}: ${acked} entries acked, log ${l.log} committedId + 1 = ${committed}, flushedId + 1 = ${Number(s.flushedId) + 1}${ok ? '' : ' -- FEWER COMMITTED THAN ACKED'}` };
  }

  pids(): Record<string, number | undefined> {
    const d = this.cluster.describe();
    const out: Record<string, number | undefined> = {};
    for (const r of d.replicas) out[r.id] = r.pid;
    out.etcd = d.etcd.pid ?? undefined;
    out.s3rver = d.objectStore?.pid;
    return out;
  }
}

export const NATS_STREAM = 'TERNBENCH';

export class NatsSystem implements System {
  private readonly acked = new Map<string, number>();
  private readonly stored = new Map<string, number>();
  private seqBefore = 0;

  private constructor(
    private readonly cluster: NatsCluster,
    private readonly admin: NatsConnection,
    private readonly jsm: JetStreamManager,
    readonly name: 'nats' | 'nats-spread' = 'nats',
    private leaderNode = '',
  ) {}

  /** The same stream, published to round-robin over the three nodes: `nats-spread`, as tern-spread is to tern-leader. Closing either closes the admin connection. */
  spread(): NatsSystem {
    return new NatsSystem(this.cluster, this.admin, this.jsm, 'nats-spread', this.leaderNode);
  }

  /**
   * Creates the stream (memory storage, 3 replicas, subjects bench.<scenario>), retrying while
   * JetStream is still settling after the meta leader election.
   */
  static async start(cluster: NatsCluster, signal: AbortSignal): Promise<NatsSystem> {
    const admin = await connect({ servers: cluster.urls, name: 'tern-compare-admin' });
    try {
      const jsm = await admin.jetstreamManager({ timeout: 10_000 });
      const deadline = Date.now() + 30_000;
      for (;;) {
        try {
          await jsm.streams.add({
            name: NATS_STREAM,
            subjects: ['bench.>'],
            num_replicas: 3,
            storage: StorageType.Memory,
            retention: RetentionPolicy.Limits,
            discard: DiscardPolicy.Old,
          });
          break;
        } catch (err) {
          if (signal.aborted || Date.now() > deadline) throw new Error(`creating the NATS stream: ${(err as Error).message}`);
          await sleep(250);
        }
      }
      const sys = new NatsSystem(cluster, admin, jsm);
      await sys.waitForStreamLeader(30_000);
      return sys;
    } catch (err) {
      await admin.close().catch(() => undefined);
      throw err;
    }
  }

  private async waitForStreamLeader(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const info = await this.jsm.streams.info(NATS_STREAM).catch(() => undefined);
      const leader = info?.cluster?.leader;
      const current = info?.cluster?.replicas?.filter((r) => r.current).length ?? 0;
      if (leader && current === 2) {
        this.leaderNode = leader;
        return;
      }
      if (Date.now() > deadline) throw new Error(`the NATS stream has no leader with two current replicas after ${timeoutMs} ms`);
      await sleep(200);
    }
  }

  get streamLeader(): string {
    return this.leaderNode;
  }

  async open(scenarioId: string, _connections: number): Promise<OpenTarget> {
    const info = await this.jsm.streams.info(NATS_STREAM);
    this.seqBefore = info.state.last_seq;
    if (info.cluster?.leader) this.leaderNode = info.cluster.leader;
    const servers = this.name === 'nats-spread' ? this.cluster.nodes.map((n) => n.url) : [this.cluster.node(this.leaderNode).url];
    return NatsTarget.open(servers, `bench.${scenarioId}`);
  }

  describe(scenarioId: string): string {
    const clients = this.name === 'nats-spread' ? `round-robin over connections to ${this.cluster.nodes.map((n) => n.name).join(', ')}` : `client connected to ${this.leaderNode}`;
    return `stream ${NATS_STREAM} (memory, 3 replicas), subject bench.${scenarioId}, stream leader ${this.leaderNode}, ${clients}`;
  }

  /**
   * An ordered push consumer (ephemeral, deliver new, no acks: nats.js's consumer for following
   * a stream) on the scenario's subject from each of two connections: one to the stream
   * leader's node, one to another node. JetStream hosts the consumer itself with the stream
   * (the other node's reader gets its messages over a cluster route).
   */
  async openReaders(scenarioId: string, probe: TailProbe): Promise<TailReaders> {
    const other = this.cluster.nodes.find((n) => n.name !== this.leaderNode)!;
    const conns: NatsConnection[] = [];
    const subs: JetStreamSubscription[] = [];
    const close = async () => {
      for (const s of subs) s.unsubscribe();
      await Promise.all(conns.map((c) => c.close().catch(() => undefined)));
    };
    try {
      for (const [name, node] of [['reader@leader', this.cluster.node(this.leaderNode)], ['reader@follower', other]] as const) {
        const nc = await connectToNode(node.url, `tern-compare-${name}`);
        conns.push(nc);
        const onEntry = probe.reader(name);
        const opts = consumerOpts().orderedConsumer().deliverNew();
        opts.callback((err, msg) => {
          if (!err && msg) onEntry(Buffer.from(msg.data.buffer, msg.data.byteOffset, msg.data.byteLength));
        });
        subs.push(await nc.jetstream().subscribe(`bench.${scenarioId}`, opts));
      }
    } catch (err) {
      await close();
      throw err;
    }
    return { names: ['reader@leader', 'reader@follower'], close };
  }

  recordAcked(scenarioId: string, entries: number): void {
    this.acked.set(scenarioId, (this.acked.get(scenarioId) ?? 0) + entries);
  }

  /** Counts what the run stored (stream sequence numbers advance by one per stored message) and purges the stream. */
  async settle(scenarioId: string): Promise<string | undefined> {
    const info = await this.jsm.streams.info(NATS_STREAM);
    this.stored.set(scenarioId, (this.stored.get(scenarioId) ?? 0) + (info.state.last_seq - this.seqBefore));
    await this.jsm.streams.purge(NATS_STREAM);
    return undefined;
  }

  async verify(scenarioId: string): Promise<{ ok: boolean; line: string }> {
    const acked = this.acked.get(scenarioId) ?? 0;
    const stored = this.stored.get(scenarioId) ?? 0;
    const ok = stored >= acked;
    return { ok, line: `${this.name}: ${acked} messages acked, ${stored} stored by the stream (sequence numbers used)${ok ? '' : ' -- FEWER STORED THAN ACKED'}` };
  }

  pids(): Record<string, number | undefined> {
    return this.cluster.pids();
  }

  /** Closes the admin connection (the stream is in memory: it goes with the nodes). */
  async close(): Promise<void> {
    await this.admin.close().catch(() => undefined);
  }
}

export class CeilingSystem implements System {
  readonly name: SystemName = 'ceiling';

  constructor(
    private readonly url: string,
    private readonly pid: number | undefined,
  ) {}

  async open(scenarioId: string, connections: number): Promise<OpenTarget> {
    return HttpTarget.open([this.url], `/v1/logs/ceiling-${scenarioId}/entries`, connections);
  }

  describe(): string {
    return `${this.url} (answers at once, stores nothing)`;
  }

  recordAcked(): void {}

  async settle(): Promise<string | undefined> {
    return undefined;
  }

  async verify(): Promise<{ ok: boolean; line: string }> {
    return { ok: true, line: 'ceiling: stores nothing (no check)' };
  }

  pids(): Record<string, number | undefined> {
    return { ceiling: this.pid };
  }
}
