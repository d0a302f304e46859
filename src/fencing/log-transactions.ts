/**
 * The transactions that change a log in etcd: create and delete it, claim
 * and release its leadership, open, update and close its segments, record
 * and forget its flushed objects, raise its retention point, set its
 * retention policy, and commit and delete its named readers. Every change
 * of a log's epoch, leader key or segments is compared on the log's current
 * epoch (and, for a leader's own writes, on its leader key), so a stale
 * writer fails in etcd as well as at the replicas. What a transaction wrote
 * is cached in the view at once.
 */
import { randomBytes } from 'node:crypto';
import { CompareResult, CompareTarget, Range, type ComparatorBuilder, type ICompare, type Namespace } from 'etcd3';
import type { ClusterView } from './cluster-view.js';
import { retryWithBackoff, type DirectoryContext } from './context.js';
import { keys, leaderKeyValue, storedPolicy, type LeaderInfo, type LogMeta, type ManifestEntry, type ReaderInfo, type ReaderRecord, type RetentionPolicy, type SegmentMeta } from './keys.js';
import type { Session } from './session.js';

export class LogTransactions {
  constructor(
    private readonly ctx: DirectoryContext,
    private readonly session: Session,
    private readonly view: ClusterView,
  ) {}

  /** The exact value of this replica's leader key for `epoch`. */
  leaderValue(epoch: number): string {
    const { self } = this.ctx;
    return leaderKeyValue({ id: self.id, epoch, incarnation: self.incarnation });
  }

  /**
   * Creates the log's metadata at epoch 0 (no leader yet) unless it exists.
   * The replica set is every replica that ever joined, up to `replicas`.
   * `retention` is the new log's policy (one without limits is none).
   */
  async createLog(name: string, replicas: number, retention?: RetentionPolicy): Promise<{ created: boolean }> {
    const { ns } = this.ctx;
    // Asked of etcd, not the watch: a replica that joined a moment ago may not have reached it yet.
    const nodeIds = (await ns.getAll().prefix(keys.nodes()).keys()).map((k) => k.slice(keys.nodes().length)).sort();
    if (nodeIds.length < replicas) throw new Error(`only ${nodeIds.length} of ${replicas} replicas have joined the cluster`);
    const policy = storedPolicy(retention);
    const meta: LogMeta = { name, uid: randomBytes(8).toString('hex'), replicas: nodeIds.slice(0, replicas), createdAt: new Date().toISOString(), ...(policy ? { retention: policy } : {}) };
    // A log created again after a delete keeps counting epochs from where it was, so
    // nothing a leader of the old log still sends can pass a fence of the new one.
    const epoch = await ns.get(keys.epoch(name)).string();
    const fresh = ns.if(keys.log(name), 'Create', '==', 0);
    const res = await (epoch === null ? fresh.and(keys.epoch(name), 'Create', '==', 0) : fresh.and(keys.epoch(name), 'Value', '==', epoch))
      .then(ns.put(keys.log(name)).value(JSON.stringify(meta)), ...(epoch === null ? [ns.put(keys.epoch(name)).value('0')] : []))
      .commit();
    if (res.succeeded) this.view.setLog(meta, Number(epoch ?? 0));
    return { created: res.succeeded };
  }

  /**
   * Deletes a log's metadata, leader, segments, manifest, retention and
   * flushed-through mark (its epoch stays, see createLog). Answers the metadata
   * it deleted (undefined: no such log), read in the same transaction, so the
   * caller sweeps the objects of exactly that creation.
   */
  async deleteLog(name: string): Promise<LogMeta | undefined> {
    const { ns } = this.ctx;
    const { meta, rest, prefixes } = keys.ofLog(name);
    const res = await ns
      .if(meta, 'Create', '>', 0)
      .then(ns.get(meta), ...[meta, ...rest].map((key) => ns.delete().key(key)), ...prefixes.map((prefix) => ns.delete().prefix(prefix)))
      .commit();
    if (!res.succeeded) return undefined;
    this.view.forget(name);
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
    const { ns } = this.ctx;
    const epoch = expectedEpoch + 1;
    const leader = this.leaderValue(epoch);
    const epochIs = ns.if(keys.epoch(name), 'Value', '==', String(expectedEpoch));
    const txn = (replacing === undefined ? epochIs.and(keys.leader(name), 'Create', '==', 0) : epochIs.and(keys.leader(name), 'Value', '==', replacing)).then(
      ns.put(keys.epoch(name)).value(String(epoch)),
      ns.put(keys.leader(name)).value(leader).lease(await this.session.currentLeaseId()),
    );
    const claimed = await this.commitAndCache(txn, [keys.epoch(name), keys.leader(name)], () => this.view.setLeader(name, JSON.parse(leader) as LeaderInfo));
    return claimed ? epoch : undefined;
  }

  /** Gives up the leader key of `epoch` (handoff); the epoch stays, so the next leader raises it. */
  async releaseLeadership(name: string, epoch: number): Promise<boolean> {
    const txn = this.ifStillLeader(name, epoch).then(this.ctx.ns.delete().key(keys.leader(name)));
    return this.commitAndCache(txn, [keys.leader(name)], () => this.view.deleteLeader(name));
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
    await retryWithBackoff(
      async () => {
        released = await this.releaseLeadership(name, epoch);
        return true;
      },
      () => !this.ctx.closed(),
    );
    return released;
  }

  /**
   * The end of a recovery: seals the segments it recovered (with the last id
   * kept) and opens this epoch's segment, only if this replica still leads
   * the log at `epoch`.
   */
  async openSegment(name: string, epoch: number, seals: readonly SegmentMeta[], open: SegmentMeta): Promise<boolean> {
    return this.writeSegments(name, epoch, [...seals, open]);
  }

  /** Rewrites the open segment's replica incarnations (a restarted follower that caught up counts again). */
  async updateSegment(name: string, epoch: number, segment: SegmentMeta): Promise<boolean> {
    return this.writeSegments(name, epoch, [segment]);
  }

  /**
   * The end of a controlled shutdown, in one transaction compared on the
   * epoch and this replica's leader key: seals the open segment as closed
   * clean and gives up the leader key. The caller has flushed every committed
   * id up to the seal, so the next leader recovers without fence answers.
   */
  async closeSegmentClean(name: string, epoch: number, segment: SegmentMeta, quiesced = false): Promise<boolean> {
    const { ns } = this.ctx;
    const sealed: SegmentMeta = { ...segment, closedClean: true, ...(quiesced ? { quiesced } : {}) };
    const key = keys.segment(name, segment.epoch);
    const txn = this.ifStillLeader(name, epoch).then(ns.put(key).value(JSON.stringify(sealed)), ns.delete().key(keys.leader(name)));
    return this.commitAndCache(txn, [key, keys.leader(name)], () => {
      this.view.setSegment(name, sealed);
      this.view.deleteLeader(name);
    });
  }

  /**
   * Reopens a quiesced log, in one transaction: raises the epoch from
   * `expectedEpoch`, takes the leader key (leased), opens the segment `open`
   * and forgets the segments of epochs `forget` (those before the quiesced
   * one: all their ids are in object storage, and recovery counts ids before
   * the first recorded segment as agreed, so a log woken a thousand times
   * keeps two segment keys, not a thousand). Compared on the epoch and on the
   * key being free: a quiesced segment is only ever written by the leader of
   * its epoch, which gave its key up with the seal, so an unmoved epoch with
   * no leader key means the seal stands. Answers the new epoch, or undefined
   * when another replica got there first (or the log moved on).
   */
  async reopen(name: string, expectedEpoch: number, open: SegmentMeta, forget: readonly number[]): Promise<number | undefined> {
    const { ns } = this.ctx;
    const epoch = expectedEpoch + 1;
    const leader = this.leaderValue(epoch);
    const segmentKey = keys.segment(name, epoch);
    const forgotten = forget.map((e) => keys.segment(name, e));
    const txn = ns
      .if(keys.epoch(name), 'Value', '==', String(expectedEpoch))
      .and(keys.leader(name), 'Create', '==', 0)
      .then(
        ns.put(keys.epoch(name)).value(String(epoch)),
        ns.put(keys.leader(name)).value(leader).lease(await this.session.currentLeaseId()),
        ns.put(segmentKey).value(JSON.stringify(open)),
        ...forgotten.map((key) => ns.delete().key(key)),
      );
    const reopened = await this.commitAndCache(txn, [keys.epoch(name), keys.leader(name), segmentKey, ...forgotten], () => {
      this.view.setLeader(name, JSON.parse(leader) as LeaderInfo);
      this.view.setSegment(name, open);
      for (const e of forget) this.view.deleteSegment(name, e);
    });
    return reopened ? epoch : undefined;
  }

  /**
   * Records flushed objects (consecutive, ascending) in one transaction, only
   * if this replica still leads the log at `epoch`: all of them or none.
   */
  async recordFlush(name: string, epoch: number, entries: readonly ManifestEntry[]): Promise<boolean> {
    if (entries.length === 0) return true;
    const { ns } = this.ctx;
    const written = entries.map((e) => keys.manifestEntry(name, e.firstId));
    const txn = this.ifStillLeader(name, epoch).then(...entries.map((e, i) => ns.put(written[i]!).value(JSON.stringify(e))));
    return this.commitAndCache(txn, written, () => {
      for (const e of entries) this.view.setManifest(name, e);
    });
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
    const { ns } = this.ctx;
    const markKey = keys.flushedThrough(name);
    const current = this.view.flushedThroughMark(name);
    const mark = Math.max(current ?? -1, ...entries.map((e) => e.lastId));
    const deletes = entries.map((e) => ns.delete().key(keys.manifestEntry(name, e.firstId)));
    const guard = this.ifStillLeader(name, epoch);
    const unmoved = current === undefined ? guard.and(markKey, 'Create', '==', 0) : guard.and(markKey, 'Value', '==', String(current));
    const txn = unmoved.then(...deletes, ns.put(markKey).value(String(mark)));
    return this.commitAndCache(txn, [markKey], () => this.view.forgetFlushed(name, entries, mark));
  }

  /**
   * Raises the retention point to `pointFor(readers)` (never lowers it) and
   * answers the point now in force. `pointFor` gets the log's named readers as
   * etcd has them (it clamps to a holding reader, or throws to refuse), and the
   * raise is compared on no reader key having changed since they were read: a
   * reader committed or moved back meanwhile makes it read and decide again,
   * so the point never passes a holding reader however the two race.
   */
  async truncateBefore(name: string, pointFor: (readers: readonly ReaderInfo[]) => number): Promise<number> {
    const { ns } = this.ctx;
    const readersPrefix = keys.readers(name);
    for (;;) {
      const read = await ns.getAll().prefix(readersPrefix).exec();
      const readers = read.kvs.map((kv) => ({ name: kv.key.toString().slice(readersPrefix.length), ...(JSON.parse(kv.value.toString()) as ReaderRecord) }));
      const beforeId = pointFor(readers);
      const current = this.view.retainedFrom(name);
      if (beforeId <= current) return current;
      const key = keys.retention(name);
      const cmp = current === 0 && !(await ns.get(key).string()) ? ns.if(key, 'Create', '==', 0) : ns.if(key, 'Value', '==', String(current));
      const txn = andNoneChangedSince(cmp, ns, readersPrefix, BigInt(read.header.revision)).then(ns.put(key).value(String(beforeId)));
      if (await this.commitAndCache(txn, [key], () => this.view.setRetention(name, beforeId))) return beforeId;
      await this.view.fetchLog(name);
    }
  }

  /**
   * Replaces the log's retention policy (one without limits clears it), compared on its
   * metadata as read, so a concurrent change is read again rather than undone.
   * False when the log does not exist.
   */
  async setRetentionPolicy(name: string, retention: RetentionPolicy): Promise<boolean> {
    const policy = storedPolicy(retention);
    const { ns } = this.ctx;
    const key = keys.log(name);
    for (;;) {
      const current = await ns.get(key).exec();
      const kv = current.kvs[0];
      if (!kv) return false;
      const { retention: _replaced, ...rest } = JSON.parse(kv.value.toString()) as LogMeta;
      const meta: LogMeta = policy ? { ...rest, retention: policy } : rest;
      const txn = ns.if(key, 'Mod', '==', kv.mod_revision).then(ns.put(key).value(JSON.stringify(meta)));
      if (await this.commitAndCache(txn, [key], () => this.view.setMeta(meta))) return true;
    }
  }

  /** Commits a named reader's position; false when the log does not exist (compared in the same transaction). */
  async putReader(name: string, reader: string, record: ReaderRecord): Promise<boolean> {
    const { ns } = this.ctx;
    const key = keys.reader(name, reader);
    const txn = ns.if(keys.log(name), 'Create', '>', 0).then(ns.put(key).value(JSON.stringify(record)));
    return this.commitAndCache(txn, [key], () => this.view.setReader(name, reader, record));
  }

  /** Deletes a named reader; false when there was none. */
  async deleteReader(name: string, reader: string): Promise<boolean> {
    const { ns } = this.ctx;
    const key = keys.reader(name, reader);
    const txn = ns.if(key, 'Create', '>', 0).then(ns.delete().key(key));
    return this.commitAndCache(txn, [key], () => this.view.deleteReader(name, reader));
  }

  /** Writes segments of the log, only if this replica still leads it at `epoch`. */
  private writeSegments(name: string, epoch: number, segments: readonly SegmentMeta[]): Promise<boolean> {
    const puts = segments.map((seg) => this.ctx.ns.put(keys.segment(name, seg.epoch)).value(JSON.stringify(seg)));
    const written = segments.map((seg) => keys.segment(name, seg.epoch));
    return this.commitAndCache(this.ifStillLeader(name, epoch).then(...puts), written, () => {
      for (const seg of segments) this.view.setSegment(name, seg);
    });
  }

  /** Compares on the log's epoch and on this replica's leader key for it. */
  private ifStillLeader(name: string, epoch: number): ComparatorBuilder {
    return this.ctx.ns.if(keys.epoch(name), 'Value', '==', String(epoch)).and(keys.leader(name), 'Value', '==', this.leaderValue(epoch));
  }

  /**
   * Commits `txn`; if it succeeded, caches what it wrote: `written` as seen at
   * its revision (so older watch events of them cannot undo it), and
   * `cacheWrite`. Resolves whether it succeeded.
   */
  private async commitAndCache(txn: ComparatorBuilder, written: string[], cacheWrite: () => void): Promise<boolean> {
    const res = await txn.commit();
    if (res.succeeded) {
      this.view.seen(written, res.header.revision);
      cacheWrite();
    }
    return res.succeeded;
  }
}

/**
 * Adds to `txn` a compare that no key under `prefix` was written after
 * `revision` (etcd compares every key of a range; a key deleted since is not
 * there to fail it). etcd3's builder has no range on compares, so the compare
 * is added as etcd's API spells it.
 */
export function andNoneChangedSince(txn: ComparatorBuilder, ns: Namespace, prefix: string, revision: bigint): ComparatorBuilder {
  const range = Range.prefix(Buffer.concat([ns.prefix, Buffer.from(prefix)]));
  const compare: ICompare = { key: range.start, range_end: range.end, target: CompareTarget.Mod, result: CompareResult.Less, mod_revision: String(revision + 1n) };
  (txn as unknown as { request: { compare: Promise<ICompare>[] } }).request.compare.push(Promise.resolve(compare));
  return txn;
}
