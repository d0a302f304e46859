/**
 * The idempotent producers of the logs this replica leads, as I/O around the
 * pure table (quorum/producers.ts): judging an append, loading the table
 * when this replica starts leading a log, and the snapshot each flushed
 * object carries.
 *
 * Loading: the newest object at or below the flushed point holds the table
 * as it stood at its last id (a version 1 object: an empty table there);
 * the marks of the entries this replica holds above that point (its own, or
 * those recovery fetched) bring it to the log's head. Until it is loaded,
 * producer appends get NOT_READY; plain appends go on.
 */
import { TernError, SequenceGapError, SequenceStaleError } from '../errors.js';
import { CorruptObjectError, decodeObject, decodeSnapshot, encodeSnapshot } from '../flusher/object-format.js';
import type { LeaderLog } from '../quorum/leader.js';
import { ProducerTable, type ProducerLimits, type ProducerSnapshot } from '../quorum/producers.js';
import type { ProducerRef } from '../peer/forwarded-appends.js';
import type { LogState, ReplicaContext, Waiting } from './log-state.js';

/** A failed load (object store down) is tried again this often while this replica still leads. */
const LOAD_RETRY_MS = 500;

export function producerLimitsOf(config: { producerExpiryMs: number; maxProducers: number }): ProducerLimits {
  return { expiryMs: config.producerExpiryMs, maxProducers: config.maxProducers };
}

/** What the leader does with a producer's append. */
export type ProducerVerdict = { kind: 'new'; timeMs: number } | { kind: 'duplicate'; firstId: number; lastId: number };

export class Producers {
  private readonly limits: ProducerLimits;

  constructor(private readonly ctx: ReplicaContext) {
    this.limits = producerLimitsOf(ctx.config);
  }

  /** Judges a producer's append of `count` entries; throws NOT_READY, SEQUENCE_GAP or SEQUENCE_STALE. */
  judge(name: string, state: LogState, producer: ProducerRef, count: number): ProducerVerdict {
    const table = state.producers;
    if (!table) throw new TernError('NOT_READY', `log ${name}: the leader is still loading its idempotent producers`, { maybeApplied: false });
    const timeMs = Date.now();
    const j = table.judge(producer.id, producer.seq, count, timeMs);
    switch (j.kind) {
      case 'new':
        return { kind: 'new', timeMs };
      case 'duplicate':
        this.ctx.metrics.producerDuplicate(name);
        return j;
      case 'gap':
        throw new SequenceGapError(name, producer.id, producer.seq, j.expectedSeq);
      case 'stale':
        throw new SequenceStaleError(name, producer.id, producer.seq, j.expectedSeq);
    }
  }

  /**
   * This replica has just started leading `name`: forget any table, load it,
   * then call `loaded` (the flusher starts from it). `noneThrough`: the log is
   * known to have had no producer through that id (a quiesced seal said so),
   * so the table starts empty there without reading the newest object.
   */
  load(name: string, state: LogState, leader: LeaderLog<Waiting>, loaded: () => void, noneThrough?: number): void {
    state.producers = undefined;
    state.flushedProducers = undefined;
    if (noneThrough !== undefined) {
      this.install(name, state, { throughId: noneThrough, producers: [] });
      return loaded();
    }
    const attempt = (): void => {
      if (state.leader !== leader || leader.isDeposed || this.ctx.stopping) return;
      this.flushedSnapshot(name).then(
        (snapshot) => {
          if (state.leader !== leader || leader.isDeposed) return;
          this.install(name, state, snapshot);
          loaded();
        },
        (err: Error) => {
          if (state.leader !== leader || leader.isDeposed) return;
          if (!lostForGood(err)) {
            this.ctx.log.warn({ log: name, err: err.message }, 'loading the idempotent producers from object storage failed; retrying');
            return void setTimeout(attempt, LOAD_RETRY_MS).unref();
          }
          // Waiting would not bring it back, and the flusher (whose collector would forget a deleted
          // object's record) waits for the table: start from an empty one at the flushed point.
          this.ctx.log.error({ log: name, err: err.message }, 'the object holding the idempotent producers\' snapshot is gone or corrupt: they are forgotten');
          this.install(name, state, { throughId: this.ctx.dir().flushedId(name), producers: [] });
          loaded();
        },
      );
    };
    attempt();
  }

  /**
   * The snapshot section of the object that ends at `lastId`: the flushed
   * table, brought up to it. Undefined (a version 1 object, which a loading
   * leader reads as an empty table) while no producer is remembered: logs
   * without producers pay nothing, and replicas of the previous version
   * still read their objects during a rolling update.
   */
  snapshotThrough(state: LogState, firstId: number, lastId: number): Buffer | undefined {
    const table = state.flushedProducers;
    if (!table) return undefined;
    for (const mark of state.replica.buffer.completeMarksBetween(firstId, lastId)) table.record(mark);
    table.advanceTo(lastId);
    const now = Date.now();
    table.expire(now);
    state.producers?.expire(now);
    return table.size === 0 ? undefined : encodeSnapshot(table.snapshot());
  }

  /** The table at the flushed point: the newest object's snapshot, and the marks held between it and that point. */
  private async flushedSnapshot(name: string): Promise<ProducerSnapshot | undefined> {
    const store = this.ctx.store;
    const flushedId = this.ctx.dir().flushedId(name);
    let newest: { key: string; lastId: number } | undefined;
    for (const e of this.ctx.dir().manifest(name)) if (e.lastId <= flushedId && (!newest || e.lastId > newest.lastId)) newest = e;
    if (!store || !newest) return undefined;
    const { snapshotSection } = decodeObject(await store.get(newest.key));
    return snapshotSection ? decodeSnapshot(snapshotSection) : { throughId: newest.lastId, producers: [] };
  }

  private install(name: string, state: LogState, snapshot: ProducerSnapshot | undefined): void {
    const flushedId = this.ctx.dir().flushedId(name);
    const buffer = state.replica.buffer;
    const flushed = new ProducerTable(this.limits, snapshot);
    const below = buffer.completeMarksBetween(flushed.throughId + 1, flushedId);
    for (const mark of below) flushed.record(mark);
    flushed.advanceTo(flushedId);
    if (flushed.throughId > (snapshot?.throughId ?? -1) && buffer.startId > (snapshot?.throughId ?? -1) + 1) {
      // Ids between the snapshot and the flushed point are neither in it nor held here (a truncation
      // forgot the objects that had them): their producers' batches are not remembered.
      this.ctx.log.warn({ log: name, snapshotThrough: snapshot?.throughId ?? -1, flushedId }, 'idempotent producers of the ids between the newest snapshot and the flushed point are forgotten');
    }
    const live = new ProducerTable(this.limits, flushed.snapshot());
    for (const mark of buffer.completeMarksBetween(flushedId + 1, buffer.lastId)) live.record(mark);
    const now = Date.now();
    flushed.expire(now);
    live.expire(now);
    state.flushedProducers = flushed;
    state.producers = live;
  }
}

/** A snapshot that no retry brings back: its object is corrupt, or gone (a truncation deleted it before forgetting its record). */
function lostForGood(err: Error): boolean {
  const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
  return err instanceof CorruptObjectError || err.name === 'NoSuchKey' || status === 404;
}
