/**
 * The idempotent producer's rules, pure (no I/O, no clocks: the caller
 * passes the wall-clock time the entries carry). A producer names itself
 * (`Tern-Producer-Id`) and numbers its entries (`Tern-Producer-Seq`, the
 * number of a batch's first entry; a batch of n takes seq..seq+n-1). The
 * leader of a log keeps, per producer, the ids it gave the producer's last
 * WINDOW batches, so a retry of any of them (a pipeline of retries after a
 * lost answer) is answered with the original ids instead of appended again,
 * as Kafka's idempotent producer keeps its last five batches.
 *
 * The table is rebuilt, never replicated as such: every batch a producer
 * appends travels with its entries as a ProducerMark (replication messages,
 * recovery fetches), and the flusher writes the table as it stands at the
 * last id of each object (a ProducerSnapshot). A new leader loads the newest
 * snapshot and applies the marks of the entries above it (`record`), in id
 * order, and so judges retries as the old leader did.
 *
 * Bounds: a producer idle for `expiryMs` (by the times its marks carry) is
 * forgotten, and at most `maxProducers` are kept, the least recently used
 * going first. A forgotten producer is a new one: its next append is
 * accepted at any seq, a retry of an old batch included (appended again).
 */

/** Batches remembered per producer: a retry of any of them gets its original ids. */
export const PRODUCER_WINDOW = 5;

/** Producer ids: what `Tern-Producer-Id` may carry. */
export const PRODUCER_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;

/** One producer batch as it travels with its entries: the batch took ids firstId..firstId+count-1 for seqs firstSeq..firstSeq+count-1. */
export interface ProducerMark {
  producerId: string;
  firstSeq: number;
  firstId: number;
  count: number;
  /** The leader's wall clock (ms since the epoch) when it took the batch: what expiry counts from. */
  timeMs: number;
}

/** One batch of a producer's window. */
export interface ProducerBatch {
  firstSeq: number;
  count: number;
  firstId: number;
}

/** One producer as a snapshot holds it. */
export interface ProducerState {
  producerId: string;
  /** Time of its last batch (ms since the epoch). */
  lastTimeMs: number;
  /** Its last batches, oldest first (at most PRODUCER_WINDOW). */
  batches: ProducerBatch[];
}

/** The table as it stood once every entry up to `throughId` was applied; producers least recently used first. */
export interface ProducerSnapshot {
  throughId: number;
  producers: ProducerState[];
}

export interface ProducerLimits {
  /** A producer with no batch for this long is forgotten. */
  expiryMs: number;
  /** At most this many producers are kept; the least recently used goes first. */
  maxProducers: number;
}

/** What to do with an append of `count` entries at `seq` from a producer. */
export type Judgement =
  /** Append it (then `record` its mark). */
  | { kind: 'new' }
  /** A retry of a batch already given ids: answer these, once they are committed. */
  | { kind: 'duplicate'; firstId: number; lastId: number }
  /** The seq skips ahead of the next one expected: refuse (not applied). */
  | { kind: 'gap'; expectedSeq: number }
  /** The seq is below the window, or its run of seqs is not inside one remembered batch: refuse (cannot be answered with one run of ids). */
  | { kind: 'stale'; expectedSeq: number };

export class ProducerTable {
  /** Insertion order is recency: the first producer is the least recently used. */
  private readonly producers = new Map<string, ProducerState>();
  /** Highest id whose mark was applied (or the snapshot's point): marks at or below it are already in. */
  private appliedThrough: number;

  constructor(
    private readonly limits: ProducerLimits,
    snapshot?: ProducerSnapshot,
  ) {
    this.appliedThrough = snapshot?.throughId ?? -1;
    for (const p of snapshot?.producers ?? []) this.producers.set(p.producerId, { producerId: p.producerId, lastTimeMs: p.lastTimeMs, batches: p.batches.map((b) => ({ ...b })) });
    this.evictOverLimit();
  }

  /** Producers remembered. */
  get size(): number {
    return this.producers.size;
  }

  /** Highest id applied: a snapshot taken now is valid at it. */
  get throughId(): number {
    return this.appliedThrough;
  }

  /** Judges an append of `count` entries from `producerId` at `seq`, at wall-clock `nowMs`. Changes nothing but expiry. */
  judge(producerId: string, seq: number, count: number, nowMs: number): Judgement {
    const p = this.live(producerId, nowMs);
    if (!p || p.batches.length === 0) return { kind: 'new' };
    const last = p.batches[p.batches.length - 1]!;
    const expectedSeq = last.firstSeq + last.count;
    if (seq === expectedSeq) return { kind: 'new' };
    if (seq > expectedSeq) return { kind: 'gap', expectedSeq };
    // A retry may be the batch itself or a part of it (a writer that restarted and resends entry by entry):
    // the ids of a batch are consecutive, so any run of seqs inside one batch maps to a run of ids.
    const batch = p.batches.find((b) => b.firstSeq <= seq && seq + count <= b.firstSeq + b.count);
    if (batch) {
      const firstId = batch.firstId + (seq - batch.firstSeq);
      return { kind: 'duplicate', firstId, lastId: firstId + count - 1 };
    }
    return { kind: 'stale', expectedSeq };
  }

  /**
   * Applies a batch that got ids (the leader after proposing it, or a new
   * leader rebuilding from marks, in id order). A mark at or below what was
   * already applied (it is in the snapshot) changes nothing.
   */
  record(mark: ProducerMark): void {
    if (mark.firstId <= this.appliedThrough) return;
    this.appliedThrough = mark.firstId + mark.count - 1;
    let p = this.producers.get(mark.producerId);
    if (p) this.producers.delete(mark.producerId);
    else p = { producerId: mark.producerId, lastTimeMs: mark.timeMs, batches: [] };
    p.lastTimeMs = Math.max(p.lastTimeMs, mark.timeMs);
    p.batches.push({ firstSeq: mark.firstSeq, count: mark.count, firstId: mark.firstId });
    while (p.batches.length > PRODUCER_WINDOW) p.batches.shift();
    this.producers.set(mark.producerId, p);
    this.evictOverLimit();
  }

  /** Entries up to `id` are applied (their marks, if any, were recorded): the snapshot point moves with them. */
  advanceTo(id: number): void {
    if (id > this.appliedThrough) this.appliedThrough = id;
  }

  /** Forgets every producer idle for the expiry at `nowMs`. */
  expire(nowMs: number): void {
    for (const [id, p] of this.producers) if (this.expired(p, nowMs)) this.producers.delete(id);
  }

  /** The table as it stands (a copy). */
  snapshot(): ProducerSnapshot {
    return { throughId: this.appliedThrough, producers: [...this.producers.values()].map((p) => ({ producerId: p.producerId, lastTimeMs: p.lastTimeMs, batches: p.batches.map((b) => ({ ...b })) })) };
  }

  private live(producerId: string, nowMs: number): ProducerState | undefined {
    const p = this.producers.get(producerId);
    if (p && this.expired(p, nowMs)) {
      this.producers.delete(producerId);
      return undefined;
    }
    return p;
  }

  private expired(p: ProducerState, nowMs: number): boolean {
    return nowMs - p.lastTimeMs >= this.limits.expiryMs;
  }

  private evictOverLimit(): void {
    for (const id of this.producers.keys()) {
      if (this.producers.size <= this.limits.maxProducers) break;
      this.producers.delete(id);
    }
  }
}

/** Whether a `Tern-Producer-Seq` value is one: a non-negative safe integer. */
export function isProducerSeq(seq: number): boolean {
  return Number.isSafeInteger(seq) && seq >= 0;
}
