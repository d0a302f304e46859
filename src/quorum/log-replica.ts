/**
 * What every replica keeps for one log, whatever its role: the entries it
 * holds in memory, the highest epoch it has seen (its fence), and the commit
 * point it knows. The follower's side of the protocol lives here because a
 * leader is a log replica too: it holds its own entries in the same buffer.
 */
import { EntryBuffer, type MemoryAccount, type TimeRun } from './entry-buffer.js';
import { majorityOf } from './majority.js';
import { ReplyStatus, type AppendReply, type AppendRequest, type EntryRun } from './messages.js';
import type { ProducerMark } from './producers.js';

/** Replicas per log when not told: the only count the server supports (config.ts `replicas`). */
const DEFAULT_REPLICAS = 3;

export class LogReplica {
  readonly buffer: EntryBuffer;
  /** Highest epoch seen for this log; messages of lower epochs are refused (fencing). */
  epoch: number;
  /** Leader of `epoch`, when known from its messages. */
  leader: string | undefined;
  /**
   * Highest id known committed AND held here in the leader's version.
   * Invariant: commitId <= buffer.lastId (or below the buffer when released), and never decreases.
   */
  commitId = -1;
  /**
   * This replica and the leader make a quorum (2 of 3): what a follower takes
   * from the leader of its fence is then committed the moment it holds it,
   * without waiting to be told. The leader holds every entry it sends (it
   * wrote them before sending), so the two copies are a quorum; a recovery
   * fences a quorum of which one of the two is a member, and that one
   * answers with the entries, having either taken them before its fence (it
   * reports them) or refused them after it. The same argument makes a
   * leader's own commit point sound, from the other side.
   */
  readonly pairIsQuorum: boolean;

  constructor(
    readonly log: string,
    account: MemoryAccount,
    options: { startId?: number; epoch?: number; replicas?: number } = {},
  ) {
    this.buffer = new EntryBuffer(options.startId ?? 0, account);
    this.epoch = options.epoch ?? 0;
    this.pairIsQuorum = majorityOf(options.replicas ?? DEFAULT_REPLICAS) <= 2;
  }

  /** Raises the fence: from now on messages of epochs below `epoch` are refused. */
  observeEpoch(epoch: number, leader?: string): void {
    if (epoch > this.epoch) {
      this.epoch = epoch;
      this.leader = leader;
    } else if (epoch === this.epoch && leader !== undefined) {
      this.leader = leader;
    }
  }

  /**
   * The follower rule. Accepts the entries only if they extend a prefix this
   * replica shares with the leader; replaces a divergent tail of an older
   * epoch; never accepts a gap; takes nothing new past the memory bound
   * (Full). Idempotent: a duplicated or reordered message changes nothing
   * already held.
   */
  handleAppend(req: AppendRequest): AppendReply {
    if (req.epoch < this.epoch) return this.reply(ReplyStatus.Fenced, req.seq, this.buffer.lastId);
    this.observeEpoch(req.epoch, req.leader);
    const buffer = this.buffer;
    const prevId = req.firstId - 1;
    if (prevId > buffer.lastId) return this.reply(ReplyStatus.Gap, req.seq, buffer.lastId);
    if (req.prevEpoch >= 0 && prevId >= buffer.startId && buffer.epochOf(prevId) !== req.prevEpoch) {
      // Our entry at prevId came from another epoch's leader: drop it and everything after,
      // and let the leader walk back until the logs match.
      this.truncateUncommitted(prevId);
      return this.reply(ReplyStatus.Gap, req.seq, buffer.lastId);
    }
    // The prefix up to prevId matches the leader's (checked above); what follows needs room.
    const written = this.extend(req.firstId, req.entryEpoch, req.entries, true, req.marks, req.times);
    const matchId = written ?? prevId;
    // Only ids this message proved to match the leader may count as committed here.
    const commit = this.pairIsQuorum ? matchId : Math.min(req.commitId, matchId);
    if (commit > this.commitId) this.commitId = commit;
    return this.reply(written === undefined ? ReplyStatus.Full : ReplyStatus.Ok, req.seq, matchId);
  }

  /**
   * Takes entries a recovering leader fetched from the replica that holds the
   * most of the old segment: its own divergent or missing tail is replaced.
   * The caller has checked that `firstId - 1` matches.
   */
  adopt(run: EntryRun): void {
    if (run.firstId > this.buffer.lastId + 1) throw new RangeError(`log ${this.log}: adopting at ${run.firstId} would leave a gap after ${this.buffer.lastId}`);
    this.extend(run.firstId, run.epoch, run.entries, false, run.marks, run.times);
  }

  /** Entries from fromId to toId (inclusive) grouped by epoch, about maxBytes at most (always at least one entry). */
  runsBetween(fromId: number, toId: number, maxBytes: number): EntryRun[] {
    const runs: EntryRun[] = [];
    let bytes = 0;
    for (let id = Math.max(fromId, this.buffer.startId); id <= Math.min(toId, this.buffer.lastId) && (runs.length === 0 || bytes < maxBytes); ) {
      const last = Math.min(toId, this.buffer.runLastId(id));
      const entries = this.buffer.slice(id, last - id + 1, Math.max(1, maxBytes - bytes));
      for (const e of entries) bytes += e.length;
      const run: EntryRun = { firstId: id, epoch: this.buffer.epochOf(id)!, entries };
      const marks = this.buffer.marksBetween(id, id + entries.length - 1);
      if (marks.length > 0) run.marks = marks;
      const times = this.buffer.timeRunsBetween(id, id + entries.length - 1);
      if (times.length > 0) run.times = times;
      runs.push(run);
      id += entries.length;
    }
    return runs;
  }

  /**
   * Forgets ids up to `flushedId`, which object storage now holds: they are
   * committed by definition, so the commit point moves up with them.
   */
  releaseThrough(flushedId: number): void {
    this.buffer.releaseThrough(flushedId);
    if (flushedId > this.commitId) this.commitId = flushedId;
  }

  /** Drops everything after `lastId` (recovery decided those ids never existed). */
  discardAfter(lastId: number): void {
    this.truncateUncommitted(lastId + 1);
  }

  /**
   * Writes entries at firstId.. unless already held from the same epoch
   * (duplicates); an entry of another epoch at the same id is divergent: it
   * and all after it are dropped first. Returns the last id written, or
   * undefined when `bounded` and the new entries would pass the memory
   * bound: then nothing is written (a divergent tail may have been dropped).
   */
  private extend(firstId: number, epoch: number, entries: Buffer[], bounded: boolean, marks?: readonly ProducerMark[], times?: readonly TimeRun[]): number | undefined {
    const buffer = this.buffer;
    // Entries below our buffer were released after being made durable; they match by definition.
    let i = Math.max(0, buffer.startId - firstId);
    for (; i < entries.length; i++) {
      const id = firstId + i;
      if (id > buffer.lastId) break;
      if (buffer.epochOf(id) !== epoch) {
        this.truncateUncommitted(id);
        break;
      }
    }
    if (i < entries.length) {
      const fresh = i === 0 ? entries : entries.slice(i);
      if (bounded && !buffer.hasRoomFor(fresh)) return undefined;
      buffer.append(epoch, fresh, marks, times);
    }
    return firstId + entries.length - 1;
  }

  private truncateUncommitted(id: number): void {
    if (id > this.buffer.lastId) return;
    if (id <= this.commitId) {
      throw new Error(`invariant broken: log ${this.log} would drop committed id ${id} (commit ${this.commitId})`);
    }
    this.buffer.truncateFrom(id);
  }

  private reply(status: ReplyStatus, seq: number, lastId: number): AppendReply {
    return { status, epoch: this.epoch, seq, lastId };
  }
}
