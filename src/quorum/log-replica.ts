/**
 * What every replica keeps for one log, whatever its role: the entries it
 * holds in memory, the highest epoch it has seen (its fence), and the commit
 * point it knows. The follower's side of the protocol lives here because a
 * leader is a log replica too: it holds its own entries in the same buffer.
 */
import { EntryBuffer, type MemoryAccount } from './entry-buffer.js';
import { ReplyStatus, type AppendReply, type AppendRequest } from './messages.js';

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

  constructor(
    readonly log: string,
    account: MemoryAccount,
    options: { startId?: number; epoch?: number } = {},
  ) {
    this.buffer = new EntryBuffer(options.startId ?? 0, account);
    this.epoch = options.epoch ?? 0;
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
   * epoch; never accepts a gap. Idempotent: a duplicated or reordered message
   * changes nothing already held.
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
    if (req.firstId < buffer.startId) {
      // Entries below our buffer were released after being made durable; they match by definition.
      return this.acceptFrom(req, buffer.startId - req.firstId);
    }
    return this.acceptFrom(req, 0);
  }

  private acceptFrom(req: AppendRequest, skip: number): AppendReply {
    const buffer = this.buffer;
    let i = skip;
    // Skip what we already hold from this epoch (duplicates); cut where an older epoch diverges.
    for (; i < req.entries.length; i++) {
      const id = req.firstId + i;
      if (id > buffer.lastId) break;
      if (buffer.epochOf(id) !== req.epoch) {
        this.truncateUncommitted(id);
        break;
      }
    }
    if (i < req.entries.length) buffer.append(req.epoch, i === 0 ? req.entries : req.entries.slice(i));
    const matchId = req.firstId + req.entries.length - 1;
    // Only ids this message proved to match the leader may count as committed here.
    const commit = Math.min(req.commitId, matchId);
    if (commit > this.commitId) this.commitId = commit;
    return this.reply(ReplyStatus.Ok, req.seq, matchId);
  }

  private truncateUncommitted(id: number): void {
    if (id <= this.commitId) {
      throw new Error(`invariant broken: log ${this.log} would drop committed id ${id} (commit ${this.commitId})`);
    }
    this.buffer.truncateFrom(id);
  }

  private reply(status: ReplyStatus, seq: number, lastId: number): AppendReply {
    return { status, epoch: this.epoch, seq, lastId };
  }
}
