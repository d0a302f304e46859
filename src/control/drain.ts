/**
 * A leader giving up one log on purpose, as a pure state machine: a handoff
 * to a chosen replica, or one log of a controlled shutdown. The leader has
 * stopped taking appends; it lets the rounds in flight finish, asks each
 * target in turn to take the log over in place of its key (the target
 * recovers as after a failure, so nothing acknowledged is lost), and, when
 * no target takes it and closing is allowed, waits until object storage
 * holds every committed id and closes the segment clean in etcd (BookKeeper's
 * closed ledger: the next leader needs no fence answers).
 *
 * Events in with `step`, effects out with `effects()`; time is ticks.
 */

export interface DrainSettings {
  epoch: number;
  /** Replicas to offer the log to, in order. */
  targets: readonly string[];
  /** With no taker: close the segment clean (shutdown) rather than keep leading (handoff). */
  closeWhenRefused: boolean;
  /** Rounds still in flight after this many ticks are left to fail on their own. */
  roundsTimeoutTicks: number;
}

/** What the leader looks like right now. */
export interface LeaderSnapshot {
  /** Proposals not yet acknowledged or failed. */
  pending: number;
  deposed: boolean;
  commitId: number;
}

export type DrainOutcome =
  | { kind: 'handedOff'; to: string }
  | { kind: 'closedClean'; lastId: number }
  /** Another leader fenced this one meanwhile. */
  | { kind: 'lost' }
  /** No target took the log and closing was not allowed: it stays led here. */
  | { kind: 'refused'; reason: string }
  | { kind: 'unfinished'; reason: string };

export type DrainEffect =
  | { kind: 'handoff'; to: string; expectedEpoch: number }
  | { kind: 'closeClean'; epoch: number; lastId: number }
  | { kind: 'stepDown' }
  | { kind: 'done'; outcome: DrainOutcome };

export type DrainEvent =
  | { kind: 'leader'; leader: LeaderSnapshot }
  | { kind: 'handoffAnswer'; to: string; ok: boolean; reason?: string }
  /** Object storage holds every id through `flushedId`. */
  | { kind: 'flushed'; flushedId: number }
  | { kind: 'closed'; ok: boolean; reason?: string }
  | { kind: 'tick' };

type Phase =
  | { at: 'rounds'; deadline: number }
  | { at: 'offering'; index: number; lastRefusal: string }
  | { at: 'flushing'; lastId: number }
  | { at: 'closing'; lastId: number }
  | { at: 'over' };

export class DrainMachine {
  private phase: Phase;
  private pending: DrainEffect[] = [];
  private ticks = 0;
  private leader: LeaderSnapshot;
  private flushedId = -1;

  constructor(
    private readonly settings: DrainSettings,
    leader: LeaderSnapshot,
    flushedId: number,
  ) {
    this.leader = leader;
    this.flushedId = flushedId;
    this.phase = { at: 'rounds', deadline: settings.roundsTimeoutTicks };
    this.checkRounds();
  }

  get isOver(): boolean {
    return this.phase.at === 'over';
  }

  effects(): DrainEffect[] {
    const out = this.pending;
    this.pending = [];
    return out;
  }

  step(event: DrainEvent): void {
    if (this.phase.at === 'over') return;
    switch (event.kind) {
      case 'tick':
        this.ticks++;
        return this.phase.at === 'rounds' ? this.checkRounds() : undefined;
      case 'leader':
        this.leader = event.leader;
        if (this.phase.at === 'rounds') return this.checkRounds();
        return this.phase.at === 'flushing' && event.leader.deposed ? this.finish({ kind: 'unfinished', reason: `fenced at epoch ${this.settings.epoch} while flushing` }) : undefined;
      case 'handoffAnswer':
        return this.onHandoffAnswer(event);
      case 'flushed':
        this.flushedId = Math.max(this.flushedId, event.flushedId);
        return this.phase.at === 'flushing' ? this.checkFlushed(this.phase.lastId) : undefined;
      case 'closed':
        return this.onClosed(event);
    }
  }

  private checkRounds(): void {
    if (this.phase.at !== 'rounds') return;
    if (this.leader.pending > 0 && !this.leader.deposed && this.ticks < this.phase.deadline) return;
    this.offer(0, 'no replica to hand the log to');
  }

  /** Offers the log to the index-th target; past the last, closes clean or gives up. */
  private offer(index: number, lastRefusal: string): void {
    if (this.leader.deposed) return this.finish({ kind: 'lost' });
    const to = this.settings.targets[index];
    if (to !== undefined) {
      this.phase = { at: 'offering', index, lastRefusal };
      return this.emit({ kind: 'handoff', to, expectedEpoch: this.settings.epoch });
    }
    if (!this.settings.closeWhenRefused) return this.finish({ kind: 'refused', reason: lastRefusal });
    // Acknowledged entries are all committed; nothing after the commit point was acknowledged.
    this.phase = { at: 'flushing', lastId: this.leader.commitId };
    this.checkFlushed(this.leader.commitId);
  }

  private onHandoffAnswer(event: Extract<DrainEvent, { kind: 'handoffAnswer' }>): void {
    const phase = this.phase;
    if (phase.at !== 'offering' || this.settings.targets[phase.index] !== event.to) return;
    if (event.ok) return this.finish({ kind: 'handedOff', to: event.to });
    this.offer(phase.index + 1, `handoff to ${event.to} failed: ${event.reason ?? 'refused'}`);
  }

  private checkFlushed(lastId: number): void {
    if (this.flushedId < lastId) return;
    this.phase = { at: 'closing', lastId };
    this.emit({ kind: 'closeClean', epoch: this.settings.epoch, lastId });
  }

  private onClosed(event: Extract<DrainEvent, { kind: 'closed' }>): void {
    const phase = this.phase;
    if (phase.at !== 'closing') return;
    if (!event.ok) return this.finish({ kind: 'unfinished', reason: event.reason ?? `lost epoch ${this.settings.epoch} before closing` });
    this.emit({ kind: 'stepDown' });
    this.finish({ kind: 'closedClean', lastId: phase.lastId });
  }

  private finish(outcome: DrainOutcome): void {
    this.phase = { at: 'over' };
    this.emit({ kind: 'done', outcome });
  }

  private emit(effect: DrainEffect): void {
    this.pending.push(effect);
  }
}
