/**
 * The replica's view of the cluster's truth in etcd: members, logs, epochs,
 * leaders and segments, loaded once and kept current by a watch, plus the
 * transactions that change it. `ClusterDirectory` is the one entry point the
 * rest of Tern uses; it composes the parts, each in its own module:
 *   session.ts               the lease, registration, keep-alive deadline and lease loss
 *   coordinator-election.ts  the campaign for the coordinator key and its retries
 *   cluster-view.ts          the cached view and how keys change it
 *   view-watch.ts            the snapshot and watch that keep the view current
 *   log-transactions.ts      every compare-and-set transaction on a log
 *   context.ts               what the parts share (client, events, closing, retries)
 */
import { EventEmitter } from 'node:events';
import { Etcd3, type Namespace } from 'etcd3';
import { ClusterView } from './cluster-view.js';
import type { DirectoryContext, DirectoryEvents } from './context.js';
import { CoordinatorElection } from './coordinator-election.js';
import { keys, type LeaderInfo, type LogMeta, type LogRecord, type ManifestEntry, type MemberInfo, type ReaderInfo, type ReaderRecord, type RetentionPolicy, type SegmentMeta } from './keys.js';
import { LogTransactions } from './log-transactions.js';
import { Session } from './session.js';
import { ViewWatch } from './view-watch.js';

export type { DirectoryEvents } from './context.js';

/**
 * How long the etcd client waits to connect to an endpoint: a replica started
 * before etcd, or cut off from it, fails the request (and tries again) rather
 * than hanging on it.
 */
const ETCD_DIAL_TIMEOUT_MS = 3000;
/**
 * Largest etcd answer taken. The view loads every key of the cluster in one
 * range (one revision: a consistent snapshot), about 1.2 KB a log: gRPC's
 * default of 4 MiB stopped a replica holding 10,000 logs from starting at all.
 */
const ETCD_MAX_ANSWER_BYTES = 1024 * 1024 * 1024;

/** TLS and authentication to etcd, as the etcd3 client takes them. */
export interface EtcdCredentials {
  credentials?: { rootCertificate: Buffer; certChain?: Buffer; privateKey?: Buffer };
  auth?: { username: string; password: string };
}

export interface DirectoryOptions {
  endpoints: string[];
  /** TLS and authentication to etcd, when configured (src/replica/secrets.ts). */
  credentials?: EtcdCredentials;
  cluster: string;
  self: MemberInfo;
  leaseTtlSeconds: number;
  /** Peer URLs to use instead of the advertised ones, by replica id (`--peer-routes`). */
  peerRoutes?: ReadonlyMap<string, string>;
}

export class ClusterDirectory extends EventEmitter<DirectoryEvents> {
  private closed = false;
  private readonly session: Session;
  private readonly election: CoordinatorElection;
  private readonly view: ClusterView;
  private readonly watch: ViewWatch;
  private readonly transactions: LogTransactions;

  private constructor(
    private readonly client: Etcd3,
    ns: Namespace,
    private readonly options: DirectoryOptions,
  ) {
    super();
    const ctx: DirectoryContext = { ns, self: options.self, emit: this.emit.bind(this), closed: () => this.closed };
    this.session = new Session(ctx, options.leaseTtlSeconds, {
      granted: (leaseId) => this.election.leaseGranted(leaseId),
      lost: (reason) => {
        this.emit('leaseLost', reason);
        this.election.leaseLost();
      },
      registeredAgain: () => this.election.campaignUntilDone(),
    });
    this.election = new CoordinatorElection(ctx, this.session);
    this.view = new ClusterView(ctx, this.election, options.peerRoutes);
    this.watch = new ViewWatch(ctx, this.view);
    this.transactions = new LogTransactions(ctx, this.session, this.view);
  }

  get self(): MemberInfo {
    return this.options.self;
  }

  /** False from a lost lease until this replica is registered again under a new one. */
  get leaseUp(): boolean {
    return this.session.up;
  }

  get isCoordinator(): boolean {
    return this.election.isCoordinator;
  }

  /** The replica holding the coordinator key, as far as the watch knows. */
  get coordinator(): string | undefined {
    return this.election.holder;
  }

  /** The coordinator key's holder as etcd has it now, bypassing the watch. */
  fetchCoordinator(): Promise<string | undefined> {
    return this.election.read();
  }

  /** Registers this replica under a lease and loads the cluster's state; resolves when both are done. */
  static async connect(options: DirectoryOptions): Promise<ClusterDirectory> {
    const client = new Etcd3({ hosts: options.endpoints, dialTimeout: ETCD_DIAL_TIMEOUT_MS, grpcOptions: { 'grpc.max_receive_message_length': ETCD_MAX_ANSWER_BYTES }, ...options.credentials });
    const dir = new ClusterDirectory(client, client.namespace(keys.prefix(options.cluster)), options);
    try {
      await dir.session.join();
      await dir.watch.start();
      await dir.election.campaign();
      dir.session.startWatchdog();
      return dir;
    } catch (err) {
      await dir.close();
      throw err;
    }
  }

  member(id: string): MemberInfo | undefined {
    return this.view.member(id);
  }

  /**
   * The incarnation a new segment records for replica `id`: this process's own
   * whatever the view says, any other's from its member key. After a pause
   * long enough to lose the etcd lease, this replica's member key is missing
   * until it registers again; a segment it opened meanwhile without itself
   * would never count it (only followers are added back as they catch up),
   * and the log would stay short of a replica for good.
   */
  incarnationOf(id: string): string | undefined {
    return id === this.self.id ? this.self.incarnation : this.view.member(id)?.incarnation;
  }

  logNames(): readonly string[] {
    return this.view.logNames();
  }

  /** See ClusterView.awakeLogNames. */
  awakeLogNames(): readonly string[] {
    return this.view.awakeLogNames();
  }

  /** True when etcd shows the log quiesced (keys.ts isQuiesced). */
  isQuiesced(name: string): boolean {
    return this.view.isQuiesced(name);
  }

  /** Logs etcd shows quiesced. */
  quiescedCount(): number {
    return this.view.quiescedCount();
  }

  hasLog(name: string): boolean {
    return this.view.hasLog(name);
  }

  leaderOf(name: string): LeaderInfo | undefined {
    return this.view.leaderOf(name);
  }

  /** The log's metadata, without building its record. */
  meta(name: string): LogMeta | undefined {
    return this.view.meta(name);
  }

  log(name: string): LogRecord | undefined {
    return this.view.log(name);
  }

  /** Flushed objects of a log, ascending by first id. */
  manifest(name: string): ManifestEntry[] {
    return this.view.manifest(name);
  }

  /** Highest id durable in object storage (-1 none); see ClusterView.flushedId. */
  flushedId(name: string): number {
    return this.view.flushedId(name);
  }

  /** Ids below this are truncated (0: nothing is). */
  retainedFrom(name: string): number {
    return this.view.retainedFrom(name);
  }

  /** See ClusterView.lastTimeMs. */
  lastTimeMs(name: string): number {
    return this.view.lastTimeMs(name);
  }

  /** The log's named readers, sorted by name. */
  readers(name: string): ReaderInfo[] {
    return this.view.readers(name);
  }

  /** The logs that have named readers. */
  logsWithReaders(): IterableIterator<string> {
    return this.view.logsWithReaders();
  }

  reader(name: string, reader: string): ReaderInfo | undefined {
    return this.view.reader(name, reader);
  }

  /** The log as etcd has it now, bypassing the watch (which may lag a freshly created log by a few ms). */
  fetchLog(name: string): Promise<LogRecord | undefined> {
    return this.view.fetchLog(name);
  }

  /** Records flushed objects (consecutive, ascending) in one transaction, only if this replica still leads the log at `epoch`. */
  recordFlush(name: string, epoch: number, entries: readonly ManifestEntry[]): Promise<boolean> {
    return this.transactions.recordFlush(name, epoch, entries);
  }

  /** Forgets objects holding only truncated entries and raises the flushed-through mark; see LogTransactions.forgetFlushed. */
  forgetFlushed(name: string, epoch: number, entries: readonly ManifestEntry[]): Promise<boolean> {
    return this.transactions.forgetFlushed(name, epoch, entries);
  }

  /** Raises the retention point to what `pointFor` answers for the log's readers (never lowers it); see LogTransactions.truncateBefore. */
  truncateBefore(name: string, pointFor: (readers: readonly ReaderInfo[]) => number): Promise<number> {
    return this.transactions.truncateBefore(name, pointFor);
  }

  /** Replaces the log's retention policy ({} clears it); false when the log does not exist. */
  setRetentionPolicy(name: string, retention: RetentionPolicy): Promise<boolean> {
    return this.transactions.setRetentionPolicy(name, retention);
  }

  /** Commits a named reader's position; false when the log does not exist. */
  putReader(name: string, reader: string, record: ReaderRecord): Promise<boolean> {
    return this.transactions.putReader(name, reader, record);
  }

  /** Deletes a named reader; false when there was none. */
  deleteReader(name: string, reader: string): Promise<boolean> {
    return this.transactions.deleteReader(name, reader);
  }

  /** Creates the log at epoch 0 unless it exists; see LogTransactions.createLog. */
  createLog(name: string, replicas: number, retention?: RetentionPolicy): Promise<{ created: boolean }> {
    return this.transactions.createLog(name, replicas, retention);
  }

  /** Deletes the log (its epoch stays) and answers the metadata deleted; see LogTransactions.deleteLog. */
  deleteLog(name: string): Promise<LogMeta | undefined> {
    return this.transactions.deleteLog(name);
  }

  /** Makes this replica the log's leader at `expectedEpoch + 1`; see LogTransactions.claimLeadership. */
  claimLeadership(name: string, expectedEpoch: number, replacing?: string): Promise<number | undefined> {
    return this.transactions.claimLeadership(name, expectedEpoch, replacing);
  }

  /** Seals the recovered segments and opens this epoch's; see LogTransactions.openSegment. */
  openSegment(name: string, epoch: number, seals: readonly SegmentMeta[], open: SegmentMeta): Promise<boolean> {
    return this.transactions.openSegment(name, epoch, seals, open);
  }

  /** Rewrites the open segment's replica incarnations (a restarted follower that caught up counts again). */
  updateSegment(name: string, epoch: number, segment: SegmentMeta): Promise<boolean> {
    return this.transactions.updateSegment(name, epoch, segment);
  }

  /** Raises the epoch of a quiesced log, takes its leader key and opens its next segment; see LogTransactions.reopen. */
  reopen(name: string, expectedEpoch: number, open: SegmentMeta, forget: readonly number[]): Promise<number | undefined> {
    return this.transactions.reopen(name, expectedEpoch, open, forget);
  }

  /** Seals the open segment closed clean and gives up the leader key; see LogTransactions.closeSegmentClean. */
  closeSegmentClean(name: string, epoch: number, segment: SegmentMeta, quiesced = false): Promise<boolean> {
    return this.transactions.closeSegmentClean(name, epoch, segment, quiesced);
  }

  /** Gives up the leader key of `epoch` (handoff); the epoch stays, so the next leader raises it. */
  releaseLeadership(name: string, epoch: number): Promise<boolean> {
    return this.transactions.releaseLeadership(name, epoch);
  }

  /** releaseLeadership, tried again while etcd fails; see LogTransactions.releaseLeadershipUntilDone. */
  releaseLeadershipUntilDone(name: string, epoch: number): Promise<boolean> {
    return this.transactions.releaseLeadershipUntilDone(name, epoch);
  }

  /** The exact value of this replica's leader key for `epoch`. */
  leaderValue(epoch: number): string {
    return this.transactions.leaderValue(epoch);
  }

  /**
   * Tells the cluster this replica is stopping: the coordinator and handoffs
   * stop giving it leaderships, and it resigns as coordinator so that a
   * replica that stays assigns the logs it closes.
   */
  async markDraining(): Promise<void> {
    await this.election.resign();
    const self: MemberInfo = { ...this.self, draining: true };
    await this.session.putMember(self);
    this.view.setMember(self);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.watch.close();
    await this.session.close();
    this.client.close();
  }
}
