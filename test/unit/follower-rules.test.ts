/**
 * The follower's rules for one log (control/follower.ts): who steps down on a
 * newer epoch, which fences are refused, when a leader has lost its key, who
 * releases flushed entries.
 */
import { describe, expect, it } from 'vitest';
import { leadershipLost, receiveAppend, receiveFence, releasesOnFlush } from '../../src/control/follower.js';
import { LogReplica } from '../../src/quorum/log-replica.js';
import { ReplyStatus, type AppendRequest } from '../../src/quorum/messages.js';

const req = (epoch: number, firstId = 0): AppendRequest => ({ log: 'l', epoch, leader: 'b', seq: 1, firstId, prevEpoch: -1, entryEpoch: epoch, commitId: -1, entries: [Buffer.from('x')] });

describe('follower rules', () => {
  it('a replication message of a newer epoch deposes a local leader of an older one, and is answered with the incarnation tag', () => {
    const replica = new LogReplica('l', { bytes: 0 });
    const out = receiveAppend(replica, { epoch: 2, isDeposed: false }, req(3), 77);
    expect(out).toMatchObject({ stepDown: true, reply: { status: ReplyStatus.Ok, incarnation: 77 } });
    expect(receiveAppend(replica, { epoch: 3, isDeposed: false }, req(3, 1), undefined).stepDown).toBe(false);
    expect(receiveAppend(replica, undefined, req(2, 2), undefined).reply.status).toBe(ReplyStatus.Fenced);
  });

  it('refuses a fence older than what it has seen, and otherwise raises it', () => {
    const replica = new LogReplica('l', { bytes: 0 }, { epoch: 5 });
    expect(receiveFence(replica, undefined, 4, 'a')).toEqual({ refusedAt: 5 });
    expect(receiveFence(replica, { epoch: 5, isDeposed: false }, 5, 'a')).toEqual({ raised: false, stepDown: false });
    expect(receiveFence(replica, { epoch: 5, isDeposed: false }, 6, 'b')).toEqual({ raised: true, stepDown: true });
    expect(replica.epoch).toBe(6);
    expect(replica.leader).toBe('b');
  });

  it('a leader no longer leads once its key is gone or names another epoch', () => {
    expect(leadershipLost({ epoch: 3, leader: { epoch: 3 } }, 3)).toBe(false);
    expect(leadershipLost(undefined, 3)).toBe(true);
    expect(leadershipLost({ epoch: 3, leader: undefined }, 3)).toBe(true);
    expect(leadershipLost({ epoch: 4, leader: { epoch: 4 } }, 3)).toBe(true);
  });

  it('only a replica that does not lead and is not taking over releases on a flush', () => {
    expect(releasesOnFlush(undefined, false)).toBe(true);
    expect(releasesOnFlush({ epoch: 1, isDeposed: true }, false)).toBe(true);
    expect(releasesOnFlush({ epoch: 1, isDeposed: false }, false)).toBe(false);
    expect(releasesOnFlush(undefined, true)).toBe(false);
  });
});
