/**
 * The replica: wires the pure protocol (src/quorum) to time, the network and
 * etcd. It owns one LogReplica per log it holds, and a LeaderLog for each log
 * it leads; every event (client append, peer reply, tick) is fed to the state
 * machine, and once per event-loop turn the resulting Ready is carried out:
 * messages sent, clients answered, tail readers woken. Appends that arrive in
 * the same turn, or while a round is in flight, share the next round (group
 * commit).
 */
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ClusterDirectory } from '../fencing/directory.js';
import type { LogRecord, MemberInfo, SegmentMeta } from '../fencing/keys.js';
import { TernError } from '../errors.js';
import type { MemoryAccount } from '../quorum/entry-buffer.js';
import { LeaderLog, type LeaderConfig, type Ready, type Refusal, type UnknownOutcome } from '../quorum/leader.js';
import { LogReplica } from '../quorum/log-replica.js';
import { ReplyStatus, incarnationTag, type AppendReply, type AppendRequest } from '../quorum/messages.js';
import { decideRecovery, isClosedClean, validLastId, type FenceAnswer } from '../quorum/recovery.js';
import { decodeEntryRuns, encodeEntryRuns } from '../quorum/wire.js';
import { OBJECT_BUFFERS_KEPT, ObjectBuffers, runFlusher } from '../flusher/flusher.js';
import { CorruptObjectError, isObjectUnder, logPrefix } from '../flusher/object-format.js';
import { ObjectReader } from '../flusher/object-reader.js';
import type { ObjectStore } from '../flusher/object-store.js';
import type { ReplicaConfig } from './config.js';
import { Failover } from './failover.js';
import { ReplicaMetrics, type LogGauges, type MetricsSource } from './metrics.js';
import type { PeerTransport } from './peer-transport.js';

export const peerPaths = {
  takeover: (log: string) => `/peer/v1/logs/${encodeURIComponent(log)}/takeover`,
  fence: (log: string) => `/peer/v1/logs/${encodeURIComponent(log)}/fence`,
  fetch: (log: string) => `/peer/v1/logs/${encodeURIComponent(log)}/fetch`,
};

export interface Logger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface AppendResult {
  firstId: number;
  lastId: number;
  epoch: number;
}

export interface ReadResult {
  entries: Buffer[];
  fromId: number;
  nextId: number;
  committedId: number;
}

export interface LogStatus {
  log: string;
  leader: string | null;
  epoch: number;
  committedId: number;
  flushedId: number;
  firstId: number;
  /** `replicas`: the incarnation of each replica the segment counts for recovery (a restarted one counts again once caught up). */
  segments: { epoch: number; firstId: number; lastId: number | null; sealed: boolean; closedClean: boolean; replicas: Record<string, string> }[];
  /** Committed entries and bytes not yet in object storage (bytes as this replica holds them). */
  flushLag: { entries: number; bytes: number };
}

/** Whether this replica may be stopped now without making a log unrecoverable (`/readyz`). */
export interface Readiness {
  ready: boolean;
  /** Logs of this replica whose open segment does not count it yet (it restarted and is catching up). */
  catchingUp: number;
  reason?: string;
}

/** What a controlled shutdown did with each log this replica led. */
export interface DrainReport {
  handedOff: string[];
  closedClean: string[];
  /** Logs whose leadership moved away on its own while draining (another leader fenced this one). */
  lost: string[];
  /** Logs the drain could not finish (no object store, store or etcd down): they recover as after a crash. */
  unfinished: { log: string; reason: string }[];
}

export interface RecoveryReport {
  log: string;
  epoch: number;
  /** Last id kept from the previous segments. */
  recoveredId: number;
  /** Set when recovery ran without a counted quorum: what may have been lost. */
  warning?: string;
}

/** How often the coordinator looks for logs without a leader. */
const COORDINATOR_PASS_MS = 300;
/** How long a new log's creator has to give it its first leader before the coordinator does. */
const CREATION_GRACE_MS = 10_000;
/** How often a draining leader looks whether its flusher has caught up with the commit point. */
const DRAIN_POLL_MS = 10;
/** A deleted log's objects are swept again this much later, for an upload that was in flight. */
const LATE_SWEEP_MS = 10_000;

interface Waiting {
  resolve(result: AppendResult): void;
  reject(err: TernError): void;
  /** performance.now() when the leader took the append (quorum round latency). */
  takenAt: number;
}

interface LogState {
  replica: LogReplica;
  leader: LeaderLog<Waiting> | undefined;
  /** While set, this replica is taking the log over: appends wait outside (503 NOT_READY). */
  takeover: Promise<RecoveryReport> | undefined;
  /** Why the running takeover cannot decide yet (no counted quorum). */
  blockedBy: string | undefined;
  /** An operator asked to recover without a counted quorum, accepting possible loss. */
  unsafeRecovery: boolean;
  /** Set during a handoff or a controlled shutdown: the leader drains and takes no new appends. */
  handingOff: boolean;
  /** Called once the leader has no rounds in flight (a handoff waits for it). */
  roundsDone: (() => void) | undefined;
  /** Commit point tail readers were last woken for. */
  wokenCommitId: number;
  /**
   * Replicas whose incarnation differs from the one the open segment records
   * (they restarted, or were down when it opened), with the id they must hold
   * before the segment may count them again.
   */
  rejoining: Map<string, { incarnation: string; throughId: number }>;
}

interface TailReader {
  fromId: number;
  wake(): void;
}

export class Replica {
  /** Entry bytes held in memory over all logs: the budget `maxBufferBytes` bounds. */
  readonly memory: MemoryAccount = { bytes: 0 };
  private readonly logs = new Map<string, LogState>();
  private readonly tailReaders = new Map<string, Set<TailReader>>();
  private readonly dirty = new Set<LogState>();
  private flushScheduled = false;
  private ticker: NodeJS.Timeout | undefined;
  private coordinatorTimer: NodeJS.Timeout | undefined;
  private directory: ClusterDirectory | undefined;
  private stopping = false;
  /** Set when a controlled shutdown begins: not ready, no new leaderships, led logs move away or close clean. */
  private draining = false;
  /** Logs the coordinator is assigning right now. */
  private readonly assigning = new Set<string>();
  private readonly leaderTicks: Omit<LeaderConfig, 'self' | 'peers' | 'epoch'>;

  private readonly reader: ObjectReader | undefined;
  private readonly objectBuffers = new ObjectBuffers(OBJECT_BUFFERS_KEPT);
  /** When a replication exchange with each peer last succeeded (either direction). */
  private readonly peerContact = new Map<string, number>();
  /** Takes over logs whose leader is shown dead, without waiting for its lease to lapse. */
  private readonly failover: Failover;
  readonly metrics: ReplicaMetrics;

  constructor(
    readonly config: ReplicaConfig,
    private readonly transport: PeerTransport,
    private readonly log: Logger,
    /** Undefined when no object store is configured: entries then stay in memory, bounded. */
    private readonly store: ObjectStore | undefined,
  ) {
    this.reader = store && new ObjectReader(store, config.readCacheBytes);
    this.metrics = new ReplicaMetrics(config.id, { perLog: config.metricsPerLog === 'true' }, this.metricsSource());
    const ticks = (ms: number) => Math.max(1, Math.ceil(ms / config.tickMs));
    this.leaderTicks = {
      maxInflight: config.maxInflight,
      maxBatchEntries: config.maxBatchEntries,
      maxBatchBytes: config.maxBatchBytes,
      pipelineMinBytes: config.pipelineMinBytes,
      ackTimeoutTicks: ticks(config.ackTimeoutMs),
      retransmitTicks: ticks(config.retransmitMs),
      heartbeatTicks: ticks(config.heartbeatMs),
      backoffTicks: ticks(config.backoffMs),
      checkQuorum: true,
    };
    this.failover = new Failover(
      {
        id: config.id,
        // A draining replica takes no new leadership.
        directory: () => (this.isStopping ? undefined : this.directory),
        leadsOrTakingOver: (name) => this.logs.get(name)?.takeover !== undefined || this.localLeader(name) !== undefined,
        leaderCandidates: (record) => this.leaderCandidates(record),
        takeOver: (name, expectedEpoch, replacing) => this.takeOver(name, expectedEpoch, false, replacing),
        log,
      },
      config,
    );
  }

  get id(): string {
    return this.config.id;
  }

  /** This process's incarnation (new at every start), once registered. */
  get incarnation(): string | undefined {
    return this.directory?.self.incarnation;
  }

  /**
   * True once registered in etcd with the cluster state loaded and while its
   * lease lives, until shutdown starts. A replica leads no log when it starts
   * (its leader keys died with its old lease); a log it is taking over answers
   * 503 NOT_READY on its own until recovered.
   */
  /** True from the start of a controlled shutdown. */
  get isStopping(): boolean {
    return this.draining || this.stopping;
  }

  get isReady(): boolean {
    return this.readiness().ready;
  }

  /**
   * Ready means "another replica may be stopped now": registered, not
   * draining, and counted by (or leading) the open segment of every log this
   * replica belongs to, so that no log needs this replica's memory to recover
   * while it catches up. A replica that just started is live but not ready
   * until every leader has caught it up and recorded its new incarnation.
   */
  readiness(): Readiness {
    const dir = this.directory;
    if (!dir || !dir.leaseUp || this.stopping || this.draining) {
      return { ready: false, catchingUp: 0, reason: this.draining || this.stopping ? 'stopping' : dir ? 'etcd lease down' : 'starting' };
    }
    let catchingUp = 0;
    for (const name of dir.logNames()) {
      const record = dir.log(name);
      if (!record?.meta.replicas.includes(this.id) || this.localLeader(name)) continue;
      const last = record.segments.at(-1);
      if (!last || last.lastId !== null) continue;
      if (last.replicas[this.id] !== dir.self.incarnation) catchingUp++;
    }
    return catchingUp === 0 ? { ready: true, catchingUp } : { ready: false, catchingUp, reason: `${catchingUp} logs do not count this replica yet (catching up)` };
  }

  start(directory: ClusterDirectory): void {
    this.directory = directory;
    directory.on('log', (name) => this.onDirectoryChange(name));
    directory.on('flushed', (name) => this.onFlushed(name));
    directory.on('deleted', (name) => this.forgetLog(name));
    // Peer messages may have created logs before the directory was there to say what is durable.
    for (const name of this.logs.keys()) this.onFlushed(name);
    directory.on('leaseLost', (err) => {
      this.metrics.etcdFailed('lease');
      this.log.error({ err }, 'etcd lease lost: stepping down from every log');
      for (const state of this.logs.values()) this.stepDown(state);
    });
    this.ticker = setInterval(() => this.tick(), this.config.tickMs);
    // The coordinator (one replica, elected through a leased etcd key) gives leaderless logs a leader.
    this.coordinatorTimer = setInterval(() => {
      if (this.stopping) return;
      if (this.draining) return;
      if (directory.isCoordinator) this.assignLeaderless().catch((err) => this.log.warn({ err }, 'coordinator pass failed'));
      for (const [name, state] of this.logs) this.recordRejoinedReplicas(name, state);
    }, COORDINATOR_PASS_MS);
  }

  async stop(): Promise<void> {
    this.stopping = true;
    clearInterval(this.ticker);
    clearInterval(this.coordinatorTimer);
    for (const state of this.logs.values()) this.stepDown(state);
    this.flush();
    for (const readers of this.tailReaders.values()) for (const r of readers) r.wake();
  }

  // ---- client operations ----

  listLogs(): string[] {
    return this.dir().logNames();
  }

  /** Creates the log if it does not exist (idempotent) and makes sure it has a leader. */
  async createLog(name: string): Promise<{ created: boolean; status: LogStatus }> {
    const dir = this.dir();
    let created: boolean;
    try {
      ({ created } = await dir.createLog(name, this.config.replicas));
    } catch (err) {
      throw new TernError('NOT_READY', `cannot create log ${name}: ${(err as Error).message}`, { cause: err });
    }
    const record = await this.requireLog(name);
    if (record.segments.length === 0 && !record.leader) await this.assignFirstLeader(name, record);
    if (created) this.log.info({ log: name, replicas: record.meta.replicas }, 'log created');
    return { created, status: await this.status(name) };
  }

  async status(name: string): Promise<LogStatus> {
    const record = await this.requireLog(name);
    const state = this.logs.get(name);
    const dir = this.dir();
    const flushedId = dir.flushedId(name);
    const committedId = Math.max(state?.replica.commitId ?? -1, flushedId);
    const retained = dir.retainedFrom(name);
    return {
      log: name,
      leader: record.leader?.id ?? null,
      epoch: Math.max(record.epoch, state?.replica.epoch ?? 0),
      committedId,
      flushedId,
      firstId: committedId >= retained ? retained : -1,
      flushLag: { entries: committedId - flushedId, bytes: state?.replica.buffer.bytes ?? 0 },
      segments: record.segments.map((s) => ({ epoch: s.epoch, firstId: s.firstId, lastId: s.lastId, sealed: s.lastId !== null, closedClean: s.closedClean === true, replicas: s.replicas })),
    };
  }

  /**
   * Where an append for `name` must go: undefined when this replica leads the
   * log, else the leading replica (its client and peer URLs). NOT_READY when
   * there is none.
   */
  async leaderElsewhere(name: string): Promise<MemberInfo | undefined> {
    const record = await this.requireLog(name);
    if (this.localLeader(name)) return undefined;
    const state = this.logs.get(name);
    if (state?.takeover) {
      throw new TernError('NOT_READY', `log ${name} is recovering on ${this.id}` + (state.blockedBy ? `: ${state.blockedBy}` : ''), { maybeApplied: false });
    }
    const liveLeader = (r: LogRecord) => (r.leader && r.leader.id !== this.id ? this.dir().member(r.leader.id) : undefined);
    // The watched view can lag a leadership change: ask etcd before saying there is none.
    const leader = liveLeader(record) ?? liveLeader((await this.dir().fetchLog(name)) ?? record);
    if (!leader) throw new TernError('NOT_READY', `log ${name} has no reachable leader right now (epoch ${record.epoch})`);
    return leader;
  }

  /** Appends entries as one atomic batch on this replica, which must lead the log. Resolves once a quorum holds them. */
  async append(name: string, entries: Buffer[]): Promise<AppendResult> {
    await this.requireLog(name);
    const state = this.logs.get(name);
    const leader = state && this.localLeader(name);
    if (!state || !leader) throw new TernError('NOT_READY', `replica ${this.id} does not lead log ${name}`);
    if (state.handingOff) throw new TernError('NOT_READY', `log ${name} is being handed off`, { maybeApplied: false });
    if (state.takeover) throw new TernError('NOT_READY', `log ${name} is recovering on ${this.id}`, { maybeApplied: false });
    let bytes = 0;
    for (const e of entries) bytes += e.length;
    if (this.memory.bytes + bytes > this.config.maxBufferBytes) {
      throw new TernError('BUFFER_FULL', `replica ${this.id} holds ${this.memory.bytes} unflushed bytes (limit ${this.config.maxBufferBytes})`);
    }
    return new Promise<AppendResult>((resolve, reject) => {
      const result = leader.propose(entries, { resolve, reject, takenAt: performance.now() });
      if (!result.ok) return reject(refusalError(name, result.reason, leader.epoch));
      this.schedule(state);
    });
  }

  /**
   * Committed entries from `fromId`, waiting up to `waitMs` for the first one
   * when none is committed yet. Entries below this replica's memory come from
   * object storage through the manifest.
   */
  async read(name: string, fromId: number, limit: number, waitMs: number): Promise<ReadResult> {
    await this.requireLog(name);
    const dir = this.dir();
    const retained = dir.retainedFrom(name);
    if (fromId < retained) throw new TernError('TRUNCATED', `log ${name}: ids below ${retained} were truncated; read from ${retained}`);
    if (waitMs > 0 && fromId > this.committedId(name)) await this.waitForCommit(name, fromId, waitMs);
    const committedId = this.committedId(name);
    const state = this.logs.get(name);
    if (fromId > committedId) return { entries: [], fromId, nextId: fromId, committedId };
    const count = Math.min(limit, committedId - fromId + 1);
    // Memory serves only ids this replica knows committed in its own log. Past that it may hold
    // a tail a newer leader discarded, even where object storage (that leader's flush) already
    // has those ids: a stale leader woken from a pause served such a tail (jepsen-lite, divergent).
    const replica = state?.replica;
    const memoryEnd = replica ? Math.min(replica.commitId, replica.buffer.lastId) : -1;
    const inMemory = replica !== undefined && fromId >= replica.buffer.startId && fromId <= memoryEnd;
    const flushedId = dir.flushedId(name);
    const fromStore = !inMemory && fromId <= flushedId;
    const entries = inMemory
      ? replica.buffer.slice(fromId, Math.min(count, memoryEnd - fromId + 1), this.config.maxReadBytes)
      : fromStore
        ? await this.readFlushed(name, fromId, Math.min(count, flushedId - fromId + 1))
        : [];
    let bytes = 0;
    for (const e of entries) bytes += e.length;
    this.metrics.served(entries.length === 0 ? 'none' : fromStore ? 'object_store' : 'memory', bytes);
    return { entries, fromId, nextId: fromId + entries.length, committedId };
  }

  /**
   * Deletes a log: its metadata in etcd (every replica then drops what it
   * holds and its leader steps down), then its objects. The objects are listed
   * and deleted once more a little later, for an upload that was in flight.
   * Both sweeps cover only the deleted creation's prefix: the name may be
   * created again meanwhile, and its objects are under another.
   */
  async deleteLog(name: string): Promise<{ log: string; deleted: true }> {
    await this.requireLog(name);
    const meta = await this.dir().deleteLog(name);
    if (!meta) throw new TernError('LOG_NOT_FOUND', `log ${name} does not exist`);
    this.forgetLog(name);
    const store = this.store;
    if (store) {
      const prefix = logPrefix(this.config.s3Prefix, this.config.cluster, name, meta.uid);
      const sweep = async (when: 'at_delete' | 'late') => {
        for (const o of await store.list(prefix)) if (isObjectUnder(prefix, o.key)) await store.delete(o.key);
        this.metrics.deletedLogSwept(when);
      };
      await sweep('at_delete');
      setTimeout(() => sweep('late').catch((err) => this.log.warn({ log: name, err: (err as Error).message }, 'late sweep of a deleted log failed')), LATE_SWEEP_MS).unref();
    }
    this.log.info({ log: name }, 'log deleted');
    return { log: name, deleted: true };
  }

  /** Moves the retention point: ids below `beforeId` become unreadable and their objects are deleted in the background. */
  async truncate(name: string, beforeId: number): Promise<LogStatus> {
    await this.requireLog(name);
    const committedId = this.committedId(name);
    if (beforeId > committedId + 1) throw new TernError('BAD_REQUEST', `log ${name}: cannot truncate before ${beforeId}, past the commit point ${committedId}`);
    await this.dir().truncateBefore(name, beforeId);
    this.log.info({ log: name, beforeId }, 'log truncated');
    return this.status(name);
  }

  // ---- peer operations ----

  handlePeerAppend(req: AppendRequest): AppendReply {
    this.peerContact.set(req.leader, performance.now());
    this.failover.heard(req.log, req.leader, req.epoch);
    const state = this.logState(req.log);
    const before = state.replica.commitId;
    if (state.leader && req.epoch > state.leader.epoch) this.stepDown(state);
    const reply = state.replica.handleAppend(req);
    if (this.directory) reply.incarnation = incarnationTag(this.directory.self.incarnation);
    if (state.replica.commitId > before) this.wakeReaders(req.log, state.replica.commitId);
    return reply;
  }

  /** A connection to the peer listener closed: a leader may have died (failure detection probes). */
  peerConnectionClosed(): void {
    this.failover.connectionClosed();
  }

  /** Raises the fence for `name` to `epoch` and reports what this replica holds (recovery's question). */
  fence(name: string, epoch: number, leader: string): FenceAnswer {
    const state = this.logState(name);
    if (epoch < state.replica.epoch) throw new TernError('FENCED', `log ${name} is fenced at epoch ${state.replica.epoch}`, { epoch: state.replica.epoch });
    if (state.leader && epoch > state.leader.epoch) this.stepDown(state);
    if (epoch > state.replica.epoch) this.log.info({ log: name, epoch, leader, lastId: state.replica.buffer.lastId }, 'fenced for a new leader');
    state.replica.observeEpoch(epoch, leader);
    return this.fenceAnswer(state);
  }

  /** Entries a recovering leader lacks, with the epochs that wrote them (encoded runs). */
  fetchRuns(name: string, fromId: number, toId: number): Buffer {
    const state = this.logState(name);
    return encodeEntryRuns(name, state.replica.runsBetween(fromId, toId, this.config.maxBatchBytes));
  }

  /**
   * Takes leadership of `name` from epoch `expectedEpoch` (BookKeeper-style
   * recovery): raise the epoch in etcd, fence the replicas, decide the end of
   * the old segment from the counted answers, make a quorum hold it in the new
   * epoch, seal it and open this epoch's segment in etcd, and only then take
   * appends. One takeover per log at a time on this replica.
   */
  takeOver(name: string, expectedEpoch: number, unsafe = false, replacing?: string): Promise<RecoveryReport> {
    if (this.draining) return Promise.reject(new TernError('NOT_READY', `replica ${this.id} is stopping: it takes no leadership`));
    const state = this.logState(name);
    if (unsafe) state.unsafeRecovery = true;
    if (!state.takeover) {
      state.takeover = this.recover(name, state, expectedEpoch, replacing).finally(() => {
        state.takeover = undefined;
        state.blockedBy = undefined;
        state.unsafeRecovery = false;
      });
    }
    return state.takeover!;
  }

  /**
   * Moves leadership of `name` to replica `to` on purpose: stop taking
   * appends, let the rounds in flight finish, and ask `to` to take over in
   * place of this leader's key (it recovers as after a failure, so nothing
   * acknowledged is lost; the key is never free for the coordinator to hand
   * out). This leader keeps its key until `to` claims it, so a refused handoff
   * leaves the log where it was, taking appends again.
   */
  async handoff(name: string, to: string): Promise<LogStatus> {
    const record = await this.requireLog(name);
    if (!record.meta.replicas.includes(to)) throw new TernError('BAD_REQUEST', `${to} is not a replica of log ${name} (${record.meta.replicas.join(', ')})`);
    const target = this.dir().member(to);
    if (!target) throw new TernError('NOT_READY', `replica ${to} is not live`);
    const state = this.logs.get(name);
    const leader = this.localLeader(name);
    if (!state || !leader) throw new TernError('NOT_READY', `replica ${this.id} does not lead log ${name}`);
    if (to === this.id) return this.status(name);
    state.handingOff = true;
    try {
      await this.roundsDone(state, leader, this.config.ackTimeoutMs);
      await this.passLeadership(name, leader, target);
    } finally {
      state.handingOff = false;
    }
    return this.status(name);
  }

  /** Asks `target` to take `name` over from `leader`, replacing exactly this leader's key. */
  private async passLeadership(name: string, leader: LeaderLog<Waiting>, target: MemberInfo): Promise<void> {
    this.log.info({ log: name, epoch: leader.epoch, to: target.id }, 'handing off');
    try {
      await this.transport.command(target.peerUrl, peerPaths.takeover(name), { expectedEpoch: leader.epoch, replacing: this.dir().leaderValue(leader.epoch) });
    } catch (err) {
      throw new TernError('NOT_READY', `handoff of ${name} to ${target.id} failed: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Resolves once `leader` has no proposal in flight (all acked or failed), or after `timeoutMs`. */
  private roundsDone(state: LogState, leader: LeaderLog<Waiting>, timeoutMs: number): Promise<void> {
    if (leader.pendingCount === 0 || leader.isDeposed) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, Math.max(0, timeoutMs));
      function done(): void {
        clearTimeout(timer);
        state.roundsDone = undefined;
        resolve();
      }
      state.roundsDone = done;
    });
  }

  // ---- controlled shutdown ----

  /**
   * Controlled shutdown (Kafka's controlled shutdown, BookKeeper's ledger
   * close): not ready at once, no new leaderships; every led log, in
   * parallel, stops taking appends, finishes its rounds, and moves to a live
   * replica its open segment counts, or, when there is none, flushes what it
   * committed and is closed clean in etcd. Reads and peer traffic are served
   * throughout. The caller bounds it with --shutdown-timeout-ms.
   */
  async drain(report: DrainReport): Promise<void> {
    this.draining = true;
    const dir = this.dir();
    try {
      await dir.markDraining();
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'could not mark this replica as draining in etcd; handing off anyway');
    }
    // A takeover already running may make this replica a leader it must then drain.
    await Promise.allSettled([...this.logs.values()].map((state) => state.takeover));
    const led = [...this.logs].filter(([name]) => this.localLeader(name));
    // The i-th log tries the targets from the i-th on, so the recoveries spread over the replicas that stay.
    await Promise.all(led.map(([name, state], i) => this.drainLog(name, state, this.localLeader(name)!, i, report)));
  }

  private async drainLog(name: string, state: LogState, leader: LeaderLog<Waiting>, spread: number, report: DrainReport): Promise<void> {
    state.handingOff = true;
    try {
      await this.roundsDone(state, leader, this.config.ackTimeoutMs);
      const targets = this.handoffTargets(name, leader.epoch);
      const first = targets.length > 0 ? spread % targets.length : 0;
      for (const target of [...targets.slice(first), ...targets.slice(0, first)]) {
        if (leader.isDeposed) break;
        try {
          await this.passLeadership(name, leader, target);
          report.handedOff.push(name);
          return;
        } catch (err) {
          this.log.warn({ log: name, to: target.id, err: (err as Error).message }, 'shutdown handoff refused; trying the next replica or closing clean');
        }
      }
      if (leader.isDeposed) return void report.lost.push(name);
      await this.closeClean(name, state, leader);
      report.closedClean.push(name);
    } catch (err) {
      report.unfinished.push({ log: name, reason: (err as Error).message });
    } finally {
      state.handingOff = false;
    }
  }

  /** Live replicas, not stopping, that the open segment of `epoch` counts: they can recover the log from their memory. */
  private handoffTargets(name: string, epoch: number): MemberInfo[] {
    const record = this.directory?.log(name);
    const open = record?.segments.at(-1);
    if (!record || !open || open.epoch !== epoch || open.lastId !== null) return [];
    return this.leaderCandidates(record)
      .filter((id) => id !== this.id && open.replicas[id] === this.dir().member(id)?.incarnation)
      .map((id) => this.dir().member(id)!);
  }

  /**
   * Seals the open segment at the commit point once object storage holds
   * every committed id, in one transaction that also gives up the leader key:
   * the next leader needs no fence answers (BookKeeper's closed ledger).
   */
  private async closeClean(name: string, state: LogState, leader: LeaderLog<Waiting>): Promise<void> {
    if (!this.store) throw new Error('no object store: committed entries live only in memory');
    const commitId = state.replica.commitId;
    const dir = this.dir();
    while (dir.flushedId(name) < commitId) {
      if (leader.isDeposed) throw new Error(`fenced at epoch ${leader.epoch} while flushing`);
      await sleep(DRAIN_POLL_MS);
    }
    const open = dir.log(name)?.segments.at(-1);
    if (!open || open.epoch !== leader.epoch || open.lastId !== null) throw new Error(`segment ${leader.epoch} is not the open one`);
    if (!(await dir.closeSegmentClean(name, leader.epoch, { ...open, lastId: commitId }))) throw new Error(`lost epoch ${leader.epoch} before closing`);
    this.stepDown(state);
    this.log.info({ log: name, epoch: leader.epoch, lastId: commitId }, 'log closed clean: flushed through its last committed id');
  }

  /**
   * Operator override: recover `name` without a counted quorum of fence
   * answers, accepting that acknowledged entries held only by replicas that
   * restarted are lost. Runs on the replica already trying to take it over, or here.
   */
  async forceRecovery(name: string): Promise<RecoveryReport> {
    const record = await this.requireLog(name);
    const state = this.logState(name);
    if (state.takeover) {
      state.unsafeRecovery = true;
      return state.takeover;
    }
    if (record.leader && record.leader.id !== this.id) {
      const holder = this.dir().member(record.leader.id);
      if (holder) return this.transport.command<RecoveryReport>(holder.peerUrl, peerPaths.takeover(name), { expectedEpoch: record.epoch - 1, unsafe: true });
    }
    if (this.localLeader(name)) throw new TernError('BAD_REQUEST', `log ${name} is available on ${this.id}: nothing to force`);
    return this.takeOver(name, record.epoch, true);
  }

  /** Gives every log without a leader key to a live replica of it; run by the coordinator. */
  async assignLeaderless(): Promise<void> {
    const dir = this.dir();
    for (const name of dir.logNames()) {
      const record = dir.log(name);
      if (!record || record.leader || this.assigning.has(name)) continue;
      // A log being created gets its first leader from the replica creating it.
      if (record.segments.length === 0 && Date.now() - Date.parse(record.meta.createdAt) < CREATION_GRACE_MS) continue;
      const candidate = this.pickLeader(record);
      if (!candidate) continue;
      this.assigning.add(name);
      const assigned = candidate === this.id ? this.takeOver(name, record.epoch) : this.transport.command(dir.member(candidate)!.peerUrl, peerPaths.takeover(name), { expectedEpoch: record.epoch });
      assigned
        .catch((err) => this.log.warn({ log: name, candidate, err: (err as Error).message }, 'leader assignment failed; will retry'))
        .finally(() => this.assigning.delete(name));
    }
  }

  // ---- internals ----

  private metricsSource(): MetricsSource {
    return {
      logs: () => {
        const out: LogGauges[] = [];
        for (const [name, state] of this.logs) {
          const committedId = this.committedId(name);
          const flushedId = this.directory?.flushedId(name) ?? -1;
          const epoch = Math.max(this.directory?.log(name)?.epoch ?? 0, state.replica.epoch);
          out.push({ log: name, committedId, flushedId, flushLagEntries: Math.max(0, committedId - flushedId), flushLagBytes: state.replica.buffer.bytes, epoch, leader: this.localLeader(name) !== undefined });
        }
        return out;
      },
      bufferBytes: () => this.memory.bytes,
      bufferLimitBytes: () => this.config.maxBufferBytes,
      bufferEntries: () => {
        let n = 0;
        for (const state of this.logs.values()) n += state.replica.buffer.length;
        return n;
      },
      tailWaiters: () => {
        let n = 0;
        for (const readers of this.tailReaders.values()) n += readers.size;
        return n;
      },
      leaseUp: () => this.directory?.leaseUp ?? false,
      coordinator: () => this.directory?.isCoordinator ?? false,
      peersUp: () => {
        const now = performance.now();
        const up: Record<string, boolean> = {};
        for (const [peer, at] of this.peerContact) up[peer] = now - at < this.config.ackTimeoutMs;
        return up;
      },
    };
  }

  private dir(): ClusterDirectory {
    if (!this.directory || this.stopping) throw new TernError('NOT_READY', `replica ${this.id} is ${this.stopping ? 'stopping' : 'starting'}`);
    return this.directory;
  }

  private async requireLog(name: string): Promise<LogRecord> {
    const dir = this.dir();
    const record = dir.log(name) ?? (await dir.fetchLog(name));
    if (!record) throw new TernError('LOG_NOT_FOUND', `log ${name} does not exist`);
    return record;
  }

  private localLeader(name: string): LeaderLog<Waiting> | undefined {
    const leader = this.logs.get(name)?.leader;
    return leader && !leader.isDeposed ? leader : undefined;
  }

  /** Highest committed id this replica knows: in its memory, or durable in object storage. */
  private committedId(name: string): number {
    return Math.max(this.logs.get(name)?.replica.commitId ?? -1, this.directory?.flushedId(name) ?? -1);
  }

  private async readFlushed(name: string, fromId: number, count: number): Promise<Buffer[]> {
    if (!this.reader) throw new TernError('STORE_UNAVAILABLE', `log ${name}: id ${fromId} is no longer in memory and no object store is configured`);
    try {
      return await this.reader.read(this.dir().manifest(name), fromId, count, this.config.maxReadBytes);
    } catch (err) {
      if (err instanceof CorruptObjectError) {
        this.log.error({ log: name, fromId, err: err.message }, 'corrupt object in the object store');
        throw new TernError('CORRUPT_OBJECT', `log ${name}: the object holding id ${fromId} is corrupt (${err.message})`, { cause: err });
      }
      throw new TernError('STORE_UNAVAILABLE', `log ${name}: reading id ${fromId} from object storage failed: ${(err as Error).message}`, { cause: err });
    }
  }

  /** The manifest moved: release what is durable (followers; the leader's flusher does its own), wake readers. */
  /** Drops everything this replica holds of a deleted log. */
  private forgetLog(name: string): void {
    const state = this.logs.get(name);
    if (!state) return;
    this.stepDown(state);
    this.flush();
    state.replica.buffer.releaseThrough(state.replica.buffer.lastId);
    this.logs.delete(name);
    this.wakeReaders(name, Number.MAX_SAFE_INTEGER);
  }

  private onFlushed(name: string): void {
    const state = this.logs.get(name);
    const flushedId = this.directory?.flushedId(name) ?? -1;
    // A leader deposed a moment ago counts as a follower here: what it holds up to the flushed point
    // is durable elsewhere, and may be a tail the next leader discarded.
    if (state && (!state.leader || state.leader.isDeposed) && !state.takeover) state.replica.releaseThrough(flushedId);
    this.wakeReaders(name, this.committedId(name));
  }

  private startFlusher(name: string, uid: string | undefined, state: LogState, leader: LeaderLog<Waiting>): void {
    if (!this.store) return;
    const replica = state.replica;
    const source = {
      log: name,
      uid,
      epoch: leader.epoch,
      isCurrent: () => state.leader === leader && !leader.isDeposed && !this.stopping,
      closing: () => state.handingOff,
      committedId: () => replica.commitId,
      entries: (fromId: number, maxCount: number, maxBytes: number) => replica.buffer.slice(fromId, maxCount, maxBytes),
      release: (id: number) => replica.releaseThrough(Math.min(id, replica.commitId)),
    };
    const c = this.config;
    const observer = { flushed: (bytes: number, seconds: number) => this.metrics.flushed(bytes, seconds), recordFailed: () => this.metrics.etcdFailed('record') };
    runFlusher(source, this.dir(), this.store, { cluster: c.cluster, prefix: c.s3Prefix, maxBytes: c.flushMaxBytes, maxEntries: c.flushMaxEntries, intervalMs: c.flushIntervalMs, orphanGraceMs: c.orphanGraceMs, observer, buffers: this.objectBuffers }, this.log).catch(
      (err) => this.log.error({ log: name, err }, 'flusher stopped on an error'),
    );
  }

  private logState(name: string): LogState {
    let state = this.logs.get(name);
    if (!state) {
      state = { replica: new LogReplica(name, this.memory), leader: undefined, takeover: undefined, blockedBy: undefined, unsafeRecovery: false, handingOff: false, roundsDone: undefined, wokenCommitId: -1, rejoining: new Map() };
      // A replica that restarted starts right after what object storage already holds.
      state.replica.releaseThrough(this.directory?.flushedId(name) ?? -1);
      this.logs.set(name, state);
    }
    return state;
  }

  /** Spreads first leaderships: the live replicas of the log, fewest leaderships first (ties by id). */
  private async assignFirstLeader(name: string, record: LogRecord): Promise<void> {
    for (const id of this.leaderCandidates(record)) {
      try {
        if (id === this.id) await this.takeOver(name, record.epoch);
        else await this.transport.command(this.dir().member(id)!.peerUrl, peerPaths.takeover(name), { expectedEpoch: record.epoch });
        return;
      } catch (err) {
        this.log.warn({ log: name, candidate: id, err: (err as Error).message }, 'candidate could not take the first leadership; trying the next');
      }
    }
    throw new TernError('NOT_READY', `no replica of log ${name} could take its leadership`);
  }

  private pickLeader(record: LogRecord): string | undefined {
    return this.leaderCandidates(record)[0];
  }

  private leaderCandidates(record: LogRecord): string[] {
    const dir = this.dir();
    const led = new Map<string, number>();
    for (const log of dir.logNames()) {
      const id = dir.log(log)?.leader?.id;
      if (id) led.set(id, (led.get(id) ?? 0) + 1);
    }
    // A member key outlives a killed process until its lease lapses: one known dead is no candidate, nor
    // is one draining for a controlled shutdown. Nor is this replica for a log it gave up for lost quorum,
    // until a peer reaches it again.
    const live = (id: string) => {
      const member = dir.member(id);
      return member !== undefined && !member.draining && !this.failover.isDead(member) && (id !== this.id || this.failover.mayLead(record.meta.name));
    };
    return record.meta.replicas.filter(live).sort((a, b) => (led.get(a) ?? 0) - (led.get(b) ?? 0) || a.localeCompare(b));
  }

  private fenceAnswer(state: LogState): FenceAnswer {
    const buffer = state.replica.buffer;
    return { replica: this.id, incarnation: this.dir().self.incarnation, startId: buffer.startId, lastId: buffer.lastId, runs: buffer.epochRuns() };
  }

  private async recover(name: string, state: LogState, expectedEpoch: number, replacing?: string): Promise<RecoveryReport> {
    const started = Date.now();
    const seconds = () => (Date.now() - started) / 1000;
    const dir = this.dir();
    const epoch = await dir.claimLeadership(name, expectedEpoch, replacing);
    if (epoch === undefined) throw new TernError('NOT_READY', `log ${name}: epoch ${expectedEpoch} is no longer current or another replica leads it`);
    try {
      this.stepDown(state);
      state.replica.observeEpoch(epoch, this.id);
      state.replica.releaseThrough(dir.flushedId(name));
      const { endId, warning } = await this.decideEnd(name, state, epoch);
      await this.holdThrough(name, state, epoch, endId);
      const record = await this.requireLog(name);
      const seals: SegmentMeta[] = record.segments.filter((seg) => seg.lastId === null).map((seg) => ({ ...seg, lastId: endId }));
      const open: SegmentMeta = { epoch, firstId: endId + 1, lastId: null, replicas: this.incarnationsOf(record.meta.replicas) };
      if (!(await dir.openSegment(name, epoch, seals, open))) throw new TernError('NOT_READY', `log ${name}: lost epoch ${epoch} before sealing`);
      // Flushes whatever the previous leaders had not, sealed segments included, before anything is released.
      if (state.leader) this.startFlusher(name, record.meta.uid, state, state.leader);
      this.metrics.recovered('ok', seconds());
      this.metrics.leadershipChanged('acquired');
      this.log.info({ log: name, epoch, recoveredId: endId, sealed: seals.map((seg) => ({ epoch: seg.epoch, lastId: seg.lastId })), ms: Date.now() - started, ...(warning ? { warning } : {}) }, 'leading log');
      return { log: name, epoch, recoveredId: endId, ...(warning ? { warning } : {}) };
    } catch (err) {
      this.metrics.recovered('failed', seconds());
      this.stepDown(state);
      // Free the key (retried while etcd fails) so the coordinator can give the log to a replica that can finish.
      void dir.releaseLeadershipUntilDone(name, epoch);
      throw err;
    }
  }

  /** Fences the replicas until the answers that count can decide the end of the open segment. */
  private async decideEnd(name: string, state: LogState, epoch: number): Promise<{ endId: number; warning?: string }> {
    for (;;) {
      const record = await this.requireLog(name);
      if (record.segments.length === 0) return { endId: -1 };
      if (isClosedClean(record.segments.at(-1))) return this.endOfCleanClose(name, state, record);
      const answers = await this.collectFenceAnswers(name, state, record, epoch);
      const unsafe = state.unsafeRecovery;
      const decision = decideRecovery(record.segments, answers, record.meta.replicas.length, unsafe);
      if (decision.kind === 'recover') {
        const mine = validLastId(this.fenceAnswer(state), record.segments);
        state.replica.discardAfter(mine);
        if (mine < decision.endId) await this.fetchInto(name, state, decision.source, mine + 1, decision.endId);
        state.replica.discardAfter(decision.endId);
        const warning = unsafe
          ? `recovered without a counted quorum from ${decision.counted.join(', ')}: acknowledged entries after id ${decision.endId} held only by replicas that restarted are lost`
          : undefined;
        return { endId: decision.endId, ...(warning ? { warning } : {}) };
      }
      state.blockedBy = decision.reason;
      this.log.warn({ log: name, epoch, reason: decision.reason }, 'recovery cannot decide safely; the log stays unavailable');
      await sleep(500);
      const now = this.dir().log(name);
      if (!now || now.epoch !== epoch || now.leader?.id !== this.id) throw new TernError('NOT_READY', `log ${name}: epoch ${epoch} moved on during recovery`);
    }
  }

  /** A segment closed clean ends at its recorded lastId, all of it in object storage: no fence answers needed. */
  private async endOfCleanClose(name: string, state: LogState, record: LogRecord): Promise<{ endId: number }> {
    const endId = record.segments.at(-1)!.lastId!;
    // The manifest is written before the seal; a watch that shows the seal but lags on the manifest is read again.
    if (this.dir().flushedId(name) < endId) await this.dir().fetchLog(name);
    const flushedId = this.dir().flushedId(name);
    if (flushedId < endId) throw new TernError('NOT_READY', `log ${name}: segment closed clean at ${endId} but object storage holds only through ${flushedId}`);
    state.replica.discardAfter(validLastId(this.fenceAnswer(state), record.segments));
    state.replica.releaseThrough(flushedId);
    return { endId };
  }

  /** This replica's answer and the peers', waiting briefly for all so the highest can be taken. */
  private async collectFenceAnswers(name: string, state: LogState, record: LogRecord, epoch: number): Promise<FenceAnswer[]> {
    const answers: FenceAnswer[] = [this.fenceAnswer(state)];
    const peers = record.meta.replicas.filter((id) => id !== this.id);
    await Promise.all(
      peers.map(async (id) => {
        const member = this.dir().member(id);
        if (!member) return;
        try {
          answers.push(await withTimeout(this.transport.command<FenceAnswer>(member.peerUrl, peerPaths.fence(name), { epoch, leader: this.id }), this.config.ackTimeoutMs));
        } catch (err) {
          this.log.warn({ log: name, peer: id, err: (err as Error).message }, 'no fence answer');
        }
      }),
    );
    return answers;
  }

  private async fetchInto(name: string, state: LogState, source: string, fromId: number, toId: number): Promise<void> {
    const member = this.dir().member(source);
    if (!member) throw new TernError('NOT_READY', `log ${name}: ${source}, which holds the recovered tail, is gone`);
    for (let next = fromId; next <= toId; ) {
      const runs = decodeEntryRuns(await this.transport.fetchBinary(member.peerUrl, peerPaths.fetch(name), { fromId: next, toId }));
      if (runs.length === 0) throw new TernError('NOT_READY', `log ${name}: ${source} no longer holds id ${next}`);
      for (const run of runs) {
        state.replica.adopt(run.firstId, run.epoch, run.entries);
        next = run.firstId + run.entries.length;
      }
    }
  }

  /** Leads in `epoch` with appends held back until a quorum holds everything up to endId. */
  private async holdThrough(name: string, state: LogState, epoch: number, endId: number): Promise<void> {
    const record = await this.requireLog(name);
    state.leader = new LeaderLog<Waiting>(state.replica, { ...this.leaderTicks, self: this.id, peers: record.meta.replicas.filter((r) => r !== this.id), epoch });
    this.schedule(state);
    const deadline = Date.now() + this.config.ackTimeoutMs * 2;
    while (state.replica.commitId < endId) {
      if (state.leader?.isDeposed !== false || Date.now() > deadline) throw new TernError('NOT_READY', `log ${name}: no quorum took the recovered tail up to ${endId}`);
      await this.waitForCommit(name, endId, 50);
    }
  }

  /**
   * A replica that restarted lost what it held, so the open segment stops
   * counting it; once the leader has caught it up past everything it could
   * have acknowledged before (the leader's last id when it came back), its new
   * incarnation is recorded and it counts again. Without this, two restarts
   * over a log's life would make it unrecoverable.
   */
  private recordRejoinedReplicas(name: string, state: LogState): void {
    const leader = this.localLeader(name);
    const open = this.directory?.log(name)?.segments.at(-1);
    if (!leader || state.takeover || !open || open.epoch !== leader.epoch) return;
    for (const id of Object.keys(this.incarnationsOf(this.directory!.log(name)!.meta.replicas))) {
      const member = this.directory!.member(id)!;
      if (id === this.id || open.replicas[id] === member.incarnation) continue;
      const pending = state.rejoining.get(id);
      if (!pending || pending.incarnation !== member.incarnation) {
        state.rejoining.set(id, { incarnation: member.incarnation, throughId: state.replica.buffer.lastId });
      } else if (leader.matchIdOf(id, incarnationTag(member.incarnation)) >= pending.throughId) {
        state.rejoining.delete(id);
        const segment = { ...open, replicas: { ...open.replicas, [id]: member.incarnation } };
        this.dir()
          .updateSegment(name, leader.epoch, segment)
          .then((ok) => ok && this.log.info({ log: name, replica: id, epoch: leader.epoch }, 'restarted replica caught up: counts for the segment again'))
          .catch((err) => this.log.warn({ log: name, err: (err as Error).message }, 'could not record a rejoined replica'));
      }
    }
  }

  /** The incarnation of each live replica of a log: who the new segment is written to. */
  private incarnationsOf(replicas: readonly string[]): Record<string, string> {
    const out: Record<string, string> = {};
    for (const id of replicas) {
      const member = this.dir().member(id);
      if (member) out[id] = member.incarnation;
    }
    return out;
  }

  private onDirectoryChange(name: string): void {
    const state = this.logs.get(name);
    const leader = state?.leader;
    if (!state || !leader) return;
    const record = this.directory?.log(name);
    // The leader key is leased: if it is gone or names another epoch, this replica no longer leads.
    if (!record || record.epoch > leader.epoch || !record.leader || record.leader.epoch !== leader.epoch) {
      this.log.warn({ log: name, epoch: leader.epoch, etcdEpoch: record?.epoch }, 'leadership lost in etcd: stepping down');
      this.stepDown(state);
    }
  }

  private stepDown(state: LogState): void {
    if (!state.leader) return;
    // A leader still recovering never counted as acquired.
    if (!state.leader.isDeposed && !state.takeover) this.metrics.leadershipChanged('lost');
    state.leader.stepDown();
    this.schedule(state);
  }

  private tick(): void {
    for (const state of this.logs.values()) {
      const leader = state.leader;
      if (!leader) continue;
      leader.tick();
      if (leader.hasReady()) this.schedule(state);
    }
    this.failover.tick();
  }

  private schedule(state: LogState): void {
    this.dirty.add(state);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => this.flush());
  }

  private flush(): void {
    this.flushScheduled = false;
    for (const state of this.dirty) {
      this.dirty.delete(state);
      const leader = state.leader;
      if (!leader) continue;
      const ready = leader.ready();
      this.carryOut(state, leader, ready);
      if (state.roundsDone && (leader.pendingCount === 0 || leader.isDeposed)) state.roundsDone();
      if (leader.isDeposed && leader.pendingCount === 0) state.leader = undefined;
    }
  }

  private carryOut(state: LogState, leader: LeaderLog<Waiting>, ready: Ready<Waiting>): void {
    for (const { to, req } of ready.messages) this.sendToPeer(state, leader, to, req);
    const now = ready.acked.length > 0 ? performance.now() : 0;
    for (const a of ready.acked) {
      this.metrics.quorumReached((now - a.token.takenAt) / 1000);
      a.token.resolve({ firstId: a.firstId, lastId: a.lastId, epoch: leader.epoch });
    }
    for (const f of ready.failed) f.token.reject(unknownOutcomeError(state.replica.log, f.reason, f.firstId, f.lastId));
    if (ready.quorumLost) this.giveUpForLostQuorum(state, leader);
    if (ready.commitId > state.wokenCommitId) {
      state.wokenCommitId = ready.commitId;
      this.wakeReaders(state.replica.log, ready.commitId);
    }
  }

  /**
   * Check-quorum deposed the leader (no follower answered for the ack timeout): give up the leader key so
   * that the coordinator, or the followers, give the log to a replica that reaches a quorum.
   */
  private giveUpForLostQuorum(state: LogState, leader: LeaderLog<Waiting>): void {
    const name = state.replica.log;
    if (!state.takeover) this.metrics.leadershipChanged('lost');
    this.failover.gaveUpForLostQuorum(name);
    this.log.warn({ log: name, epoch: leader.epoch, ackTimeoutMs: this.config.ackTimeoutMs }, 'no follower answered within the ack timeout: stepping down and giving up the leader key');
    // Retried while etcd fails: the coordinator only assigns logs without a leader key.
    if (this.directory) void this.directory.releaseLeadershipUntilDone(name, leader.epoch);
  }

  private sendToPeer(state: LogState, leader: LeaderLog<Waiting>, to: string, req: AppendRequest): void {
    const member = this.directory?.member(to);
    const unreachable = (refused = false) => {
      leader.peerUnreachable(to, req.seq, refused);
      this.schedule(state);
    };
    if (!member) {
      // Its lease lapsed: as gone as a refused connection.
      queueMicrotask(() => unreachable(true));
      return;
    }
    let bytes = 0;
    for (const e of req.entries) bytes += e.length;
    this.metrics.replicationSent(to, bytes);
    const sentAt = performance.now();
    this.transport.sendAppend(member.peerUrl, req).then(
      (reply) => {
        const now = performance.now();
        this.peerContact.set(to, now);
        this.metrics.replicationAnswered(to, reply.status === ReplyStatus.Fenced ? 'fenced' : 'ok', (now - sentAt) / 1000);
        leader.handleReply(to, reply);
        this.schedule(state);
      },
      (err: NodeJS.ErrnoException) => {
        this.metrics.replicationAnswered(to, 'error');
        unreachable(err.code === 'ECONNREFUSED');
      },
    );
  }

  private waitForCommit(name: string, fromId: number, waitMs: number): Promise<void> {
    return new Promise((resolve) => {
      let readers = this.tailReaders.get(name);
      if (!readers) this.tailReaders.set(name, (readers = new Set()));
      const reader: TailReader = {
        fromId,
        wake: () => {
          clearTimeout(timer);
          readers.delete(reader);
          if (readers.size === 0) this.tailReaders.delete(name);
          resolve();
        },
      };
      const timer = setTimeout(reader.wake, waitMs);
      readers.add(reader);
    });
  }

  private wakeReaders(name: string, committedId: number): void {
    const readers = this.tailReaders.get(name);
    if (!readers) return;
    for (const r of readers) if (r.fromId <= committedId) r.wake();
  }
}

function refusalError(log: string, reason: Refusal, epoch: number): TernError {
  if (reason === 'NO_QUORUM') return new TernError('NO_QUORUM', `log ${log}: fewer than two replicas answer; append not applied`, { maybeApplied: false });
  return new TernError('FENCED', `log ${log}: epoch ${epoch} was fenced by a newer leader; append not applied`, { maybeApplied: false });
}

function unknownOutcomeError(log: string, reason: UnknownOutcome, firstId: number, lastId: number): TernError {
  const ids = firstId === lastId ? `id ${firstId}` : `ids ${firstId}-${lastId}`;
  if (reason === 'ACK_TIMEOUT') return new TernError('ACK_TIMEOUT', `log ${log}: ${ids} not acknowledged by a quorum in time; outcome unknown`, { maybeApplied: true });
  return new TernError('FENCED', `log ${log}: leader fenced before ${ids} were acknowledged; outcome unknown`, { maybeApplied: true });
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer in ${ms} ms`)), ms);
    promise.then(
      (v) => (clearTimeout(timer), resolve(v)),
      (e) => (clearTimeout(timer), reject(e)),
    );
  });
}
