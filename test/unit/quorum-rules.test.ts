/** One test per rule of the replication protocol, on the pure state machine. */
import { describe, expect, it } from 'vitest';
import { ENTRY_OVERHEAD_BYTES, EntryBuffer } from '../../src/quorum/entry-buffer.js';
import { LogReplica } from '../../src/quorum/log-replica.js';
import { majorityOf, quorumMatchId } from '../../src/quorum/majority.js';
import { ReplyStatus, type AppendRequest } from '../../src/quorum/messages.js';
import { WireError, decodeAppendReply, decodeAppendRequest, encodeAppendReply, encodeAppendRequest } from '../../src/peer/wire.js';
import { QuorumNet } from '../support/quorum-net.js';

const b = (s: string) => Buffer.from(s);
const req = (over: Partial<AppendRequest>): AppendRequest => ({ log: 'log', epoch: 1, leader: 'r1', seq: 1, firstId: 0, prevEpoch: -1, entryEpoch: 1, commitId: -1, entries: [], ...over });

describe('commit point arithmetic', () => {
  it.each([
    [[5, -1, -1], 2, -1],
    [[5, 3, -1], 2, 3],
    [[5, 3, 4], 2, 4],
    [[5, 5, 5], 2, 5],
    [[2, 9, 7], 2, 7],
    [[5, 3, 4], 3, 3],
  ])('quorumMatchId(%j, %i) = %i', (ids, q, want) => expect(quorumMatchId(ids, q)).toBe(want));
  it('majorities', () => expect([1, 2, 3, 4, 5].map(majorityOf)).toEqual([1, 2, 2, 3, 3]));
  it('refuses impossible quorums', () => expect(() => quorumMatchId([1, 2], 3)).toThrow(RangeError));
});

describe('entry buffer', () => {
  it('keeps dense ids, epochs per run, bytes in the shared account, and releases from the front', () => {
    const account = { bytes: 0 };
    const buf = new EntryBuffer(0, account);
    buf.append(1, [b('aa'), b('bbb')]);
    buf.append(2, [b('c')]);
    expect([buf.startId, buf.lastId, buf.bytes, account.bytes]).toEqual([0, 2, 6, 6 + 3 * ENTRY_OVERHEAD_BYTES]);
    expect([buf.epochOf(0), buf.epochOf(1), buf.epochOf(2), buf.epochOf(3)]).toEqual([1, 1, 2, undefined]);
    expect(buf.runLastId(0)).toBe(1);
    expect(buf.slice(0, 10, 3).map(String)).toEqual(['aa']);
    expect(buf.slice(0, 10, 1).map(String)).toEqual(['aa']); // always at least one
    buf.releaseThrough(0);
    expect([buf.startId, buf.get(1)?.toString(), account.bytes]).toEqual([1, 'bbb', 4 + 2 * ENTRY_OVERHEAD_BYTES]);
    expect(buf.epochRuns()).toEqual([{ firstId: 1, epoch: 1 }, { firstId: 2, epoch: 2 }]);
    buf.truncateFrom(2);
    expect([buf.lastId, account.bytes, buf.epochOf(2)]).toEqual([1, 3 + ENTRY_OVERHEAD_BYTES, undefined]);
  });

  it('stays correct across many releases (compaction)', () => {
    const buf = new EntryBuffer(0, { bytes: 0 });
    for (let i = 0; i < 5000; i++) buf.append(1, [b(String(i))]);
    for (let i = 0; i < 4990; i += 7) buf.releaseThrough(i);
    expect(buf.startId).toBe(4985); // the last release was through 4984
    expect(buf.get(4999)?.toString()).toBe('4999');
    expect(buf.slice(4985, 2, 100).map(String)).toEqual(['4985', '4986']);
  });
});

describe('wire format', () => {
  it('round-trips requests with binary and empty entries and large ids', () => {
    const r = req({ epoch: 7, seq: 99, firstId: 2 ** 46, prevEpoch: 6, entryEpoch: 6, commitId: 2 ** 46 - 1, entries: [Buffer.from([0, 1, 255]), Buffer.alloc(0)] });
    const { chunks, length } = encodeAppendRequest(r);
    const body = Buffer.concat(chunks);
    expect(body.length).toBe(length);
    expect(decodeAppendRequest(body)).toEqual(r);
    const reply = { status: ReplyStatus.Gap, epoch: 3, seq: 4, lastId: -1, incarnation: 42 };
    expect(decodeAppendReply(encodeAppendReply(reply))).toEqual(reply);
  });

  it('rejects truncated, padded and unknown-version bodies', () => {
    const body = Buffer.concat(encodeAppendRequest(req({ entries: [b('xyz')] })).chunks);
    expect(() => decodeAppendRequest(body.subarray(0, body.length - 1))).toThrow(WireError);
    expect(() => decodeAppendRequest(Buffer.concat([body, Buffer.from([0])]))).toThrow(WireError);
    expect(() => decodeAppendRequest(Buffer.concat([Buffer.from([9]), body.subarray(1)]))).toThrow(WireError);
  });
});

describe('follower rules', () => {
  // Five replicas: the follower learns the commit point from its leader (log-replica.test.ts has the 3-replica pair rule).
  const follower = () => new LogReplica('log', { bytes: 0 }, { replicas: 5 });

  it('refuses a lower epoch with FENCED and its own epoch', () => {
    const f = follower();
    f.observeEpoch(5);
    expect(f.handleAppend(req({ epoch: 4, entries: [b('x')] }))).toMatchObject({ status: ReplyStatus.Fenced, epoch: 5 });
    expect(f.buffer.lastId).toBe(-1);
  });

  it('never accepts a gap', () => {
    const f = follower();
    expect(f.handleAppend(req({ firstId: 3, prevEpoch: 1, entries: [b('x')] }))).toMatchObject({ status: ReplyStatus.Gap, lastId: -1 });
    expect(f.buffer.lastId).toBe(-1);
  });

  it('ignores duplicated and reordered messages of the same epoch', () => {
    const f = follower();
    const m1 = req({ firstId: 0, entries: [b('a'), b('b')] });
    const m2 = req({ firstId: 2, prevEpoch: 1, entries: [b('c')] });
    f.handleAppend(m1);
    f.handleAppend(m2);
    expect(f.handleAppend(m1)).toMatchObject({ status: ReplyStatus.Ok, lastId: 1 });
    f.handleAppend(m2);
    expect([f.buffer.lastId, f.buffer.bytes]).toEqual([2, 3]);
  });

  it('replaces a divergent tail written in an older epoch, walking back on prevEpoch mismatch', () => {
    const f = follower();
    f.handleAppend(req({ entries: [b('a'), b('old1'), b('old2')] }));
    // Epoch 2's leader kept only id 0 of epoch 1 and wrote id 1 anew.
    const reply = f.handleAppend(req({ epoch: 2, firstId: 3, prevEpoch: 2, entryEpoch: 2, entries: [b('n3')] }));
    expect(reply).toMatchObject({ status: ReplyStatus.Gap, lastId: 1 });
    expect(f.handleAppend(req({ epoch: 2, firstId: 1, prevEpoch: 1, entryEpoch: 2, entries: [b('n1'), b('n2')] }))).toMatchObject({ status: ReplyStatus.Ok, lastId: 2 });
    expect([0, 1, 2].map((id) => f.buffer.get(id)!.toString())).toEqual(['a', 'n1', 'n2']);
    expect(f.buffer.epochRuns()).toEqual([{ firstId: 0, epoch: 1 }, { firstId: 1, epoch: 2 }]);
  });

  it('only counts as committed the ids the message proved, and learns the commit point from heartbeats', () => {
    const f = follower();
    f.handleAppend(req({ entries: [b('a'), b('b'), b('c')], commitId: -1 }));
    f.handleAppend(req({ firstId: 0, entries: [b('a')], commitId: 2 }));
    expect(f.commitId).toBe(0);
    f.handleAppend(req({ firstId: 3, prevEpoch: 1, commitId: 2 }));
    expect(f.commitId).toBe(2);
  });
});

describe('leader rules', () => {
  it('acks once one follower (plus itself) holds the entry, not before', () => {
    const net = new QuorumNet();
    expect(net.leader.propose([b('x')], 1)).toEqual({ ok: true, firstId: 0, lastId: 0, timeMs: 0 });
    net.pump();
    expect(net.acked).toEqual([]);
    net.deliver(0); // request to r2
    net.pump();
    expect(net.acked).toEqual([]);
    net.deliver(net.inFlight.findIndex((m) => m.kind === 'reply'));
    net.pump();
    expect(net.acked).toEqual([{ token: 1, firstId: 0, lastId: 0 }]);
    expect(net.leaderReplica.commitId).toBe(0);
  });

  it('groups proposals made before a round into one message (group commit)', () => {
    const net = new QuorumNet();
    for (let i = 0; i < 5; i++) net.leader.propose([b(`e${i}`)], i);
    net.pump();
    const toR2 = net.inFlight.filter((m) => m.to === 'r2');
    expect(toR2).toHaveLength(1);
    expect(toR2[0]!.req!.entries).toHaveLength(5);
  });

  it('pipelines up to maxInflight rounds once a follower keeps up, one at a time while probing', () => {
    const net = new QuorumNet({ maxInflight: 3, pipelineMinBytes: 0 });
    net.leader.propose([b('a')], 0);
    net.pump();
    net.leader.propose([b('b')], 1);
    net.pump();
    expect(net.inFlight.filter((m) => m.to === 'r2')).toHaveLength(1); // probing
    net.settle(3);
    for (let i = 0; i < 5; i++) {
      net.leader.propose([b(`p${i}`)], 10 + i);
      net.pump();
    }
    expect(net.inFlight.filter((m) => m.to === 'r2').length).toBe(3);
  });

  it('sends a follower with a round in flight another only once pipelineMinBytes or a full batch wait', () => {
    const net = new QuorumNet({ maxInflight: 3, pipelineMinBytes: 4, maxBatchEntries: 3 });
    net.leader.propose([b('a')], 0);
    net.pump();
    net.settle(3); // caught up: the follower is out of probing
    net.leader.propose([b('b1')], 1);
    net.pump();
    const toR2 = () => net.inFlight.filter((m) => m.to === 'r2');
    expect(toR2()).toHaveLength(1); // nothing in flight: sent at once, however small
    net.leader.propose([b('c1')], 2);
    net.pump();
    expect(toR2()).toHaveLength(1); // 2 bytes wait behind a round in flight: they gather
    net.leader.propose([b('d1')], 3);
    net.pump();
    expect(toR2()).toHaveLength(2); // 4 bytes: worth a pipelined round
    expect(toR2()[1]!.req!.entries.map(String)).toEqual(['c1', 'd1']);
    for (const [i, v] of ['e', 'f', 'g'].entries()) {
      net.leader.propose([b(v)], 4 + i);
      net.pump();
    }
    expect(toR2()).toHaveLength(3); // three 1-byte entries: a full batch of maxBatchEntries
  });

  it('fails a proposal no quorum holds after ackTimeoutTicks with ACK_TIMEOUT, then refuses with NO_QUORUM', () => {
    const net = new QuorumNet({ ackTimeoutTicks: 20 });
    net.leader.propose([b('x')], 7);
    for (let t = 0; t < 20; t++) {
      net.pump();
      net.inFlight = []; // both followers are gone
      net.leader.tick();
    }
    net.pump();
    expect(net.failed).toEqual([{ token: 7, firstId: 0, lastId: 0, reason: 'ACK_TIMEOUT' }]);
    expect(net.leader.propose([b('y')], 8)).toEqual({ ok: false, reason: 'NO_QUORUM' });
  });

  it('resends after retransmitTicks when a message is lost', () => {
    const net = new QuorumNet({ retransmitTicks: 5 });
    net.leader.propose([b('x')], 1);
    net.pump();
    net.inFlight = [];
    for (let t = 0; t < 5; t++) net.leader.tick();
    net.pump();
    expect(net.inFlight.filter((m) => m.kind === 'request' && m.req!.entries.length === 1)).toHaveLength(2);
    net.settle(3);
    expect(net.acked.map((a) => a.token)).toEqual([1]);
  });

  it('catches up a follower that restarted empty, from the leader buffer, without gaps', () => {
    const net = new QuorumNet();
    for (let i = 0; i < 10; i++) net.leader.propose([b(`e${i}`)], i);
    net.settle();
    net.restartFollower('r3');
    for (let i = 10; i < 15; i++) net.leader.propose([b(`e${i}`)], i);
    net.settle();
    expect(net.contents(net.followers.get('r3')!)).toEqual(Array.from({ length: 15 }, (_, i) => `e${i}`));
  });

  it('steps down on a reply with a higher epoch: pending proposals fail FENCED, nothing is acked after', () => {
    const net = new QuorumNet();
    net.leader.propose([b('x')], 1);
    net.pump();
    net.followers.get('r2')!.observeEpoch(2);
    net.followers.get('r3')!.observeEpoch(2);
    net.deliverAll();
    net.pump();
    expect(net.leader.isDeposed).toBe(true);
    expect(net.failed).toEqual([{ token: 1, firstId: 0, lastId: 0, reason: 'FENCED' }]);
    expect(net.leader.propose([b('y')], 2)).toEqual({ ok: false, reason: 'FENCED' });
    net.settle();
    expect(net.acked).toEqual([]);
  });

  it('keeps sending to a follower that fell behind entries released after a flush', () => {
    const net = new QuorumNet();
    for (let i = 0; i < 10; i++) net.leader.propose([b(`e${i}`)], i);
    net.pump();
    net.inFlight = net.inFlight.filter((m) => m.to !== 'r3'); // r3 misses everything
    net.deliverAll();
    net.pump();
    net.inFlight = net.inFlight.filter((m) => m.to !== 'r3');
    net.deliverAll();
    net.pump();
    expect(net.leaderReplica.commitId).toBe(9);
    net.leaderReplica.releaseThrough(9); // flushed: the leader forgets 0..9
    net.followers.get('r3')!.releaseThrough(9); // r3 learns the flushed point from the manifest
    net.leader.propose([b('e10')], 10);
    net.settle();
    expect(net.followers.get('r3')!.buffer.lastId).toBe(10);
    expect(net.leader.matchIdOf('r3')).toBe(10);
    expect(net.contents(net.followers.get('r3')!)).toEqual(['e10']);
  });

  it('re-replicates recovered entries with the epoch that wrote them', () => {
    const fresh = new QuorumNet({ epoch: 3 });
    fresh.leaderReplica.adopt({ firstId: 0, epoch: 1, entries: [b('old0'), b('old1')] });
    const leader = fresh.leader;
    leader.propose([b('new2')], 1);
    fresh.settle();
    const r2 = fresh.followers.get('r2')!;
    expect(fresh.contents(r2)).toEqual(['old0', 'old1', 'new2']);
    expect(r2.buffer.epochRuns()).toEqual([{ firstId: 0, epoch: 1 }, { firstId: 2, epoch: 3 }]);
    expect(fresh.acked).toEqual([{ token: 1, firstId: 2, lastId: 2 }]);
  });
});
