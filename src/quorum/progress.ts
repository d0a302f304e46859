/**
 * What a leader knows about one follower of one log: how far the follower
 * provably matches it, what is in flight, and whether it answers at all.
 *
 * Probe: after a loss, a gap or a transport error the leader does not know
 * where the follower stands, so it sends one message at a time from
 * matchId + 1 until an answer tells it. Replicate: the follower keeps up, so
 * up to `maxInflight` messages ride the connection at once (pipelining).
 */
export interface InflightMessage {
  seq: number;
  lastId: number;
  sentTick: number;
}

export class PeerProgress {
  /** Highest id this follower provably holds in the leader's version; -1 none. Only grows, except on amnesia. */
  matchId = -1;
  /** Next id to send. Invariant: matchId < nextId <= leader's lastId + 1. */
  nextId: number;
  state: 'probe' | 'replicate' = 'probe';
  inflight: InflightMessage[] = [];
  /** No sends before this tick (backoff after a transport error). */
  pausedUntilTick = 0;
  lastReplyTick: number;
  /** The last attempt to reach this follower was a refused connection (no process listens); cleared by a reply. */
  refused = false;
  lastSentTick = -Infinity;
  /** Commit point last told to this follower. */
  sentCommitId = -1;
  /** The follower's last reply asked for each commit point at once (it has tail readers). */
  following = false;
  /** Incarnation tag of the follower's last reply (undefined: none yet, or a replica too old to send it). */
  incarnation: number | undefined;

  constructor(
    readonly peer: string,
    nextId: number,
    nowTick: number,
  ) {
    this.nextId = nextId;
    this.lastReplyTick = nowTick;
  }

  /** Forget what is in flight and restart from what is known to be held. */
  resetToProbe(resumeTick: number): void {
    this.state = 'probe';
    this.inflight = [];
    this.nextId = this.matchId + 1;
    this.pausedUntilTick = resumeTick;
  }

  takeInflight(seq: number): InflightMessage | undefined {
    const i = this.inflight.findIndex((m) => m.seq === seq);
    if (i < 0) return undefined;
    return this.inflight.splice(i, 1)[0];
  }
}
