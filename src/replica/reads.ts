/**
 * The read path: committed entries from memory while this replica holds them
 * (only up to the commit point it knows in its own log), from object storage
 * below that, and long-poll tail reads that wait for the next commit; and
 * how many of each this replica serves at once (--max-concurrent-reads,
 * --max-tail-reads).
 */
import { TernError } from '../errors.js';
import type { ReplicaContext } from './log-state.js';
import type { TailReaders } from './tail-readers.js';
import type { EntrySlice } from '../flusher/object-reader.js';
import type { ReadResult, TimeSeek } from './types.js';

export class Reads {
  /** Reads being served, not counting held tail reads while they wait. */
  private active = 0;

  constructor(
    private readonly ctx: ReplicaContext,
    private readonly tailReaders: TailReaders,
  ) {}

  /**
   * Committed entries from `fromId`, waiting up to `waitMs` for the first one
   * when none is committed yet. Entries below this replica's memory come from
   * object storage through the manifest. TOO_MANY past either bound. At most
   * about `maxBytes` of entries (at least one).
   */
  read(name: string, fromId: number, limit: number, waitMs: number, maxBytes = this.ctx.config.maxReadBytes): Promise<ReadResult> {
    return this.counted(() => this.readCounted(name, fromId, limit, waitMs, maxBytes));
  }

  /** Runs a read (or a seek, which may read an object) counted against --max-concurrent-reads: TOO_MANY past it. */
  private async counted<T>(op: () => Promise<T>): Promise<T> {
    const { maxConcurrentReads } = this.ctx.config;
    if (this.active >= maxConcurrentReads) throw new TernError('TOO_MANY', `replica ${this.ctx.id} serves ${this.active} reads, the most --max-concurrent-reads allows (${maxConcurrentReads})`);
    this.active++;
    try {
      return await op();
    } finally {
      this.active--;
    }
  }

  private async readCounted(name: string, fromId: number, limit: number, waitMs: number, maxBytes: number): Promise<ReadResult> {
    await this.ctx.requireLog(name);
    const dir = this.ctx.dir();
    const retained = dir.retainedFrom(name);
    if (fromId < retained) throw new TernError('TRUNCATED', `log ${name}: ids below ${retained} were truncated; read from ${retained}`);
    if (waitMs > 0 && fromId > this.ctx.committedId(name)) await this.waitForCommit(name, fromId, waitMs);
    const committedId = this.ctx.committedId(name);
    const state = this.ctx.logs.get(name);
    if (fromId > committedId) return { entries: [], times: [], fromId, nextId: fromId, committedId };
    const count = Math.min(limit, committedId - fromId + 1);
    // Memory serves only ids this replica knows committed in its own log. Past that it may hold
    // a tail a newer leader discarded, even where object storage (that leader's flush) already
    // has those ids: a stale leader woken from a pause served such a tail (jepsen-lite, divergent).
    const replica = state?.replica;
    const memoryEnd = replica ? Math.min(replica.commitId, replica.buffer.lastId) : -1;
    const inMemory = replica !== undefined && fromId >= replica.buffer.startId && fromId <= memoryEnd;
    const flushedId = dir.flushedId(name);
    const fromStore = !inMemory && fromId <= flushedId;
    let slice: EntrySlice = { entries: [], times: [] };
    if (inMemory) {
      const entries = replica.buffer.slice(fromId, Math.min(count, memoryEnd - fromId + 1), maxBytes);
      slice = { entries, times: replica.buffer.timesOf(fromId, entries.length) };
    } else if (fromStore) {
      slice = await this.ctx.storage.readFlushed(name, fromId, Math.min(count, flushedId - fromId + 1), maxBytes);
    }
    let bytes = 0;
    for (const e of slice.entries) bytes += e.length;
    this.ctx.metrics.served(slice.entries.length === 0 ? 'none' : fromStore ? 'object_store' : 'memory', bytes);
    return { entries: slice.entries, times: slice.times, fromId, nextId: fromId + slice.entries.length, committedId };
  }

  /**
   * The first retained, committed entry whose time is at least `timeMs`, and
   * its time; past the last such entry, the next id to commit and null.
   * Object storage first (the manifest's times name the one object to look
   * in), then memory: times never decrease with ids, so the first hit is the
   * answer, and no whole log is scanned.
   */
  seekTime(name: string, timeMs: number): Promise<TimeSeek> {
    return this.counted(() => this.seekCounted(name, timeMs));
  }

  private async seekCounted(name: string, timeMs: number): Promise<TimeSeek> {
    await this.ctx.requireLog(name);
    const retained = this.ctx.dir().retainedFrom(name);
    const committedId = this.ctx.committedId(name);
    const flushed = await this.ctx.storage.firstFlushedAtOrAfter(name, retained, timeMs);
    const replica = this.ctx.logs.get(name)?.replica;
    let hit = flushed;
    if (!hit && replica) {
      const id = replica.buffer.firstIdAtOrAfter(timeMs);
      if (id <= Math.min(replica.commitId, replica.buffer.lastId)) hit = { id, timeMs: replica.buffer.timeOf(id)! };
    }
    if (!hit || hit.id > committedId) return { id: committedId + 1, timeMs: null };
    if (hit.id >= retained) return hit;
    // The hit was truncated; every entry after it has a time at least the hit's, so the first retained one is the answer.
    const first = await this.readCounted(name, retained, 1, 0, this.ctx.config.maxReadBytes);
    return first.entries.length > 0 ? { id: retained, timeMs: first.times[0]! } : { id: committedId + 1, timeMs: null };
  }

  /** A tail read held until `fromId` is committed or `waitMs` passes; it does not count as an active read meanwhile. */
  private async waitForCommit(name: string, fromId: number, waitMs: number): Promise<void> {
    const { maxTailReads } = this.ctx.config;
    if (this.tailReaders.count >= maxTailReads) throw new TernError('TOO_MANY', `replica ${this.ctx.id} holds ${this.tailReaders.count} tail reads, the most --max-tail-reads allows (${maxTailReads})`);
    this.active--;
    try {
      await this.tailReaders.wait(name, fromId, waitMs);
    } finally {
      this.active++;
    }
  }
}
