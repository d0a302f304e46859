/**
 * Retention and named readers on a replica: the log's retention policy, set
 * and applied; explicit truncation; readers' positions committed, listed and
 * deleted; and what the status and the metrics say of them. The decision is
 * control/retention.ts (pure); this carries it out through etcd. The log's
 * leader applies the policy once per flusher pass (Storage.startFlusher), so
 * a quiesced log, which has no leader and no flusher, costs nothing, and a
 * log without a policy costs one map lookup per pass.
 */
import { lowestHolder, readerLagEntries, retentionPoint, type HeldBy } from '../control/retention.js';
import { TernError } from '../errors.js';
import type { ManifestEntry, ReaderInfo, RetentionPolicy } from '../fencing/keys.js';
import { UNKNOWN_TIME_MS } from '../quorum/entry-buffer.js';
import type { ReplicaContext } from './log-state.js';
import type { TailReaders } from './tail-readers.js';

/** A named reader as the status lists it. */
export interface ReaderStatus extends ReaderInfo {
  /** Committed entries it has not read (0 when caught up). */
  lagEntries: number;
}

/** What the log's status says of retention and readers. */
export interface RetentionStatus {
  /** The policy in force ({} for none: only explicit truncation). */
  retention: RetentionPolicy;
  readers: ReaderStatus[];
  /** Set when a holding reader is what stops the policy. */
  retentionHeldBy?: HeldBy;
}

/**
 * One reader's lag (tern_reader_lag_entries, tern_reader_lag_seconds),
 * exported by the log's leader, or by the coordinator while the log is
 * quiesced: a quiesced log has no leader, and a reader stuck on it is still stuck.
 */
export interface ReaderLag {
  log: string;
  reader: string;
  lagEntries: number;
  /** Now minus the time of entry nextId (0 when caught up); undefined when that entry's time is unknown. */
  lagSeconds: number | undefined;
}

export class Retention {
  constructor(
    private readonly ctx: ReplicaContext,
    private readonly tailReaders: TailReaders,
  ) {}

  /**
   * The leader's pass: raises the retention point to where the policy puts
   * it, if that is ahead. The view decides whether there is anything to do;
   * only then are the readers read from etcd, with the raise compared on them.
   */
  async apply(name: string): Promise<void> {
    const dir = this.ctx.dir();
    const policy = dir.meta(name)?.retention;
    if (!policy) return;
    const pointFor = (readers: readonly ReaderInfo[]) => retentionPoint({ ...this.inputsOf(name), policy, readers }).beforeId;
    const from = dir.retainedFrom(name);
    if (pointFor(dir.readers(name)) <= from) return;
    const beforeId = await dir.truncateBefore(name, pointFor);
    if (beforeId > from) this.ctx.log.info({ log: name, beforeId, policy }, 'retention policy truncated the log');
  }

  /** Explicit truncation: ids below `beforeId` become unreadable. HELD_BY_READER when a holding reader is below it. */
  async truncate(name: string, beforeId: number): Promise<void> {
    await this.ctx.requireLog(name);
    const committedId = this.ctx.committedId(name);
    if (beforeId > committedId + 1) throw new TernError('BAD_REQUEST', `log ${name}: cannot truncate before ${beforeId}, past the commit point ${committedId}`);
    await this.ctx.dir().truncateBefore(name, (readers) => {
      const holder = lowestHolder(readers);
      if (holder && holder.nextId < beforeId) {
        throw new TernError('HELD_BY_READER', `log ${name}: reader ${holder.name} holds retention at ${holder.nextId}, below ${beforeId}; move or delete it first`);
      }
      return beforeId;
    });
    this.ctx.log.info({ log: name, beforeId }, 'log truncated');
  }

  /** Replaces the log's policy ({} clears it); the leader applies it on its next pass. */
  async setPolicy(name: string, policy: RetentionPolicy): Promise<void> {
    if (!(await this.ctx.dir().setRetentionPolicy(name, policy))) throw new TernError('LOG_NOT_FOUND', `log ${name} does not exist`);
    this.ctx.log.info({ log: name, retention: policy }, 'retention policy set');
  }

  /**
   * Commits a reader's position: `nextId` may be at most the next id to be
   * committed. A follower may trail the leader's commit point by a tick, so
   * it waits up to --ack-timeout-ms to hear of it before refusing.
   */
  async commitReader(name: string, reader: string, nextId: number, holdsRetention: boolean): Promise<ReaderInfo> {
    await this.ctx.requireLog(name);
    if (nextId > this.ctx.committedId(name) + 1 && !this.ctx.localLeader(name)) await this.tailReaders.wait(name, nextId - 1, this.ctx.config.ackTimeoutMs);
    const committedId = this.ctx.committedId(name);
    if (nextId > committedId + 1) throw new TernError('BAD_REQUEST', `log ${name}: nextId ${nextId} is past the next id to be committed (${committedId + 1})`);
    const record = { nextId, holdsRetention, updatedAt: new Date().toISOString() };
    if (!(await this.ctx.dir().putReader(name, reader, record))) throw new TernError('LOG_NOT_FOUND', `log ${name} does not exist`);
    return { name: reader, ...record };
  }

  async reader(name: string, reader: string): Promise<ReaderStatus> {
    await this.ctx.requireLog(name);
    const found = this.ctx.dir().reader(name, reader);
    if (!found) throw readerNotFound(name, reader);
    return this.withLag(name, found);
  }

  async readers(name: string): Promise<ReaderStatus[]> {
    await this.ctx.requireLog(name);
    return this.ctx.dir().readers(name).map((r) => this.withLag(name, r));
  }

  async deleteReader(name: string, reader: string): Promise<{ log: string; reader: string; deleted: true }> {
    await this.ctx.requireLog(name);
    if (!(await this.ctx.dir().deleteReader(name, reader))) throw readerNotFound(name, reader);
    this.ctx.log.info({ log: name, reader }, 'reader deleted');
    return { log: name, reader, deleted: true };
  }

  /** The status's part: the policy, the readers with their lag, and the reader holding the policy back, if one is. */
  status(name: string): RetentionStatus {
    const dir = this.ctx.dir();
    const policy = dir.meta(name)?.retention;
    const readers = dir.readers(name);
    const { heldBy } = retentionPoint({ ...this.inputsOf(name), policy, readers });
    return { retention: policy ?? {}, readers: readers.map((r) => this.withLag(name, r)), ...(heldBy ? { retentionHeldBy: heldBy } : {}) };
  }

  /**
   * The lag of every reader this replica exports (see ReaderLag), at `nowMs`.
   * Walks only the logs that have readers.
   */
  lags(nowMs: number): ReaderLag[] {
    const out: ReaderLag[] = [];
    const dir = this.ctx.directory;
    if (!dir) return out;
    for (const name of dir.logsWithReaders()) {
      if (!this.ctx.localLeader(name) && !(dir.isCoordinator && dir.isQuiesced(name))) continue;
      const readers = dir.readers(name);
      const committedId = this.ctx.committedId(name);
      const manifest = dir.manifest(name);
      const retainedFrom = dir.retainedFrom(name);
      for (const r of readers) {
        const lagEntries = readerLagEntries(r.nextId, committedId);
        // A reader below the retention point is at least as far behind as the first retained entry is old.
        const timeMs = lagEntries === 0 ? nowMs : this.timeOf(name, Math.max(r.nextId, retainedFrom), manifest);
        out.push({ log: name, reader: r.name, lagEntries, lagSeconds: timeMs === undefined ? undefined : Math.max(0, nowMs - timeMs) / 1000 });
      }
    }
    return out;
  }

  /**
   * The time of entry `id`: exact while it is in memory; once flushed, the
   * first time of the object holding it (earlier by at most the object's
   * span, about a flush interval, and no store request); undefined when
   * unknown (written before entries had times, which read as UNKNOWN_TIME_MS).
   */
  private timeOf(name: string, id: number, manifest: readonly ManifestEntry[]): number | undefined {
    const held = this.ctx.logs.get(name)?.replica.buffer.timeOf(id);
    const timeMs = held ?? objectHolding(manifest, id)?.firstTimeMs;
    return timeMs === UNKNOWN_TIME_MS ? undefined : timeMs;
  }

  private inputsOf(name: string) {
    const dir = this.ctx.dir();
    return { manifest: dir.manifest(name), retainedFrom: dir.retainedFrom(name), flushedId: dir.flushedId(name), committedId: this.ctx.committedId(name), nowMs: Date.now() };
  }

  private withLag(name: string, reader: ReaderInfo): ReaderStatus {
    return { ...reader, lagEntries: readerLagEntries(reader.nextId, this.ctx.committedId(name)) };
  }
}

function readerNotFound(name: string, reader: string): TernError {
  return new TernError('READER_NOT_FOUND', `log ${name} has no reader ${reader}`);
}

/** The object (of a manifest ascending by first id) holding `id`, by binary search. */
function objectHolding(manifest: readonly ManifestEntry[], id: number): ManifestEntry | undefined {
  let lo = 0;
  let hi = manifest.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const e = manifest[mid]!;
    if (id < e.firstId) hi = mid - 1;
    else if (id > e.lastId) lo = mid + 1;
    else return e;
  }
  return undefined;
}
