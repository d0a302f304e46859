/**
 * Takeover and recovery of one log (BookKeeper-style) as a pure state
 * machine, in the manner of quorum/leader.ts: events go in with `step`, the
 * effects they cause pile up until the driver takes them with `effects()`.
 * No I/O, no clocks, no randomness: time is the number of `tick` events.
 *
 * The steps: claim the next epoch in etcd, fence the replicas, decide the end
 * of the old segment from the answers that count (quorum/recovery.ts; none
 * needed for a segment closed clean), fetch what this replica lacks, lead in
 * the new epoch with appends held until a quorum holds that end, then seal
 * the old segments and open this epoch's one in etcd. A failure after the
 * claim gives the leader key back so another replica can finish.
 */
import type { LogReplica } from '../quorum/log-replica.js';
import type { EntryRun } from '../quorum/messages.js';
import { liveIncarnations } from './placement.js';
import { decideRecovery, isClosedClean, validLastId, type FenceAnswer, type SegmentView } from '../quorum/recovery.js';

export interface TakeoverSettings {
  self: string;
  /** This process's incarnation: its fence answer carries it. */
  incarnation: string;
  /** A recovery that cannot decide yet (no counted quorum) fences again after this many ticks. */
  undecidedRetryTicks: number;
  /** A fence answer not in after this many ticks is given up on for the round. */
  fenceTimeoutTicks: number;
  /** A quorum has this many ticks to hold the recovered tail in the new epoch. */
  holdTicks: number;
}

export interface TakeoverRequest {
  expectedEpoch: number;
  /** The exact leader key being replaced (a handoff); absent: the key must be free. */
  replacing?: string;
  /** Recover without a counted quorum, accepting the loss of what only restarted replicas held. */
  unsafe: boolean;
}

/** The log as etcd shows it, with the live members the driver knows. */
export interface LogView {
  replicas: readonly string[];
  epoch: number;
  leader: { id: string; epoch: number } | undefined;
  segments: readonly SegmentView[];
  /** Every id through this one is in object storage. */
  flushedId: number;
  /** Registered replica processes: id -> incarnation. */
  live: Readonly<Record<string, string>>;
}

/** The machine's view of a log record (etcd's shape), with the registered incarnations `incarnationOf` knows. */
export function logViewOf(
  record: { meta: { replicas: readonly string[] }; epoch: number; leader: { id: string; epoch: number } | undefined; segments: readonly SegmentView[] },
  flushedId: number,
  incarnationOf: (id: string) => string | undefined,
): LogView {
  return { replicas: record.meta.replicas, epoch: record.epoch, leader: record.leader, segments: record.segments, flushedId, live: liveIncarnations(record.meta.replicas, incarnationOf) };
}

export type TakeoverEffect =
  | { kind: 'claim'; expectedEpoch: number; replacing?: string }
  /** Read the log's record; `fresh`: from etcd itself, not the watched cache. */
  | { kind: 'read'; fresh: boolean }
  /** Stop leading the log in any older epoch. */
  | { kind: 'stepDown' }
  | { kind: 'fence'; to: string; epoch: number; round: number }
  | { kind: 'fetch'; from: string; fromId: number; toId: number }
  /** Lead the log in `epoch` (replicate, but hold appends) until the takeover is done. */
  | { kind: 'lead'; epoch: number; peers: string[] }
  | { kind: 'seal'; epoch: number; seals: SegmentView[]; open: SegmentView }
  /** Recovery cannot decide yet; it stays unavailable and asks again. */
  | { kind: 'blocked'; reason: string }
  /** Give the leader key of `epoch` back (retried until etcd answers). */
  | { kind: 'release'; epoch: number }
  | { kind: 'done'; epoch: number; recoveredId: number; sealed: SegmentView[]; warning?: string }
  | { kind: 'failed'; reason: string };

export type TakeoverEvent =
  | { kind: 'claimed'; epoch: number | undefined }
  | { kind: 'read'; view: LogView | undefined }
  | { kind: 'fenceAnswer'; round: number; answer: FenceAnswer }
  | { kind: 'fenceFailed'; round: number; from: string }
  | { kind: 'fetched'; runs: EntryRun[] }
  /** The new epoch's leader made progress (commit point in the shared LogReplica) or was deposed. */
  | { kind: 'leaderProgress'; deposed: boolean }
  | { kind: 'sealed'; ok: boolean }
  /** An operation the driver carried out failed (etcd or a peer unreachable). */
  | { kind: 'ioFailed'; reason: string }
  | { kind: 'unsafe' }
  | { kind: 'tick' };

type Phase =
  | { at: 'claiming' }
  | { at: 'reading' }
  | { at: 'fencing'; round: number; pending: Set<string>; answers: FenceAnswer[]; deadline: number }
  | { at: 'undecided'; retryAt: number }
  | { at: 'rereading' }
  | { at: 'fetching'; source: string; next: number; endId: number }
  | { at: 'holding'; endId: number; deadline: number }
  | { at: 'sealRead'; endId: number }
  | { at: 'sealing'; sealed: SegmentView[]; endId: number }
  | { at: 'over' };

export class TakeoverMachine {
  private phase: Phase = { at: 'claiming' };
  private pending: TakeoverEffect[] = [];
  private ticks = 0;
  private rounds = 0;
  private epoch: number | undefined;
  private view: LogView | undefined;
  private unsafe: boolean;
  private readonly expectedEpoch: number;
  private warning: string | undefined;
  /** Why the recovery cannot decide yet (no counted quorum). */
  blockedBy: string | undefined;

  constructor(
    private readonly settings: TakeoverSettings,
    /** This replica's memory of the log: the recovery trims and fills it. */
    private readonly replica: LogReplica,
    request: TakeoverRequest,
  ) {
    this.unsafe = request.unsafe;
    this.expectedEpoch = request.expectedEpoch;
    this.emit({ kind: 'claim', expectedEpoch: request.expectedEpoch, ...(request.replacing !== undefined ? { replacing: request.replacing } : {}) });
  }

  get isOver(): boolean {
    return this.phase.at === 'over';
  }

  /** The epoch claimed, once claimed. */
  get claimedEpoch(): number | undefined {
    return this.epoch;
  }

  /** Takes the effects piled up so far, in order. */
  effects(): TakeoverEffect[] {
    const out = this.pending;
    this.pending = [];
    return out;
  }

  step(event: TakeoverEvent): void {
    if (this.phase.at === 'over') return;
    switch (event.kind) {
      case 'tick':
        return this.onTick();
      case 'unsafe':
        this.unsafe = true;
        return this.phase.at === 'fencing' ? this.settleFence(this.phase) : undefined;
      case 'ioFailed':
        return this.phase.at === 'claiming' ? this.claimUnknown(event.reason) : this.fail(event.reason);
      case 'claimed':
        return this.onClaimed(event.epoch);
      case 'read':
        return this.onRead(event.view);
      case 'fenceAnswer':
      case 'fenceFailed':
        return this.onFenceOutcome(event);
      case 'fetched':
        return this.onFetched(event.runs);
      case 'leaderProgress':
        return this.onLeaderProgress(event.deposed);
      case 'sealed':
        return this.onSealed(event.ok);
    }
  }

  /** What this replica itself answers a fence of the log. */
  fenceAnswer(): FenceAnswer {
    return fenceAnswerOf(this.settings.self, this.settings.incarnation, this.replica);
  }

  private onTick(): void {
    this.ticks++;
    const phase = this.phase;
    if (phase.at === 'fencing' && this.ticks >= phase.deadline) {
      phase.pending.clear();
      this.settleFence(phase);
    } else if (phase.at === 'undecided' && this.ticks >= phase.retryAt) {
      this.read('rereading');
    } else if (phase.at === 'holding') {
      this.checkHold(phase, false);
    }
  }

  private onClaimed(epoch: number | undefined): void {
    if (this.phase.at !== 'claiming') return;
    if (epoch === undefined) return this.fail('the epoch is no longer current or another replica leads the log', false);
    this.epoch = epoch;
    this.emit({ kind: 'stepDown' });
    this.replica.observeEpoch(epoch, this.settings.self);
    // From etcd itself, not the watched view: the view may not show yet what the leader before
    // this one wrote just before the claim (its segment, after a handoff), and recovering from
    // an older list of segments would cut that leader's acknowledged entries (found by the simulator).
    this.read('reading', true);
  }

  /**
   * The claim's answer never came: etcd may have applied it. Giving back the
   * key it would have written is safe either way (the release is compared on
   * this process's exact key for that epoch); without it, a lost answer left
   * the log led by a key nobody acts on until this replica's lease ended,
   * which is never while it lives (found by the simulator).
   */
  private claimUnknown(reason: string): void {
    this.phase = { at: 'over' };
    this.emit({ kind: 'release', epoch: this.expectedEpoch + 1 }, { kind: 'failed', reason });
  }

  private read(at: 'reading' | 'rereading', fresh = false): void {
    this.phase = { at };
    this.emit({ kind: 'read', fresh });
  }

  private onRead(view: LogView | undefined): void {
    const phase = this.phase;
    if (!view) return this.fail('the log was deleted');
    this.view = view;
    if (phase.at === 'sealRead') return this.seal(phase.endId);
    if (phase.at === 'rereading' && (view.epoch !== this.epoch || view.leader?.id !== this.settings.self)) return this.fail(`epoch ${this.epoch} moved on during recovery`);
    if (phase.at !== 'reading' && phase.at !== 'rereading') return;
    this.replica.releaseThrough(view.flushedId);
    const last = view.segments.at(-1);
    if (!last) return this.lead(-1);
    if (isClosedClean(last)) return this.recoverCleanClose(last.lastId!);
    this.fence();
  }

  /** A segment closed clean ends at its recorded lastId, all of it in object storage: no fence answers needed. */
  private recoverCleanClose(endId: number): void {
    const view = this.view!;
    // Read from etcd after the claim, so the manifest (written before the seal) is all there.
    if (view.flushedId < endId) return this.fail(`segment closed clean at ${endId} but object storage holds only through ${view.flushedId}`);
    this.replica.discardAfter(validLastId(this.fenceAnswer(), view.segments));
    this.replica.releaseThrough(view.flushedId);
    this.lead(endId);
  }

  private fence(): void {
    const view = this.view!;
    const round = ++this.rounds;
    const peers = view.replicas.filter((id) => id !== this.settings.self && view.live[id] !== undefined);
    const phase: Phase = { at: 'fencing', round, pending: new Set(peers), answers: [this.fenceAnswer()], deadline: this.ticks + this.settings.fenceTimeoutTicks };
    this.phase = phase;
    for (const to of peers) this.emit({ kind: 'fence', to, epoch: this.epoch!, round });
    this.settleFence(phase);
  }

  private onFenceOutcome(event: Extract<TakeoverEvent, { kind: 'fenceAnswer' | 'fenceFailed' }>): void {
    const phase = this.phase;
    if (phase.at !== 'fencing' || event.round !== phase.round) return;
    const from = event.kind === 'fenceAnswer' ? event.answer.replica : event.from;
    if (!phase.pending.delete(from)) return;
    if (event.kind === 'fenceAnswer') phase.answers.push(event.answer);
    this.settleFence(phase);
  }

  /**
   * Decides as soon as the answers that count can (any two counted answers
   * include one of the replicas that acknowledged an entry, so their highest
   * is safe), or once every peer has answered or timed out. The unsafe
   * override waits for every answer, to lose as little as it can.
   */
  private settleFence(phase: Extract<Phase, { at: 'fencing' }>): void {
    const view = this.view!;
    const decision = decideRecovery(view.segments, phase.answers, view.replicas.length, this.unsafe);
    if (phase.pending.size > 0 && (this.unsafe || decision.kind !== 'recover')) return;
    if (decision.kind === 'unavailable') {
      this.blockedBy = decision.reason;
      this.phase = { at: 'undecided', retryAt: this.ticks + this.settings.undecidedRetryTicks };
      return this.emit({ kind: 'blocked', reason: decision.reason });
    }
    this.blockedBy = undefined;
    if (this.unsafe) this.warning = `recovered without a counted quorum from ${decision.counted.join(', ')}: acknowledged entries after id ${decision.endId} held only by replicas that restarted are lost`;
    const mine = validLastId(this.fenceAnswer(), view.segments);
    this.replica.discardAfter(mine);
    if (mine >= decision.endId) return this.adoptEnd(decision.endId);
    this.phase = { at: 'fetching', source: decision.source, next: mine + 1, endId: decision.endId };
    this.emit({ kind: 'fetch', from: decision.source, fromId: mine + 1, toId: decision.endId });
  }

  private onFetched(runs: EntryRun[]): void {
    const phase = this.phase;
    if (phase.at !== 'fetching') return;
    if (runs.length === 0) return this.fail(`${phase.source} no longer holds id ${phase.next}`);
    for (const run of runs) {
      if (run.firstId > phase.next) return this.fail(`${phase.source} answered from id ${run.firstId}, not ${phase.next}`);
      this.replica.adopt(run);
      phase.next = Math.max(phase.next, run.firstId + run.entries.length);
    }
    if (phase.next <= phase.endId) return this.emit({ kind: 'fetch', from: phase.source, fromId: phase.next, toId: phase.endId });
    this.adoptEnd(phase.endId);
  }

  private adoptEnd(endId: number): void {
    this.replica.discardAfter(endId);
    this.lead(endId);
  }

  private lead(endId: number): void {
    const view = this.view!;
    this.emit({ kind: 'lead', epoch: this.epoch!, peers: view.replicas.filter((id) => id !== this.settings.self) });
    const phase: Phase = { at: 'holding', endId, deadline: this.ticks + this.settings.holdTicks };
    this.phase = phase;
    this.checkHold(phase, false);
  }

  private onLeaderProgress(deposed: boolean): void {
    if (this.phase.at === 'holding') this.checkHold(this.phase, deposed);
  }

  private checkHold(phase: Extract<Phase, { at: 'holding' }>, deposed: boolean): void {
    if (this.replica.commitId >= phase.endId && !deposed) {
      this.phase = { at: 'sealRead', endId: phase.endId };
      return this.emit({ kind: 'read', fresh: false });
    }
    if (deposed || this.ticks > phase.deadline) this.fail(`no quorum took the recovered tail up to ${phase.endId}`);
  }

  /** Seals every open segment at the recovered end and opens this epoch's, written to the live replicas. */
  private seal(endId: number): void {
    const view = this.view!;
    const sealed = view.segments.filter((seg) => seg.lastId === null).map((seg) => ({ ...seg, lastId: endId }));
    const replicas: Record<string, string> = {};
    for (const id of view.replicas) if (view.live[id] !== undefined) replicas[id] = view.live[id]!;
    const open: SegmentView = { epoch: this.epoch!, firstId: endId + 1, lastId: null, replicas };
    this.phase = { at: 'sealing', sealed, endId };
    this.emit({ kind: 'seal', epoch: this.epoch!, seals: sealed, open });
  }

  private onSealed(ok: boolean): void {
    const phase = this.phase;
    if (phase.at !== 'sealing') return;
    if (!ok) return this.fail(`lost epoch ${this.epoch} before sealing`);
    this.phase = { at: 'over' };
    this.emit({ kind: 'done', epoch: this.epoch!, recoveredId: phase.endId, sealed: phase.sealed, ...(this.warning ? { warning: this.warning } : {}) });
  }

  private fail(reason: string, claimed = this.epoch !== undefined): void {
    this.phase = { at: 'over' };
    if (claimed) this.emit({ kind: 'stepDown' }, { kind: 'release', epoch: this.epoch! });
    this.emit({ kind: 'failed', reason });
  }

  private emit(...effects: TakeoverEffect[]): void {
    this.pending.push(...effects);
  }
}

/** What a replica answers a fence of a log: what it holds in memory, by epoch run. */
export function fenceAnswerOf(self: string, incarnation: string, replica: LogReplica): FenceAnswer {
  const buffer = replica.buffer;
  return { replica: self, incarnation, startId: buffer.startId, lastId: buffer.lastId, runs: buffer.epochRuns() };
}
