/**
 * The replica: one process's part of every log, wiring the pure protocol
 * (src/quorum) to time, the network, etcd and object storage. This facade
 * owns the logs this replica holds and answers the client and peer
 * operations; its parts each own one concern:
 *   leader-driver.ts  the Ready loop of the logs it leads (group commit)
 *   takeover.ts       takeover and recovery
 *   handoff.ts        planned moves and the controlled shutdown
 *   placement.ts      the coordinator, first leaders, rejoined followers
 *   failover.ts       fast failover (a dead leader's logs taken at once)
 *   storage.ts        flushers, reads from object storage, deleted logs
 *   producers.ts      idempotent producers: judging appends, loading the table, snapshots
 *   tail-readers.ts   reads waiting for commits
 *   tail-stream.ts    streaming tails (follow=true)
 *   quiescence.ts     idle logs sealed, reopened by the next append
 *   retention.ts      retention policies, truncation, named readers
 */
import { leadershipLost, releasesOnFlush } from '../control/follower.js';
import { liveIncarnations } from '../control/placement.js';
import type { ClusterDirectory } from '../fencing/directory.js';
import type { LogRecord, MemberInfo, ReaderInfo, RetentionPolicy } from '../fencing/keys.js';
import { TernError } from '../errors.js';
import type { MemoryAccount } from '../quorum/entry-buffer.js';
import type { LeaderLog } from '../quorum/leader.js';
import { incarnationTag, type AppendReply, type AppendRequest } from '../quorum/messages.js';
import type { FenceAnswer } from '../quorum/recovery.js';
import type { ObjectStore } from '../flusher/object-store.js';
import type { PeerTransport } from '../peer/transport.js';
import type { PeerTakeover } from './api.js';
import type { ReplicaConfig } from './config.js';
import { Appends, type AppendOf } from './appends.js';
import { Failover } from './failover.js';
import { Follower } from './follower.js';
import { Handoffs } from './handoff.js';
import { LeaderDriver } from './leader-driver.js';
import { leaderTicksOf, newLogState, type LeaderTicks, type LogState, type ReplicaContext, type Waiting } from './log-state.js';
import { metricsSource } from './metrics-source.js';
import { ReplicaMetrics } from './metrics.js';
import { Placement } from './placement.js';
import { Reads } from './reads.js';
import { Storage } from './storage.js';
import { Producers } from './producers.js';
import { Quiescence } from './quiescence.js';
import { Retention, type ReaderStatus } from './retention.js';
import type { HeldIds } from '../peer/forwarded-appends.js';
import { TailReaders } from './tail-readers.js';
import { TailStreams, type TailFormat, type TailStream } from './tail-stream.js';
import { Takeover } from './takeover.js';
import type { AppendResult, DrainReport, LogStatus, Logger, ReadResult, Readiness, RecoveryReport, TimeSeek } from './types.js';

export type { AppendResult, DrainReport, LogStatus, Logger, ReadResult, Readiness, RecoveryReport, TimeSeek } from './types.js';

/** How often the coordinator looks for logs without a leader, and leaders for followers that caught up. */
const COORDINATOR_PASS_MS = 300;

export class Replica implements ReplicaContext {
  /** Memory held in entries over all logs, bounded by `maxBufferBytes` (leaders refuse appends, followers entries). */
  readonly memory: MemoryAccount;
  readonly logs = new Map<string, LogState>();
  readonly leaderTicks: LeaderTicks;
  readonly metrics: ReplicaMetrics;
  readonly failover: Failover;
  readonly storage: Storage;
  readonly producers: Producers;
  readonly retention: Retention;
  private readonly tailReaders = new TailReaders();
  private readonly driver: LeaderDriver;
  private readonly takeover: Takeover;
  private readonly handoffs: Handoffs;
  private readonly placement: Placement;
  private readonly reads: Reads;
  private readonly tailStreams: TailStreams;
  private readonly follower: Follower;
  private readonly quiescence: Quiescence;
  private readonly appends: Appends;
  private ticker: NodeJS.Timeout | undefined;
  private coordinatorTimer: NodeJS.Timeout | undefined;
  directory: ClusterDirectory | undefined;
  stopping = false;
  /** Set when a controlled shutdown begins: not ready, no new leaderships, led logs move away or close clean. */
  draining = false;

  constructor(
    readonly config: ReplicaConfig,
    readonly transport: PeerTransport,
    readonly log: Logger,
    /** Undefined when no object store is configured: entries then stay in memory, bounded. */
    readonly store: ObjectStore | undefined,
  ) {
    this.memory = { bytes: 0, limitBytes: config.maxBufferBytes };
    this.leaderTicks = leaderTicksOf(config);
    this.storage = new Storage(this);
    this.producers = new Producers(this);
    this.retention = new Retention(this, this.tailReaders);
    this.driver = new LeaderDriver(this, this.tailReaders);
    this.takeover = new Takeover(this, this.driver);
    this.placement = new Placement(this);
    this.handoffs = new Handoffs(this, this.driver, this.placement, this.takeover);
    this.reads = new Reads(this, this.tailReaders);
    this.tailStreams = new TailStreams(this, this.reads, this.tailReaders);
    this.follower = new Follower(this, this.driver, this.tailReaders);
    this.quiescence = new Quiescence(this, this.driver);
    this.appends = new Appends(this, this.memory, this.driver, this.quiescence, this.tailReaders);
    const self = this;
    this.metrics = new ReplicaMetrics(config.id, { perLog: config.metricsPerLog !== 'false', ...(config.metricsPerLog === 'auto' ? { perLogMax: config.metricsPerLogMax } : {}) }, metricsSource({
      config, logs: this.logs, memory: this.memory, peerContact: this.driver.peerContact,
      get directory() { return self.directory; },
      get tailWaiters() { return self.tailReaders.count; },
      committedId: (name) => this.committedId(name),
      localLeader: (name) => this.localLeader(name),
      readerLags: (nowMs) => this.retention.lags(nowMs),
    }));
    this.failover = new Failover(
      {
        id: config.id,
        // A draining replica takes no new leadership.
        directory: () => (this.isStopping ? undefined : this.directory),
        leadsOrTakingOver: (name) => this.logs.get(name)?.takeover !== undefined || this.localLeader(name) !== undefined,
        leaderCandidates: (record) => this.placement.leaderCandidates(record),
        takeOver: (name, expectedEpoch, replacing) => this.takeOver(name, expectedEpoch, false, replacing),
        log,
      },
      config,
      (peerUrl, timeoutMs) => transport.probe(peerUrl, timeoutMs),
    );
  }

  get id(): string {
    return this.config.id;
  }

  /** This process's incarnation (new at every start), once registered. */
  get incarnation(): string | undefined {
    return this.directory?.self.incarnation;
  }

  /** True from the start of a controlled shutdown. */
  get isStopping(): boolean {
    return this.draining || this.stopping;
  }

  /** See readiness(). */
  get isReady(): boolean {
    return this.readiness().ready;
  }

  /** See Placement.readiness. */
  readiness(): Readiness {
    return this.placement.readiness();
  }


  start(directory: ClusterDirectory): void {
    this.directory = directory;
    this.follower.incarnationTag = incarnationTag(directory.self.incarnation);
    directory.on('log', (name) => this.onDirectoryChange(name));
    directory.on('flushed', (name) => this.onFlushed(name));
    directory.on('deleted', (name) => this.forgetLog(name));
    directory.on('leaseLost', (err) => {
      this.metrics.etcdFailed('lease');
      this.log.error({ err }, 'etcd lease lost: stepping down from every log');
      for (const state of this.logs.values()) this.driver.stepDown(state);
    });
    this.ticker = setInterval(() => {
      this.driver.tick();
      this.takeover.tick();
      this.handoffs.tick();
      this.failover.tick();
      this.quiescence.tick();
    }, this.config.tickMs);
    // The coordinator (one replica, elected through a leased etcd key) gives leaderless logs a leader.
    this.coordinatorTimer = setInterval(() => {
      if (this.stopping || this.draining) return;
      if (directory.isCoordinator) this.placement.assignLeaderless();
      for (const state of this.driver.led) this.placement.recordRejoinedReplicas(state.replica.log, state);
    }, COORDINATOR_PASS_MS);
  }

  async stop(): Promise<void> {
    this.stopping = true;
    clearInterval(this.ticker);
    clearInterval(this.coordinatorTimer);
    for (const state of this.logs.values()) this.driver.stepDown(state);
    this.driver.flush();
    this.tailReaders.wakeAll();
  }

  beginDraining(): void {
    this.draining = true;
  }

  // ---- client operations ----

  listLogs(): readonly string[] {
    return this.dir().logNames();
  }

  /**
   * Creates the log if it does not exist (idempotent) and makes sure it has a
   * leader. With `retention`, a new log is created with that policy and an
   * existing one gets it in place of its own ({} clears it).
   */
  async createLog(name: string, retention?: RetentionPolicy): Promise<{ created: boolean; status: LogStatus }> {
    const dir = this.dir();
    if (!dir.log(name) && dir.logNames().length >= this.config.maxLogs) {
      throw new TernError('TOO_MANY_LOGS', `the cluster holds ${dir.logNames().length} logs, the most --max-logs allows (${this.config.maxLogs})`);
    }
    let created: boolean;
    try {
      ({ created } = await dir.createLog(name, this.config.replicas, retention));
    } catch (err) {
      throw new TernError('NOT_READY', `cannot create log ${name}: ${(err as Error).message}`, { cause: err });
    }
    const record = await this.requireLog(name);
    if (record.segments.length === 0 && !record.leader) await this.placement.assignFirstLeader(name, record);
    if (created) this.log.info({ log: name, replicas: record.meta.replicas, retention }, 'log created');
    else if (retention) await this.retention.setPolicy(name, retention);
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
      quiesced: dir.isQuiesced(name),
      epoch: Math.max(record.epoch, state?.replica.epoch ?? 0),
      committedId,
      flushedId,
      firstId: committedId >= retained ? retained : -1,
      flushLag: { entries: committedId - flushedId, bytes: state?.replica.buffer.bytes ?? 0 },
      segments: record.segments.map((s) => ({ epoch: s.epoch, firstId: s.firstId, lastId: s.lastId, sealed: s.lastId !== null, closedClean: s.closedClean === true, quiesced: s.quiesced === true, replicas: s.replicas })),
      ...this.retention.status(name),
    };
  }

  /** See Appends.leaderElsewhere. */
  leaderElsewhere(name: string): Promise<MemberInfo | undefined> {
    return this.appends.leaderElsewhere(name);
  }

  /** See Appends.append. */
  append(name: string, append: AppendOf, heldBy?: string): Promise<AppendResult> {
    return this.appends.append(name, append, heldBy);
  }

  /** See Appends.awaitHeld. */
  awaitHeld(name: string, held: HeldIds): Promise<void> {
    return this.appends.awaitHeld(name, held);
  }

  /** See Reads.read. */
  read(name: string, fromId: number, limit: number, waitMs: number): Promise<ReadResult> {
    return this.reads.read(name, fromId, limit, waitMs);
  }

  /** See Reads.seekTime. */
  seekTime(name: string, timeMs: number): Promise<TimeSeek> {
    return this.reads.seekTime(name, timeMs);
  }

  /** See TailStreams.openStream. */
  openTail(name: string, fromId: number, format: TailFormat): Promise<TailStream> {
    return this.tailStreams.openStream(name, fromId, format);
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
    await this.storage.sweepDeleted(name, meta.uid);
    this.log.info({ log: name }, 'log deleted');
    return { log: name, deleted: true };
  }

  /** Moves the retention point: ids below `beforeId` become unreadable and their objects are deleted in the background. */
  async truncate(name: string, beforeId: number): Promise<LogStatus> {
    await this.retention.truncate(name, beforeId);
    return this.status(name);
  }

  /** See Retention.commitReader. */
  commitReader(name: string, reader: string, nextId: number, holdsRetention: boolean): Promise<ReaderInfo> {
    return this.retention.commitReader(name, reader, nextId, holdsRetention);
  }

  reader(name: string, reader: string): Promise<ReaderStatus> {
    return this.retention.reader(name, reader);
  }

  readers(name: string): Promise<ReaderStatus[]> {
    return this.retention.readers(name);
  }

  deleteReader(name: string, reader: string): Promise<{ log: string; reader: string; deleted: true }> {
    return this.retention.deleteReader(name, reader);
  }

  // ---- leadership: takeover, handoff, shutdown, placement ----

  takeOver(name: string, expectedEpoch: number, unsafe = false, replacing?: string): Promise<RecoveryReport> {
    return this.takeover.takeOver(name, expectedEpoch, unsafe, replacing);
  }

  forceRecovery(name: string): Promise<RecoveryReport> {
    return this.takeover.forceRecovery(name);
  }

  handoff(name: string, to: string): Promise<LogStatus> {
    return this.handoffs.handoff(name, to);
  }

  /** Controlled shutdown: see Handoffs.drain. */
  drain(report: DrainReport): Promise<void> {
    return this.handoffs.drain(report);
  }

  // ---- peer operations ----

  handlePeerAppend(req: AppendRequest): AppendReply | Promise<AppendReply> {
    return this.follower.handleAppend(req);
  }

  /** A connection to the peer listener closed: a leader may have died (failure detection probes). */
  peerConnectionClosed(): void {
    this.failover.connectionClosed();
  }

  fence(name: string, epoch: number, peer: string | undefined): Promise<FenceAnswer> {
    return this.follower.fence(name, epoch, peer);
  }

  fetchRuns(name: string, fromId: number, toId: number): Promise<Buffer> {
    return this.follower.fetchRuns(name, fromId, toId);
  }

  peerTakeOver(name: string, request: PeerTakeover, peer: string | undefined): Promise<RecoveryReport> {
    return this.follower.takeOver(name, request, peer);
  }

  // ---- the shared view its parts act on (ReplicaContext) ----

  dir(): ClusterDirectory {
    if (!this.directory || this.stopping) throw new TernError('NOT_READY', `replica ${this.id} is ${this.stopping ? 'stopping' : 'starting'}`);
    return this.directory;
  }

  async requireLog(name: string): Promise<LogRecord> {
    const dir = this.dir();
    const record = dir.log(name) ?? (await dir.fetchLog(name));
    if (!record) throw new TernError('LOG_NOT_FOUND', `log ${name} does not exist`);
    return record;
  }

  localLeader(name: string): LeaderLog<Waiting> | undefined {
    const leader = this.logs.get(name)?.leader;
    return leader && !leader.isDeposed ? leader : undefined;
  }

  /** Highest committed id this replica knows: in its memory, or durable in object storage. */
  committedId(name: string): number {
    return Math.max(this.logs.get(name)?.replica.commitId ?? -1, this.directory?.flushedId(name) ?? -1);
  }

  /** The manifest moved: release what is durable (followers; the leader's flusher does its own), wake readers. */
  /** Drops everything this replica holds of a deleted log. */
  private forgetLog(name: string): void {
    const state = this.logs.get(name);
    // Streams end at once, also when the watch reports a delete this replica already carried out.
    if (!state) return this.tailReaders.wake(name, Number.MAX_SAFE_INTEGER);
    this.driver.stepDown(state);
    this.driver.flush();
    state.replica.buffer.releaseThrough(state.replica.buffer.lastId);
    this.logs.delete(name);
    this.tailReaders.wake(name, Number.MAX_SAFE_INTEGER);
  }

  private onFlushed(name: string): void {
    const state = this.logs.get(name);
    const flushedId = this.directory?.flushedId(name) ?? -1;
    if (state && releasesOnFlush(state.leader, state.takeover !== undefined)) state.replica.releaseThrough(flushedId);
    this.tailReaders.wake(name, this.committedId(name));
  }

  logState(name: string): LogState {
    let state = this.logs.get(name);
    if (!state) {
      const record = this.directory?.log(name);
      state = newLogState(name, this.memory, { flushedId: this.directory?.flushedId(name) ?? -1, epoch: record?.epoch ?? 0, replicas: record?.meta.replicas.length });
      this.logs.set(name, state);
    }
    return state;
  }


  /** The incarnation of each live replica of a log: who the new segment is written to. */
  incarnationsOf(replicas: readonly string[]): Record<string, string> {
    const dir = this.dir();
    return liveIncarnations(replicas, (id) => dir.incarnationOf(id));
  }


  private onDirectoryChange(name: string): void {
    const state = this.logs.get(name);
    const leader = state?.leader;
    if (state && !leader) this.quiescence.dropIfQuiesced(name, state);
    // A seal for quiescence under way ends the leadership itself, once etcd answers.
    if (!state || !leader || state.quiescing) return;
    const record = this.directory?.log(name);
    if (leadershipLost(record, leader.epoch)) {
      this.log.warn({ log: name, epoch: leader.epoch, etcdEpoch: record?.epoch }, 'leadership lost in etcd: stepping down');
      this.driver.stepDown(state);
    }
  }
}
