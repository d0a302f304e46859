/**
 * The replica's view of the cluster's truth in etcd: members, logs, epochs,
 * leaders and segments, loaded once and kept current by a watch, plus the
 * transactions that change it. Every change of a log's epoch, leader key or
 * segments is a transaction compared on the log's current epoch (and, for a
 * leader's own writes, on its leader key), so a stale writer fails in etcd as
 * well as at the replicas.
 *
 * Leases: the etcd3 client can miss a lost lease (its keep-alive stream may
 * stay open with the network cut), so the directory keeps its own deadline
 * from the last answered keep-alive and declares the lease lost when it
 * passes, then revokes it (etcd may still hold it) and registers again under
 * a new lease. Safety never depends on this: epochs checked by the replicas
 * and by etcd do that.
 */
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { Etcd3, type IKeyValue, type Lease, type Namespace, type Watcher } from 'etcd3';
import { keys, leaderKeyValue, type LeaderInfo, type LogMeta, type LogRecord, type ManifestEntry, type MemberInfo, type SegmentMeta } from './keys.js';

/** First wait before an etcd request that failed is tried again; it doubles up to `RETRY_MAX_DELAY_MS`. */
const RETRY_FIRST_DELAY_MS = 100;
const RETRY_MAX_DELAY_MS = 2000;
/** How long a replica whose lease was lost waits for etcd to revoke it before registering again anyway. */
const LEASE_REVOKE_TIMEOUT_MS = 2000;

export interface DirectoryOptions {
  endpoints: string[];
  cluster: string;
  self: MemberInfo;
  leaseTtlSeconds: number;
  /** Peer URLs to use instead of the advertised ones, by replica id (`--peer-routes`). */
  peerRoutes?: ReadonlyMap<string, string>;
}

export interface DirectoryEvents {
  /** A log's metadata, epoch, leader or segments changed. */
  log: [name: string];
  /** A replica joined or left. */
  members: [];
  /** A log was deleted. */
  deleted: [name: string];
  /** A log's manifest (flushed objects) or retention point changed. */
  flushed: [name: string];
  /** The membership lease is (or may be) gone: every leader key of this replica is gone with it. */
  leaseLost: [reason: string];
  /** This replica became, or stopped being, the coordinator. */
  coordinator: [isCoordinator: boolean];
}

export class ClusterDirectory extends EventEmitter<DirectoryEvents> {
  private readonly members = new Map<string, MemberInfo>();
  private readonly logs = new Map<string, LogMeta>();
  private readonly epochs = new Map<string, number>();
  private readonly leaders = new Map<string, LeaderInfo>();
  private readonly segments = new Map<string, Map<number, SegmentMeta>>();
  private readonly manifests = new Map<string, Map<number, ManifestEntry>>();
  private readonly retentions = new Map<string, number>();
  /** keys.flushedThrough per log: flushed ids whose manifest entries are gone (truncated). */
  private readonly flushedThrough = new Map<string, number>();
  private coordinatorId: string | undefined;
  /**
   * Lease the coordinator key is bound to. The key is this replica's only under
   * its current lease: one bound to a lease it lost is gone, or about to be.
   */
  private coordinatorLease: string | undefined;
  /** The current lease's id once granted. */
  private grantedLeaseId: string | undefined;
  private campaigning = false;
  /**
   * Revision of the newest change applied per key: a watch event older than a
   * change this replica made itself (and cached at once) must not undo it.
   */
  private readonly revisions = new Map<string, bigint>();
  private lease: Lease;
  private leaseId: Promise<string> | undefined;
  private lastKeepAliveAt = Date.now();
  private watchdog: NodeJS.Timeout | undefined;
  private watcher: Watcher | undefined;
  private reRegistering = false;
  private closed = false;
  /** Set by markDraining: a stopping replica never campaigns for coordinator again. */
  private draining = false;

  private constructor(
    private readonly client: Etcd3,
    private readonly ns: Namespace,
    private readonly options: DirectoryOptions,
  ) {
    super();
    this.lease = this.newLease();
  }

  get self(): MemberInfo {
    return this.options.self;
  }

  /** False from a lost lease until this replica is registered again under a new one. */
  get leaseUp(): boolean {
    return !this.reRegistering && !this.closed;
  }

  get isCoordinator(): boolean {
    return this.coordinatorId === this.self.id && this.grantedLeaseId !== undefined && this.coordinatorLease === this.grantedLeaseId;
  }

  /** Registers this replica under a lease and loads the cluster's state; resolves when both are done. */
  static async connect(options: DirectoryOptions): Promise<ClusterDirectory> {
    const client = new Etcd3({ hosts: options.endpoints, dialTimeout: 3000 });
    const ns = client.namespace(keys.prefix(options.cluster));
    const dir = new ClusterDirectory(client, ns, options);
    try {
      await ns.put(keys.node(options.self.id)).value(options.self.id);
      await dir.register();
      await dir.loadAndWatch();
      await dir.campaign();
      dir.watchdog = setInterval(() => dir.checkLease(), 250);
      return dir;
    } catch (err) {
      await dir.close();
      throw err;
    }
  }

  member(id: string): MemberInfo | undefined {
    return this.members.get(id);
  }

  private routed(member: MemberInfo): MemberInfo {
    const peerUrl = this.options.peerRoutes?.get(member.id);
    return peerUrl ? { ...member, peerUrl } : member;
  }

  logNames(): string[] {
    return [...this.logs.keys()].sort();
  }

  log(name: string): LogRecord | undefined {
    const meta = this.logs.get(name);
    if (!meta) return undefined;
    const segments = [...(this.segments.get(name)?.values() ?? [])].sort((a, b) => a.epoch - b.epoch);
    return { meta, epoch: this.epochs.get(name) ?? 0, leader: this.leaders.get(name), segments };
  }

  /** Flushed objects of a log, ascending by first id. */
  manifest(name: string): ManifestEntry[] {
    return [...(this.manifests.get(name)?.values() ?? [])].sort((a, b) => a.firstId - b.firstId);
  }

  /**
   * Highest id durable in object storage (-1 none): objects are recorded in id
   * order. Truncation forgets the manifest entries of its objects, so what they
   * held counts through the flushed-through mark: a log truncated up to its head
   * stays flushed up to its head.
   */
  flushedId(name: string): number {
    let max = this.flushedThrough.get(name) ?? -1;
    for (const e of this.manifests.get(name)?.values() ?? []) if (e.lastId > max) max = e.lastId;
    return max;
  }

  /** Ids below this are truncated (0: nothing is). */
  retainedFrom(name: string): number {
    return this.retentions.get(name) ?? 0;
  }

  /** Records a flushed object, only if this replica still leads the log at `epoch`. */
  async recordFlush(name: string, epoch: number, entry: ManifestEntry): Promise<boolean> {
    const key = keys.manifestEntry(name, entry.firstId);
    const res = await this.ifStillLeader(name, epoch).then(this.ns.put(key).value(JSON.stringify(entry))).commit();
    if (res.succeeded) {
      this.seen([key], res.header.revision);
      this.setManifest(name, entry);
    }
    return res.succeeded;
  }

  /**
   * Forgets objects that hold only truncated entries (after deleting them), as
   * the leader at `epoch`, and raises the flushed-through mark past them in the
   * same transaction, so flushedId never falls back. Compared on the mark as
   * this replica knows it: a stale view fails (and the next pass retries) rather
   * than lowering it.
   */
  async forgetFlushed(name: string, epoch: number, entries: readonly ManifestEntry[]): Promise<boolean> {
    if (entries.length === 0) return true;
    const markKey = keys.flushedThrough(name);
    const current = this.flushedThrough.get(name);
    const mark = Math.max(current ?? -1, ...entries.map((e) => e.lastId));
    const deletes = entries.map((e) => this.ns.delete().key(keys.manifestEntry(name, e.firstId)));
    const guard = this.ifStillLeader(name, epoch);
    const unmoved = current === undefined ? guard.and(markKey, 'Create', '==', 0) : guard.and(markKey, 'Value', '==', String(current));
    const res = await unmoved.then(...deletes, this.ns.put(markKey).value(String(mark))).commit();
    if (res.succeeded) {
      this.seen([markKey], res.header.revision);
      this.flushedThrough.set(name, mark);
      for (const e of entries) this.manifests.get(name)?.delete(e.firstId);
    }
    return res.succeeded;
  }

  /** Raises the retention point to `beforeId` (never lowers it). */
  async truncateBefore(name: string, beforeId: number): Promise<number> {
    for (;;) {
      const current = this.retainedFrom(name);
      if (beforeId <= current) return current;
      const key = keys.retention(name);
      const cmp = current === 0 && !(await this.ns.get(key).string()) ? this.ns.if(key, 'Create', '==', 0) : this.ns.if(key, 'Value', '==', String(current));
      const res = await cmp.then(this.ns.put(key).value(String(beforeId))).commit();
      if (res.succeeded) {
        this.seen([key], res.header.revision);
        this.retentions.set(name, beforeId);
        return beforeId;
      }
      await this.fetchLog(name);
    }
  }

  /** The log as etcd has it now, bypassing the watch (which may lag a freshly created log by a few ms). */
  async fetchLog(name: string): Promise<LogRecord | undefined> {
    const res = await this.ns
      .if(keys.log(name), 'Create', '>', 0)
      .then(
        this.ns.get(keys.log(name)),
        this.ns.get(keys.epoch(name)),
        this.ns.get(keys.leader(name)),
        this.ns.get(keys.retention(name)),
        this.ns.get(keys.flushedThrough(name)),
        this.ns.getAll().prefix(keys.segments(name)),
        this.ns.getAll().prefix(`manifest/${name}/`),
      )
      .commit();
    if (!res.succeeded) return undefined;
    for (const r of res.responses) for (const kv of r.response_range?.kvs ?? []) this.apply('put', kv);
    // A leader key etcd no longer has is gone, whatever the watch said.
    if (!res.responses[2]?.response_range?.kvs?.length && BigInt(res.header.revision) >= (this.revisions.get(keys.leader(name)) ?? 0n)) this.leaders.delete(name);
    return this.log(name);
  }

  /**
   * Creates the log's metadata at epoch 0 (no leader yet) unless it exists.
   * The replica set is every replica that ever joined, up to `replicas`.
   */
  async createLog(name: string, replicas: number): Promise<{ created: boolean }> {
    // Asked of etcd, not the watch: a replica that joined a moment ago may not have reached it yet.
    const nodeIds = (await this.ns.getAll().prefix('nodes/').keys()).map((k) => k.slice('nodes/'.length)).sort();
    if (nodeIds.length < replicas) throw new Error(`only ${nodeIds.length} of ${replicas} replicas have joined the cluster`);
    const meta: LogMeta = { name, uid: randomBytes(8).toString('hex'), replicas: nodeIds.slice(0, replicas), createdAt: new Date().toISOString() };
    // A log created again after a delete keeps counting epochs from where it was, so
    // nothing a leader of the old log still sends can pass a fence of the new one.
    const epoch = await this.ns.get(keys.epoch(name)).string();
    const fresh = this.ns.if(keys.log(name), 'Create', '==', 0);
    const res = await (epoch === null ? fresh.and(keys.epoch(name), 'Create', '==', 0) : fresh.and(keys.epoch(name), 'Value', '==', epoch))
      .then(this.ns.put(keys.log(name)).value(JSON.stringify(meta)), ...(epoch === null ? [this.ns.put(keys.epoch(name)).value('0')] : []))
      .commit();
    if (res.succeeded) this.logs.set(name, meta), this.epochs.set(name, Number(epoch ?? 0));
    return { created: res.succeeded };
  }

  /**
   * Deletes a log's metadata, leader, segments, manifest, retention and
   * flushed-through mark (its epoch stays, see createLog). Answers the metadata
   * it deleted (undefined: no such log), read in the same transaction, so the
   * caller sweeps the objects of exactly that creation.
   */
  async deleteLog(name: string): Promise<LogMeta | undefined> {
    const res = await this.ns
      .if(keys.log(name), 'Create', '>', 0)
      .then(
        this.ns.get(keys.log(name)),
        this.ns.delete().key(keys.log(name)),
        this.ns.delete().key(keys.leader(name)),
        this.ns.delete().key(keys.retention(name)),
        this.ns.delete().key(keys.flushedThrough(name)),
        this.ns.delete().prefix(keys.segments(name)),
        this.ns.delete().prefix(`manifest/${name}/`),
      )
      .commit();
    if (!res.succeeded) return undefined;
    this.forget(name);
    return JSON.parse(res.responses[0]!.response_range!.kvs[0]!.value.toString()) as LogMeta;
  }

  /**
   * Makes this replica the log's leader: raises the epoch from `expectedEpoch`
   * by one and binds the leader key to this replica's lease, atomically. Fails
   * (undefined) if the epoch moved or another leader holds the key, unless it
   * is the one being replaced (`replacing`: its exact leader value, given by a
   * leader handing off, so no other replica can slip in between).
   */
  async claimLeadership(name: string, expectedEpoch: number, replacing?: string): Promise<number | undefined> {
    const epoch = expectedEpoch + 1;
    const leader = this.leaderValue(epoch);
    const epochIs = this.ns.if(keys.epoch(name), 'Value', '==', String(expectedEpoch));
    const res = await (replacing === undefined ? epochIs.and(keys.leader(name), 'Create', '==', 0) : epochIs.and(keys.leader(name), 'Value', '==', replacing))
      .then(this.ns.put(keys.epoch(name)).value(String(epoch)), this.ns.put(keys.leader(name)).value(leader).lease(await this.currentLeaseId()))
      .commit();
    if (!res.succeeded) return undefined;
    this.seen([keys.epoch(name), keys.leader(name)], res.header.revision);
    this.epochs.set(name, epoch);
    this.leaders.set(name, JSON.parse(leader) as LeaderInfo);
    return epoch;
  }

  /**
   * The end of a recovery: seals the segments it recovered (with the last id
   * kept) and opens this epoch's segment, only if this replica still leads
   * the log at `epoch`.
   */
  async openSegment(name: string, epoch: number, seals: readonly SegmentMeta[], open: SegmentMeta): Promise<boolean> {
    const puts = [...seals, open].map((seg) => this.ns.put(keys.segment(name, seg.epoch)).value(JSON.stringify(seg)));
    const res = await this.ifStillLeader(name, epoch).then(...puts).commit();
    if (res.succeeded) {
      this.seen([...seals, open].map((seg) => keys.segment(name, seg.epoch)), res.header.revision);
      for (const seg of [...seals, open]) this.setSegment(name, seg);
    }
    return res.succeeded;
  }

  /** Rewrites the open segment's replica incarnations (a restarted follower that caught up counts again). */
  async updateSegment(name: string, epoch: number, segment: SegmentMeta): Promise<boolean> {
    const res = await this.ifStillLeader(name, epoch).then(this.ns.put(keys.segment(name, segment.epoch)).value(JSON.stringify(segment))).commit();
    if (res.succeeded) {
      this.seen([keys.segment(name, segment.epoch)], res.header.revision);
      this.setSegment(name, segment);
    }
    return res.succeeded;
  }

  /**
   * The end of a controlled shutdown, in one transaction compared on the
   * epoch and this replica's leader key: seals the open segment as closed
   * clean and gives up the leader key. The caller has flushed every committed
   * id up to the seal, so the next leader recovers without fence answers.
   */
  async closeSegmentClean(name: string, epoch: number, segment: SegmentMeta): Promise<boolean> {
    const sealed: SegmentMeta = { ...segment, closedClean: true };
    const key = keys.segment(name, segment.epoch);
    const res = await this.ifStillLeader(name, epoch).then(this.ns.put(key).value(JSON.stringify(sealed)), this.ns.delete().key(keys.leader(name))).commit();
    if (res.succeeded) {
      this.seen([key, keys.leader(name)], res.header.revision);
      this.setSegment(name, sealed);
      this.leaders.delete(name);
    }
    return res.succeeded;
  }

  /**
   * Tells the cluster this replica is stopping: the coordinator and handoffs
   * stop giving it leaderships, and it resigns as coordinator so that a
   * replica that stays assigns the logs it closes.
   */
  async markDraining(): Promise<void> {
    this.draining = true;
    const self: MemberInfo = { ...this.self, draining: true };
    await this.ns
      .if(keys.coordinator(), 'Value', '==', this.self.id)
      .then(this.ns.delete().key(keys.coordinator()))
      .commit();
    await this.ns.put(keys.member(self.id)).value(JSON.stringify(self)).lease(await this.currentLeaseId());
    this.members.set(self.id, this.routed(self));
  }

  /** Gives up the leader key of `epoch` (handoff); the epoch stays, so the next leader raises it. */
  async releaseLeadership(name: string, epoch: number): Promise<boolean> {
    const res = await this.ifStillLeader(name, epoch).then(this.ns.delete().key(keys.leader(name))).commit();
    if (res.succeeded) {
      this.seen([keys.leader(name)], res.header.revision);
      this.leaders.delete(name);
    }
    return res.succeeded;
  }

  /**
   * Gives up the leader key of `epoch` after a failed recovery or handoff,
   * trying again (with backoff) while etcd fails. The coordinator only assigns
   * logs without a leader key, so a release that failed once and was dropped
   * left the log without a working leader until this replica's lease ended.
   * Retrying here, where the failure is seen, is enough: the delete is compared
   * on the epoch and this replica's exact leader value, so a late attempt can
   * never remove a newer leader's key, and if this process dies meanwhile the
   * key goes with its lease. Stops once etcd answers: true if the key was
   * deleted, false if it was provably no longer this leader's (the epoch moved,
   * another replica holds the key, or it went with the lease); or when the
   * directory closes (which revokes the lease, and the key with it).
   */
  async releaseLeadershipUntilDone(name: string, epoch: number): Promise<boolean> {
    let released = false;
    await this.retry(async () => {
      released = await this.releaseLeadership(name, epoch);
      return true;
    });
    return released;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.watchdog);
    await this.watcher?.cancel().catch(() => undefined);
    // Revoking tells the others at once that this replica and its leader keys are gone.
    await this.lease.revoke().catch(() => undefined);
    this.client.close();
  }

  private ifStillLeader(name: string, epoch: number) {
    return this.ns.if(keys.epoch(name), 'Value', '==', String(epoch)).and(keys.leader(name), 'Value', '==', this.leaderValue(epoch));
  }

  /** The exact value of this replica's leader key for `epoch`. */
  leaderValue(epoch: number): string {
    return leaderKeyValue({ id: this.self.id, epoch, incarnation: this.self.incarnation });
  }

  private newLease(): Lease {
    const lease = this.ns.lease(this.options.leaseTtlSeconds, { autoKeepAlive: true });
    lease.on('keepaliveSucceeded', () => {
      if (lease === this.lease) this.lastKeepAliveAt = Date.now();
    });
    lease.on('lost', (err) => {
      if (lease === this.lease) this.leaseLost(`etcd says the lease is lost: ${err.message}`);
    });
    return lease;
  }

  private currentLeaseId(): Promise<string> {
    const lease = this.lease;
    this.leaseId ??= lease.grant().then((id) => {
      if (lease === this.lease) this.grantedLeaseId = id;
      return id;
    });
    return this.leaseId;
  }

  private async register(): Promise<void> {
    await this.currentLeaseId();
    this.lastKeepAliveAt = Date.now();
    await this.lease.put(keys.member(this.self.id)).value(JSON.stringify(this.self));
  }

  private checkLease(): void {
    if (Date.now() - this.lastKeepAliveAt > this.options.leaseTtlSeconds * 1000) {
      this.leaseLost(`no keep-alive answered for ${this.options.leaseTtlSeconds} s`);
    }
  }

  /** Steps everything down, then registers again under a new lease until it works. */
  private leaseLost(reason: string): void {
    if (this.reRegistering || this.closed) return;
    this.reRegistering = true;
    this.emit('leaseLost', reason);
    const wasCoordinator = this.isCoordinator;
    this.grantedLeaseId = undefined;
    if (wasCoordinator) this.emit('coordinator', false);
    // Revoke rather than let it expire: etcd may still hold the old lease (only its
    // answers were lost), and with it this replica's member, leader and coordinator
    // keys, which would keep its logs from being reassigned for another TTL. Best
    // effort and bounded: with etcd unreachable the lease expires on its own.
    const old = this.lease;
    void (async () => {
      await this.revokeWithin(old, LEASE_REVOKE_TIMEOUT_MS);
      await this.retry(async () => {
        this.lease = this.newLease();
        this.leaseId = undefined;
        try {
          await this.register();
          return true;
        } catch (err) {
          await this.revokeWithin(this.lease, LEASE_REVOKE_TIMEOUT_MS);
          throw err;
        }
      });
      this.reRegistering = false;
      this.campaignUntilDone();
    })();
  }

  /** Revokes `lease` (the keys bound to it go at once), waiting at most `timeoutMs` for etcd. */
  private async revokeWithin(lease: Lease, timeoutMs: number): Promise<void> {
    const timeout = new AbortController();
    await Promise.race([lease.revoke().catch(() => undefined), sleep(timeoutMs, undefined, { signal: timeout.signal }).catch(() => undefined)]);
    timeout.abort();
  }

  /** Runs `attempt` until it returns true, backing off after each false or throw, while `keepGoing()`; resolves whether one did. */
  private async retry(attempt: () => Promise<boolean>, keepGoing = () => !this.closed): Promise<boolean> {
    for (let delay = RETRY_FIRST_DELAY_MS; keepGoing(); delay = Math.min(delay * 2, RETRY_MAX_DELAY_MS)) {
      try {
        if (await attempt()) return true;
      } catch {
        // etcd failed or could not be reached: try again.
      }
      await sleep(delay);
    }
    return false;
  }

  /**
   * Campaigns until etcd answers an attempt (whoever wins), backing off while
   * it fails: a campaign error dropped once could leave the cluster without a
   * coordinator, and leaderless logs unassigned, until the next change of the
   * key. One loop at a time; it stops while the lease is being replaced
   * (re-registering campaigns when done), once this replica drains (it never
   * campaigns again) and once the directory closes.
   */
  private campaignUntilDone(): void {
    if (this.campaigning) return;
    this.campaigning = true;
    void this.retry(
      async () => {
        await this.campaign();
        // The key went again between the attempt and the read: campaign again.
        return this.coordinatorId !== undefined;
      },
      () => !this.closed && !this.reRegistering && !this.draining,
    ).finally(() => (this.campaigning = false));
  }

  /** Tries to become the coordinator (a leased key); called again whenever the key disappears. */
  private async campaign(): Promise<void> {
    if (this.closed || this.draining) return;
    await this.ns
      .if(keys.coordinator(), 'Create', '==', 0)
      .then(this.ns.put(keys.coordinator()).value(this.self.id).lease(await this.currentLeaseId()))
      .commit();
    const [current] = (await this.ns.get(keys.coordinator()).exec()).kvs;
    this.setCoordinator(current?.value.toString(), current?.lease);
  }

  private setCoordinator(id: string | undefined, lease: string | undefined): void {
    const was = this.isCoordinator;
    this.coordinatorId = id;
    this.coordinatorLease = id === undefined ? undefined : lease;
    if (was !== this.isCoordinator) this.emit('coordinator', this.isCoordinator);
    if (id === undefined && !this.reRegistering) this.campaignUntilDone();
  }

  /**
   * Loads every key at one revision, then watches from the next. The watch
   * either delivers every change after that snapshot, in order, or is replaced
   * by a new snapshot and watch: on an error (etcd canceled it, for example
   * after compacting past its revision; the etcd3 client then gives it up) and
   * on a disconnection (the client resumes from the last revision it was told
   * of, which can skip events it had not received yet).
   */
  private async loadAndWatch(): Promise<void> {
    const res = await this.ns.getAll().exec();
    const revision = BigInt(res.header.revision);
    this.reconcile(res.kvs, revision);
    const watcher = this.ns.watch().prefix('').startRevision(String(revision + 1n)).watcher();
    watcher.on('put', (kv) => this.apply('put', kv));
    watcher.on('delete', (kv) => this.apply('delete', kv));
    try {
      await new Promise<void>((resolve, reject) => {
        const settle = (err?: Error) => {
          watcher.off('connected', connected).off('error', settle).off('disconnected', settle);
          if (err) reject(err);
          else resolve();
        };
        const connected = () => settle();
        watcher.on('connected', connected).on('error', settle).on('disconnected', settle);
      });
    } catch (err) {
      this.dropWatcher(watcher);
      throw err;
    }
    if (this.closed) return this.dropWatcher(watcher);
    watcher.on('error', () => this.rewatch(watcher));
    watcher.on('disconnected', () => this.rewatch(watcher));
    this.watcher = watcher;
  }

  /** Replaces a watch that failed by a new snapshot and watch, trying again while etcd fails. */
  private rewatch(watcher: Watcher): void {
    if (watcher !== this.watcher) return;
    this.watcher = undefined;
    this.dropWatcher(watcher);
    void this.retry(async () => {
      await this.loadAndWatch();
      return true;
    });
  }

  /** Stops applying `watcher`'s events and detaches it, so the client does not resume it. */
  private dropWatcher(watcher: Watcher): void {
    for (const event of ['put', 'delete', 'error', 'disconnected'] as const) watcher.removeAllListeners(event);
    // A watcher's error with no listener would be thrown.
    watcher.on('error', () => undefined);
    void watcher.cancel().catch(() => undefined);
  }

  /**
   * Brings the view to a snapshot of every key at `revision`, applying (with
   * their events) only what differs: keys the view holds that are gone, or were
   * deleted and created again since it saw them, then keys new or changed.
   */
  private reconcile(kvs: IKeyValue[], revision: bigint): void {
    const present = new Map(kvs.map((kv) => [kv.key.toString(), kv]));
    const deletes: { key: string; revision: bigint }[] = [];
    for (const key of this.heldKeys()) {
      const kv = present.get(key);
      const seen = this.revisions.get(key);
      if (!kv) deletes.push({ key, revision });
      else if (seen !== undefined && BigInt(kv.create_revision) > seen) deletes.push({ key, revision: BigInt(kv.create_revision) - 1n });
    }
    // A log's key first, as etcd orders a log's delete: the log is forgotten (and said deleted) before its other keys go.
    deletes.sort((a, b) => Number(b.key.startsWith('logs/')) - Number(a.key.startsWith('logs/')));
    for (const d of deletes) this.apply('delete', { key: Buffer.from(d.key), value: Buffer.alloc(0), mod_revision: String(d.revision), create_revision: '0', version: '0', lease: '0' });
    for (const kv of [...kvs].sort((a, b) => Number(BigInt(a.mod_revision) - BigInt(b.mod_revision)))) {
      if (this.revisions.get(kv.key.toString()) !== BigInt(kv.mod_revision)) this.apply('put', kv);
    }
  }

  /** The keys behind the view (permanent node and epoch keys aside, which are never deleted). */
  private heldKeys(): string[] {
    const held = [...this.members.keys()].map(keys.member);
    for (const name of this.logs.keys()) held.push(keys.log(name));
    for (const name of this.leaders.keys()) held.push(keys.leader(name));
    for (const name of this.retentions.keys()) held.push(keys.retention(name));
    for (const [name, segs] of this.segments) for (const epoch of segs.keys()) held.push(keys.segment(name, epoch));
    for (const [name, entries] of this.manifests) for (const firstId of entries.keys()) held.push(keys.manifestEntry(name, firstId));
    if (this.coordinatorId !== undefined) held.push(keys.coordinator());
    return held;
  }

  private forget(name: string): void {
    for (const map of [this.logs, this.leaders, this.segments, this.manifests, this.retentions, this.flushedThrough]) map.delete(name);
  }

  private setManifest(name: string, entry: ManifestEntry): void {
    let m = this.manifests.get(name);
    if (!m) this.manifests.set(name, (m = new Map()));
    m.set(entry.firstId, entry);
  }

  private setSegment(name: string, seg: SegmentMeta): void {
    let segs = this.segments.get(name);
    if (!segs) this.segments.set(name, (segs = new Map()));
    segs.set(seg.epoch, seg);
  }

  private seen(keyList: string[], revision: string): void {
    for (const key of keyList) this.revisions.set(key, BigInt(revision));
  }

  private apply(op: 'put' | 'delete', kv: IKeyValue): void {
    const key = kv.key.toString();
    const revision = BigInt(kv.mod_revision || '0');
    if (revision > 0n && revision < (this.revisions.get(key) ?? 0n)) return;
    if (revision > 0n) this.revisions.set(key, revision);
    const slash = key.indexOf('/');
    const kind = slash < 0 ? key : key.slice(0, slash);
    const id = key.slice(slash + 1);
    const value = kv.value.toString();
    switch (kind) {
      case 'coordinator':
        this.setCoordinator(op === 'put' ? value : undefined, kv.lease);
        return;
      case 'members':
        if (op === 'put') this.members.set(id, this.routed(JSON.parse(value) as MemberInfo));
        else this.members.delete(id);
        this.emit('members');
        return;
      case 'logs':
        if (op === 'put') {
          this.logs.set(id, JSON.parse(value) as LogMeta);
          break;
        }
        this.forget(id);
        this.emit('deleted', id);
        return;
      case 'epochs':
        if (op === 'put') this.epochs.set(id, Math.max(Number(value), this.epochs.get(id) ?? 0));
        break;
      case 'leaders':
        if (op === 'put') this.leaders.set(id, JSON.parse(value) as LeaderInfo);
        else this.leaders.delete(id);
        break;
      case 'manifest': {
        const log = id.slice(0, id.lastIndexOf('/'));
        if (op === 'put') this.setManifest(log, JSON.parse(value) as ManifestEntry);
        else this.manifests.get(log)?.delete(Number(id.slice(id.lastIndexOf('/') + 1)));
        this.emit('flushed', log);
        return;
      }
      case 'retention':
        if (op === 'put') this.retentions.set(id, Math.max(Number(value), this.retentions.get(id) ?? 0));
        this.emit('flushed', id);
        return;
      case 'flushed':
        if (op === 'put') this.flushedThrough.set(id, Math.max(Number(value), this.flushedThrough.get(id) ?? -1));
        this.emit('flushed', id);
        return;
      case 'segments': {
        const log = id.slice(0, id.lastIndexOf('/'));
        if (op === 'put') this.setSegment(log, JSON.parse(value) as SegmentMeta);
        this.emit('log', log);
        return;
      }
      default:
        return;
    }
    this.emit('log', id);
  }
}
