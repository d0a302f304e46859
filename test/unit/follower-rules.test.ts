/**
 * The follower's rules for one log (control/follower.ts): who steps down on a
 * newer epoch, which fences are refused, when a leader has lost its key, who
 * releases flushed entries; which peer claims etcd must show first.
 */
import { describe, expect, it } from 'vitest';
import { judgeLeaderClaim, leadershipLost, receiveAppend, receiveFence, releasesOnFlush, takeoverRefusal, type TakeoverAuthority } from '../../src/control/follower.js';
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

  describe('a leadership claim is judged against etcd before it acts', () => {
    const etcd = { epoch: 4, leader: { id: 'b', epoch: 4 } };
    const fenced = { epoch: 3, leader: 'a' };
    it.each([
      { name: 'the leader key of its epoch', claim: { epoch: 4, leader: 'b' }, etcd, verdict: 'proven' },
      { name: 'another replica than the key names', claim: { epoch: 4, leader: 'c' }, etcd, verdict: 'unproven' },
      { name: 'an epoch etcd has not reached (5000000000)', claim: { epoch: 5_000_000_000, leader: 'b' }, etcd, verdict: 'unproven' },
      { name: 'no leader key at all', claim: { epoch: 4, leader: 'b' }, etcd: { epoch: 4, leader: undefined }, verdict: 'unproven' },
      { name: 'an epoch etcd moved past, by a leader it accepted', claim: { epoch: 3, leader: 'a' }, etcd, verdict: 'known' },
      { name: 'an epoch etcd moved past, by a leader it never saw', claim: { epoch: 3, leader: 'c' }, etcd, verdict: 'stale' },
      { name: 'an epoch older than its fence', claim: { epoch: 2, leader: 'c' }, etcd, verdict: 'known' },
      { name: 'this replica itself, even holding the key', claim: { epoch: 4, leader: 'me' }, etcd: { epoch: 4, leader: { id: 'me', epoch: 4 } }, verdict: 'forged' },
    ])('$name: $verdict', ({ claim, etcd, verdict }) => {
      expect(judgeLeaderClaim('me', fenced, etcd, claim)).toBe(verdict);
    });

    it('a replica fenced by nobody (leader unknown) proves even its own epoch again', () => {
      expect(judgeLeaderClaim('me', { epoch: 4, leader: undefined }, { epoch: 4, leader: undefined }, { epoch: 4, leader: 'b' })).toBe('unproven');
    });
  });

  describe('who may ask for a takeover', () => {
    const authority = (over: Partial<TakeoverAuthority> = {}): TakeoverAuthority => ({ leaderKey: { id: 'a', value: 'KEY-A' }, coordinator: 'c', neverLed: false, senderIsMember: true, takingOver: false, ...over });
    it.each([
      { name: 'a handoff from the leader, replacing its exact key', auth: authority(), sender: 'a', request: { replacing: 'KEY-A', unsafe: false }, allowed: true },
      { name: 'a handoff replacing another key', auth: authority(), sender: 'a', request: { replacing: 'KEY-B', unsafe: false }, allowed: false },
      { name: 'a handoff from a replica that is not the leader', auth: authority(), sender: 'b', request: { replacing: 'KEY-A', unsafe: false }, allowed: false },
      { name: 'an assignment from the coordinator', auth: authority({ leaderKey: undefined }), sender: 'c', request: { unsafe: false }, allowed: true },
      { name: 'an assignment from neither leader nor coordinator', auth: authority({ leaderKey: undefined }), sender: 'b', request: { unsafe: false }, allowed: false },
      { name: "a new log's first leader, asked by its creator", auth: authority({ leaderKey: undefined, neverLed: true }), sender: 'b', request: { unsafe: false }, allowed: true },
      { name: 'an unsafe recovery joining a running takeover', auth: authority({ takingOver: true }), sender: 'b', request: { unsafe: true }, allowed: true },
      { name: 'an unsafe recovery that would start one', auth: authority(), sender: 'c', request: { unsafe: true }, allowed: false },
      { name: 'a sender that is no registered replica', auth: authority({ senderIsMember: false }), sender: 'c', request: { unsafe: false }, allowed: false },
      { name: 'a sender that names nobody', auth: authority({ coordinator: undefined }), sender: undefined, request: { unsafe: false }, allowed: false },
    ])('$name: allowed $allowed', ({ auth, sender, request, allowed }) => {
      expect(takeoverRefusal(auth, sender, request) === undefined).toBe(allowed);
    });
  });
});
