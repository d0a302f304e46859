/**
 * The in-memory entries of one log on one replica: a dense run of ids
 * [startId, lastId], each entry a Buffer held by reference (a slice of the
 * request body it arrived in, never a copy), with the epoch that wrote it.
 *
 * Invariant: ids are dense; `startId` only grows (by release), `lastId` only
 * shrinks by `truncateFrom` (a newer epoch replacing a divergent tail).
 */

/** Released entries are compacted away once at least this many (and half the array) are dead: below it, copying costs more than the slots. */
const MIN_COMPACT_RELEASED = 1024;
/**
 * What holding one entry costs beyond its bytes: the Buffer view over the
 * request body (about 100 bytes of V8 heap, measured on Node 20) and its
 * slot in the array. Without it a body of empty entries (4 million in 16 MiB)
 * would cost nothing against the memory bound while taking ~0.4 GB.
 */
export const ENTRY_OVERHEAD_BYTES = 128;

export interface MemoryAccount {
  /** Memory held by entries (bytes + ENTRY_OVERHEAD_BYTES each), summed over every buffer sharing the account. */
  bytes: number;
  /** The bound on `bytes` (undefined: none): appends past it are refused, followers take no more entries. */
  readonly limitBytes?: number;
}

/** The memory `entries` take once held, as a MemoryAccount counts it. */
export function memoryCost(entries: readonly Buffer[]): number {
  let bytes = entries.length * ENTRY_OVERHEAD_BYTES;
  for (const e of entries) bytes += e.length;
  return bytes;
}

/** True when holding `entries` as well would pass the account's bound. */
export function exceedsBound(account: MemoryAccount, entries: readonly Buffer[]): boolean {
  return account.limitBytes !== undefined && account.bytes + memoryCost(entries) > account.limitBytes;
}

import type { ProducerMark } from './producers.js';

export interface EpochRun {
  firstId: number;
  epoch: number;
}

/**
 * Entries from `firstId` on carry the timestamp `timeMs` (ms since the Unix
 * epoch), up to the next run's first id. A log's times never decrease with its
 * ids, so runs of one time stay few (one per append at most, fewer under load:
 * appends of the same millisecond share one) and a time is found by binary search.
 */
export interface TimeRun {
  firstId: number;
  timeMs: number;
}

/** Whether `t` may be an entry's time: ms since the Unix epoch as a non-negative safe integer. */
export function isTimestamp(t: number): boolean {
  return Number.isSafeInteger(t) && t >= 0;
}

/** The time of an entry no run covers: written before entries had timestamps, or by a replica of the previous release. */
export const UNKNOWN_TIME_MS = 0;

export class EntryBuffer {
  private entries: Buffer[] = [];
  /** Index in `entries` of `startId`; released entries are dropped lazily. */
  private head = 0;
  private heldBytes = 0;
  /** Runs of consecutive ids written in the same epoch, ascending by firstId. */
  private runs: EpochRun[] = [];
  /**
   * The producer marks of held entries (producers.ts), ascending by firstId:
   * a mark is held while its first entry is, and goes with it (truncation,
   * release; the flusher's snapshot has it from then on).
   */
  private marks: ProducerMark[] = [];
  /** Runs of equal timestamps of held entries, ascending in both ids and times (the first clipped lazily, as `runs`). */
  private times: TimeRun[] = [];
  /**
   * The time below which no later entry may be stamped: the newest time this
   * buffer has held (released or truncated entries included), or one raised
   * by `raiseTimeFloor` from what etcd records of entries held elsewhere.
   */
  private timeFloor = UNKNOWN_TIME_MS;

  constructor(
    private startIdValue: number,
    private readonly account: MemoryAccount,
  ) {}

  /** Lowest id still held (or the id the next append gets when empty). */
  get startId(): number {
    return this.startIdValue;
  }

  /** Highest id held, startId - 1 when empty. */
  get lastId(): number {
    return this.startIdValue + this.entries.length - this.head - 1;
  }

  get length(): number {
    return this.entries.length - this.head;
  }

  /** Entry bytes held (without the per-entry overhead the account adds). */
  get bytes(): number {
    return this.heldBytes;
  }

  /**
   * Holds `data` at the next ids, with the marks of `marks` and the time runs
   * of `times` whose first id is among them. Entries before the first such run
   * keep the time of the entry before them: a sender of the previous release
   * sends no times, and its entries must not look older than what they follow.
   */
  append(epoch: number, data: readonly Buffer[], marks?: readonly ProducerMark[], times?: readonly TimeRun[]): void {
    if (data.length === 0) return;
    if (times) this.appendTimes(this.lastId + 1, this.lastId + data.length, times);
    if (marks) {
      const first = this.lastId + 1;
      const last = first + data.length - 1;
      for (const m of marks) if (m.firstId >= first && m.firstId <= last) this.marks.push(m);
    }
    const last = this.runs[this.runs.length - 1];
    if (!last || last.epoch !== epoch) this.runs.push({ firstId: this.lastId + 1, epoch });
    let added = 0;
    for (const entry of data) {
      this.entries.push(entry);
      added += entry.length;
    }
    this.heldBytes += added;
    this.account.bytes += added + data.length * ENTRY_OVERHEAD_BYTES;
  }

  /** False when holding `data` as well would pass the memory bound of the account. */
  hasRoomFor(data: readonly Buffer[]): boolean {
    return !exceedsBound(this.account, data);
  }

  get(id: number): Buffer | undefined {
    if (id < this.startIdValue || id > this.lastId) return undefined;
    return this.entries[this.head + id - this.startIdValue];
  }

  /**
   * Epoch that wrote `id`; for ids below the buffer (released) the caller must
   * know better, so this answers undefined there.
   */
  epochOf(id: number): number | undefined {
    if (id < this.startIdValue || id > this.lastId) return undefined;
    for (let i = this.runs.length - 1; i >= 0; i--) {
      const run = this.runs[i]!;
      if (run.firstId <= id) return run.epoch;
    }
    return undefined;
  }

  /** Last id of the epoch run that holds `id` (ids of one run were written in one epoch). */
  runLastId(id: number): number {
    for (let i = this.runs.length - 1; i >= 0; i--) {
      if (this.runs[i]!.firstId <= id) return i + 1 < this.runs.length ? this.runs[i + 1]!.firstId - 1 : this.lastId;
    }
    return this.lastId;
  }

  /** The epoch runs of what is held, ascending (the first clipped to startId). */
  epochRuns(): EpochRun[] {
    if (this.length === 0) return [];
    return this.runs.map((run) => ({ firstId: Math.max(run.firstId, this.startIdValue), epoch: run.epoch }));
  }

  /** The time that the next entry stamps no lower than: the newest time held or known. */
  get lastTimeMs(): number {
    return this.timeFloor;
  }

  /** Raises the floor of the next entry's time to `timeMs` (what etcd records of a log's flushed or sealed entries). */
  raiseTimeFloor(timeMs: number): void {
    if (timeMs > this.timeFloor) this.timeFloor = timeMs;
  }

  /** Timestamp of held entry `id` (UNKNOWN_TIME_MS when no run covers it); undefined outside the buffer. */
  timeOf(id: number): number | undefined {
    if (id < this.startIdValue || id > this.lastId) return undefined;
    const i = this.timeRunIndex(id);
    return i < 0 ? UNKNOWN_TIME_MS : this.times[i]!.timeMs;
  }

  /** The times of ids fromId..fromId+count-1, all held. */
  timesOf(fromId: number, count: number): number[] {
    const out = new Array<number>(count);
    let i = this.timeRunIndex(fromId);
    for (let k = 0; k < count; k++) {
      const id = fromId + k;
      while (i + 1 < this.times.length && this.times[i + 1]!.firstId <= id) i++;
      out[k] = i < 0 ? UNKNOWN_TIME_MS : this.times[i]!.timeMs;
    }
    return out;
  }

  /** The first held id whose time is at least `timeMs`; lastId + 1 when none is. */
  firstIdAtOrAfter(timeMs: number): number {
    if (this.length === 0) return this.lastId + 1;
    const lo = firstNotBelow(this.times, (r) => r.timeMs < timeMs);
    if (lo === this.times.length) return this.lastId + 1;
    // Entries before the first run read as UNKNOWN_TIME_MS, which no positive time asked for reaches.
    return timeMs <= UNKNOWN_TIME_MS ? this.startIdValue : Math.max(this.times[lo]!.firstId, this.startIdValue);
  }

  /** The time runs of ids fromId..toId, the first starting at fromId (none when no run covers any of them). */
  timeRunsBetween(fromId: number, toId: number): TimeRun[] {
    const i = this.timeRunIndex(fromId);
    if (i < 0 && (this.times.length === 0 || this.times[0]!.firstId > toId)) return [];
    const out: TimeRun[] = [{ firstId: fromId, timeMs: i < 0 ? UNKNOWN_TIME_MS : this.times[i]!.timeMs }];
    for (let k = i + 1; k < this.times.length && this.times[k]!.firstId <= toId; k++) out.push(this.times[k]!);
    return out;
  }

  /** Index in `times` of the run covering `id`; -1 when none does. */
  private timeRunIndex(id: number): number {
    return firstNotBelow(this.times, (r) => r.firstId <= id) - 1;
  }

  /**
   * Records the times of ids first..last from `times` (runs that may begin
   * before `first`: the one covering it applies from it); a run no newer than
   * the one before merges into it.
   */
  private appendTimes(first: number, last: number, times: readonly TimeRun[]): void {
    for (let k = 0; k < times.length; k++) {
      const run = times[k]!;
      const next = times[k + 1];
      if (run.firstId > last) break;
      if (next && next.firstId <= first) continue;
      const prev = this.times[this.times.length - 1];
      // Times never decrease within a log; a sender that broke that (it cannot, by its own check) is held to the floor.
      const timeMs = Math.max(run.timeMs, prev?.timeMs ?? UNKNOWN_TIME_MS);
      if (prev && prev.timeMs === timeMs) continue;
      this.times.push({ firstId: Math.max(run.firstId, first), timeMs });
      if (timeMs > this.timeFloor) this.timeFloor = timeMs;
    }
  }

  /** Entries from `fromId` on, at most `maxCount` of them and about `maxBytes` (always at least one). */
  slice(fromId: number, maxCount: number, maxBytes: number): Buffer[] {
    if (fromId < this.startIdValue) throw new RangeError(`id ${fromId} is below the buffer start ${this.startIdValue}`);
    const out: Buffer[] = [];
    let bytes = 0;
    for (let i = this.head + fromId - this.startIdValue; i < this.entries.length && out.length < maxCount; i++) {
      const entry = this.entries[i]!;
      if (out.length > 0 && bytes + entry.length > maxBytes) break;
      out.push(entry);
      bytes += entry.length;
    }
    return out;
  }

  /** The marks whose first id is in [fromId, toId], ascending. */
  marksBetween(fromId: number, toId: number): ProducerMark[] {
    const out: ProducerMark[] = [];
    if (this.marks.length === 0) return out;
    // Every replication message asks: a binary search keeps it O(log n) however many marks are held.
    for (let i = firstNotBelow(this.marks, (m) => m.firstId < fromId); i < this.marks.length && this.marks[i]!.firstId <= toId; i++) out.push(this.marks[i]!);
    return out;
  }

  /**
   * The marks of `marksBetween` whose whole batch is held here in the epoch
   * that wrote its first entry: what a producer table may be rebuilt from. A
   * batch that recovery cut short (a follower held only its head when its
   * leader died, and the next epoch wrote other entries after it) is not the
   * batch its mark names, and a retry of it must not be answered with ids
   * that now hold other entries.
   */
  completeMarksBetween(fromId: number, toId: number): ProducerMark[] {
    return this.marksBetween(fromId, toId).filter((m) => this.runLastId(m.firstId) >= m.firstId + m.count - 1);
  }

  /** Drops ids >= `id`: a divergent tail written in an older epoch. */
  truncateFrom(id: number): void {
    if (id > this.lastId) return;
    if (id < this.startIdValue) throw new RangeError(`cannot truncate below the buffer start ${this.startIdValue}`);
    const cut = this.head + id - this.startIdValue;
    let dropped = 0;
    for (let i = cut; i < this.entries.length; i++) dropped += this.entries[i]!.length;
    const count = this.entries.length - cut;
    this.entries.length = cut;
    this.heldBytes -= dropped;
    this.account.bytes -= dropped + count * ENTRY_OVERHEAD_BYTES;
    while (this.runs.length > 0 && this.runs[this.runs.length - 1]!.firstId >= id) this.runs.pop();
    while (this.times.length > 0 && this.times[this.times.length - 1]!.firstId >= id) this.times.pop();
    // A batch cut in two is not the batch its mark names: the mark goes with its tail.
    while (this.marks.length > 0 && this.marks[this.marks.length - 1]!.firstId + this.marks[this.marks.length - 1]!.count > id) this.marks.pop();
    // Emptied from startId: a run begun below it (clipped by a release) describes nothing held now.
    if (this.length === 0) {
      this.runs = [];
      this.times = [];
    }
  }

  /**
   * Drops ids <= `id` once they are durable elsewhere (the flusher's object
   * store). This is the only way memory is given back besides truncation. An
   * `id` past the last one held fast-forwards an empty buffer: a replica that
   * restarted starts holding again right after what is durable.
   */
  releaseThrough(id: number): void {
    if (id < this.startIdValue) return;
    if (id >= this.lastId) {
      this.account.bytes -= this.heldBytes + this.length * ENTRY_OVERHEAD_BYTES;
      this.heldBytes = 0;
      this.entries = [];
      this.head = 0;
      this.runs = [];
      this.marks = [];
      this.times = [];
      this.startIdValue = id + 1;
      return;
    }
    let dropped = 0;
    const end = this.head + id - this.startIdValue;
    for (let i = this.head; i <= end; i++) {
      dropped += this.entries[i]!.length;
      this.entries[i] = EMPTY;
    }
    const count = end + 1 - this.head;
    this.head = end + 1;
    this.startIdValue = id + 1;
    this.heldBytes -= dropped;
    this.account.bytes -= dropped + count * ENTRY_OVERHEAD_BYTES;
    // Compact once the dead prefix dominates, so release stays amortised O(1).
    if (this.head > MIN_COMPACT_RELEASED && this.head * 2 > this.entries.length) {
      this.entries = this.entries.slice(this.head);
      this.head = 0;
    }
    while (this.runs.length > 1 && this.runs[1]!.firstId <= this.startIdValue) this.runs.shift();
    let passed = 0;
    while (passed + 1 < this.times.length && this.times[passed + 1]!.firstId <= this.startIdValue) passed++;
    if (passed > 0) this.times.splice(0, passed);
    let gone = 0;
    while (gone < this.marks.length && this.marks[gone]!.firstId <= id) gone++;
    if (gone > 0) this.marks.splice(0, gone);
  }
}

const EMPTY = Buffer.alloc(0);

/** The first index of `items` whose item is not `below` (binary search: `below` holds for a prefix of them and for nothing after it). */
function firstNotBelow<T>(items: readonly T[], below: (item: T) => boolean): number {
  let lo = 0;
  let hi = items.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (below(items[mid]!)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
