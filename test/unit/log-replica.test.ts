/** The follower rule, one test per rule: LogReplica.handleAppend in src/quorum/log-replica.ts. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LogReplica } from '../../src/quorum/log-replica.js';
import { ReplyStatus, type AppendRequest } from '../../src/quorum/messages.js';

const b = (s: string) => Buffer.from(s);
const bs = (...s: string[]) => s.map(b);
const req = (over: Partial<AppendRequest>): AppendRequest => ({ log: 'log', epoch: 1, leader: 'r1', seq: 1, firstId: 0, prevEpoch: -1, entryEpoch: 1, commitId: -1, entries: [], ...over });

/**
 * A follower of a 5-replica log: it and the leader are no quorum, so it
 * learns the commit point from the leader alone (the general rule). The
 * server's 3-replica logs add the pair rule, tested at the end.
 */
function follower(): LogReplica {
  return new LogReplica('log', { bytes: 0 }, { replicas: 5 });
}

function contents(r: LogReplica): string[] {
  const out: string[] = [];
  for (let id = r.buffer.startId; id <= r.buffer.lastId; id++) out.push(r.buffer.get(id)!.toString());
  return out;
}

/** Everything observable about a replica's state, to check that a message changed nothing. */
function snapshot(r: LogReplica) {
  return { contents: contents(r), runs: r.buffer.epochRuns(), startId: r.buffer.startId, bytes: r.buffer.bytes, commitId: r.commitId, epoch: r.epoch, leader: r.leader };
}

describe('fencing', () => {
  it('refuses a lower epoch with Fenced and its own epoch, changing nothing', () => {
    const f = follower();
    f.handleAppend(req({ epoch: 5, entryEpoch: 5, leader: 'r2', entries: bs('a', 'b'), commitId: 0 }));
    const before = snapshot(f);
    const reply = f.handleAppend(req({ epoch: 4, entryEpoch: 4, leader: 'r3', seq: 33, firstId: 2, prevEpoch: 5, entries: bs('c'), commitId: 2 }));
    expect(reply).toEqual({ status: ReplyStatus.Fenced, epoch: 5, seq: 33, lastId: 1 });
    expect(snapshot(f)).toEqual(before);
  });

  it('refuses a lower epoch after the fence was raised without any message (recovery fenced it)', () => {
    const f = follower();
    f.observeEpoch(9, 'r3');
    expect(f.handleAppend(req({ epoch: 8, entryEpoch: 8, entries: bs('x') }))).toMatchObject({ status: ReplyStatus.Fenced, epoch: 9 });
    expect(f.buffer.lastId).toBe(-1);
    expect(f.leader).toBe('r3');
  });

  it('accepts the same epoch, and a higher one raises the fence and names the leader', () => {
    const f = follower();
    f.observeEpoch(2);
    expect(f.handleAppend(req({ epoch: 2, entryEpoch: 2, leader: 'r2', entries: bs('a') }))).toMatchObject({ status: ReplyStatus.Ok, epoch: 2, lastId: 0 });
    expect(f.leader).toBe('r2');
    expect(f.handleAppend(req({ epoch: 3, entryEpoch: 3, leader: 'r3', firstId: 1, prevEpoch: 2, entries: bs('b') }))).toMatchObject({ status: ReplyStatus.Ok, epoch: 3, lastId: 1 });
    expect([f.epoch, f.leader]).toEqual([3, 'r3']);
    expect(f.handleAppend(req({ epoch: 2, entryEpoch: 2, leader: 'r2', firstId: 2, prevEpoch: 3 }))).toMatchObject({ status: ReplyStatus.Fenced, epoch: 3 });
  });
});

describe('no gaps', () => {
  it('answers Gap with its last id when the message starts past it', () => {
    const f = follower();
    f.handleAppend(req({ entries: bs('a', 'b') }));
    const before = snapshot(f);
    expect(f.handleAppend(req({ seq: 7, firstId: 3, prevEpoch: 1, entries: bs('d'), commitId: 3 }))).toEqual({ status: ReplyStatus.Gap, epoch: 1, seq: 7, lastId: 1 });
    expect(snapshot(f)).toEqual(before);
  });

  it('answers Gap to an empty follower for anything but id 0', () => {
    const f = follower();
    expect(f.handleAppend(req({ firstId: 1, prevEpoch: 1, entries: bs('b') }))).toMatchObject({ status: ReplyStatus.Gap, lastId: -1 });
    // Even with no prevEpoch check asked for, a gap is a gap.
    expect(f.handleAppend(req({ firstId: 5, prevEpoch: -1, entries: bs('f') }))).toMatchObject({ status: ReplyStatus.Gap, lastId: -1 });
    expect(f.buffer.lastId).toBe(-1);
  });

  it('answers Gap to a heartbeat that announces ids it lacks, without learning the commit point', () => {
    const f = follower();
    f.handleAppend(req({ entries: bs('a') }));
    expect(f.handleAppend(req({ firstId: 4, prevEpoch: 1, commitId: 3 }))).toMatchObject({ status: ReplyStatus.Gap, lastId: 0 });
    expect(f.commitId).toBe(-1);
  });

  it('starts right after a released (durable) prefix', () => {
    const f = follower();
    f.releaseThrough(9);
    expect(f.handleAppend(req({ firstId: 11, prevEpoch: 1, entries: bs('x') }))).toMatchObject({ status: ReplyStatus.Gap, lastId: 9 });
    expect(f.handleAppend(req({ firstId: 10, prevEpoch: -1, entries: bs('k') }))).toMatchObject({ status: ReplyStatus.Ok, lastId: 10 });
    expect([f.buffer.startId, f.buffer.lastId, contents(f)]).toEqual([10, 10, ['k']]);
  });
});

describe('idempotence', () => {
  // One leader's stream, in order: ids 0..1, 2..4, 5.
  const stream = [
    req({ seq: 1, firstId: 0, entries: bs('a', 'b') }),
    req({ seq: 2, firstId: 2, prevEpoch: 1, entries: bs('c', 'd', 'e'), commitId: 1 }),
    req({ seq: 3, firstId: 5, prevEpoch: 1, entries: bs('f'), commitId: 4 }),
  ];

  it('a duplicated message changes nothing and is answered Ok for what it carries', () => {
    const f = follower();
    for (const m of stream) f.handleAppend(m);
    const before = snapshot(f);
    expect(f.handleAppend(stream[0]!)).toEqual({ status: ReplyStatus.Ok, epoch: 1, seq: 1, lastId: 1 });
    expect(f.handleAppend(stream[1]!)).toEqual({ status: ReplyStatus.Ok, epoch: 1, seq: 2, lastId: 4 });
    expect(f.handleAppend(stream[2]!)).toEqual({ status: ReplyStatus.Ok, epoch: 1, seq: 3, lastId: 5 });
    expect(snapshot(f)).toEqual(before);
  });

  it('a message arriving before its predecessor is refused, and accepted once the predecessor arrives', () => {
    const f = follower();
    expect(f.handleAppend(stream[1]!)).toMatchObject({ status: ReplyStatus.Gap, lastId: -1 });
    f.handleAppend(stream[0]!);
    expect(f.handleAppend(stream[2]!)).toMatchObject({ status: ReplyStatus.Gap, lastId: 1 });
    f.handleAppend(stream[1]!);
    f.handleAppend(stream[2]!);
    expect(contents(f)).toEqual(['a', 'b', 'c', 'd', 'e', 'f']);
  });

  it('a late, shorter message does not cut the tail it overlaps', () => {
    const f = follower();
    f.handleAppend(req({ entries: bs('a', 'b', 'c', 'd') }));
    f.handleAppend(req({ firstId: 1, prevEpoch: 1, entries: bs('b') }));
    expect(contents(f)).toEqual(['a', 'b', 'c', 'd']);
    expect(f.buffer.bytes).toBe(4);
  });

  it('any order, with any duplicates, leaves a gapless prefix of the stream; then the stream in order completes it', () => {
    const all = ['a', 'b', 'c', 'd', 'e', 'f'];
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 2 }), { maxLength: 12 }), (order) => {
        const f = follower();
        for (const i of order) {
          f.handleAppend(stream[i]!);
          const held = contents(f);
          expect(held).toEqual(all.slice(0, held.length));
          expect(f.buffer.bytes).toBe(held.length);
        }
        for (const m of stream) f.handleAppend(m);
        expect(contents(f)).toEqual(all);
        expect(f.buffer.epochRuns()).toEqual([{ firstId: 0, epoch: 1 }]);
      }),
      { numRuns: 200 },
    );
  });
});

describe('divergent tails', () => {
  /** A follower that holds ids 0..1 of epoch 1, and 2..4 written by epoch 2's leader that never got them committed. */
  function diverged(): LogReplica {
    const f = follower();
    f.handleAppend(req({ entries: bs('a', 'b'), commitId: -1 }));
    f.handleAppend(req({ epoch: 2, entryEpoch: 2, firstId: 2, prevEpoch: 1, entries: bs('x2', 'x3', 'x4'), commitId: 1 }));
    expect(f.commitId).toBe(1);
    return f;
  }

  it('on a prevEpoch mismatch, drops the entry at prevId and everything after, answering Gap', () => {
    const f = diverged();
    // Epoch 3's leader holds ids 2..3 from epoch 3 and sends id 4 next.
    const reply = f.handleAppend(req({ epoch: 3, entryEpoch: 3, leader: 'r3', seq: 8, firstId: 4, prevEpoch: 3, entries: bs('n4'), commitId: 3 }));
    expect(reply).toEqual({ status: ReplyStatus.Gap, epoch: 3, seq: 8, lastId: 2 });
    expect(contents(f)).toEqual(['a', 'b', 'x2']);
    expect(f.buffer.bytes).toBe(4);
    expect(f.commitId).toBe(1); // nothing proved by a refused message
  });

  it('the leader walks back until the logs match, and the tail is replaced with its epoch', () => {
    const f = diverged();
    let reply = f.handleAppend(req({ epoch: 3, entryEpoch: 3, firstId: 4, prevEpoch: 3, entries: bs('n4') }));
    expect(reply).toMatchObject({ status: ReplyStatus.Gap, lastId: 2 });
    reply = f.handleAppend(req({ epoch: 3, entryEpoch: 3, firstId: 3, prevEpoch: 3, entries: bs('n3', 'n4') }));
    expect(reply).toMatchObject({ status: ReplyStatus.Gap, lastId: 1 });
    reply = f.handleAppend(req({ epoch: 3, entryEpoch: 3, firstId: 2, prevEpoch: 1, entries: bs('n2', 'n3', 'n4'), commitId: 4 }));
    expect(reply).toMatchObject({ status: ReplyStatus.Ok, lastId: 4 });
    expect(contents(f)).toEqual(['a', 'b', 'n2', 'n3', 'n4']);
    expect(f.buffer.epochRuns()).toEqual([{ firstId: 0, epoch: 1 }, { firstId: 2, epoch: 3 }]);
    expect(f.buffer.bytes).toBe(8);
    expect(f.commitId).toBe(4);
  });

  it('entries of another epoch at the same ids replace the tail even when prevEpoch matches', () => {
    const f = diverged();
    expect(f.handleAppend(req({ epoch: 3, entryEpoch: 3, firstId: 2, prevEpoch: 1, entries: bs('n2') }))).toMatchObject({ status: ReplyStatus.Ok, lastId: 2 });
    expect(contents(f)).toEqual(['a', 'b', 'n2']);
  });

  it('keeps a tail that a later leader recovered with the epoch that wrote it', () => {
    const f = diverged();
    // Epoch 3's leader recovered x2..x3 (epoch 2) and re-replicates them, then adds its own.
    f.handleAppend(req({ epoch: 3, entryEpoch: 2, firstId: 2, prevEpoch: 1, entries: bs('x2', 'x3') }));
    expect(contents(f)).toEqual(['a', 'b', 'x2', 'x3', 'x4']); // duplicates of held ids; x4 not yet contradicted
    f.handleAppend(req({ epoch: 3, entryEpoch: 3, firstId: 4, prevEpoch: 2, entries: bs('n4', 'n5') }));
    expect(contents(f)).toEqual(['a', 'b', 'x2', 'x3', 'n4', 'n5']);
    expect(f.buffer.epochRuns()).toEqual([
      { firstId: 0, epoch: 1 },
      { firstId: 2, epoch: 2 },
      { firstId: 4, epoch: 3 },
    ]);
  });

  it('a heartbeat whose prevEpoch disagrees also cuts the divergent tail', () => {
    const f = diverged();
    expect(f.handleAppend(req({ epoch: 3, entryEpoch: 3, firstId: 3, prevEpoch: 3, commitId: 2 }))).toMatchObject({ status: ReplyStatus.Gap, lastId: 1 });
    expect(contents(f)).toEqual(['a', 'b']);
    expect(f.commitId).toBe(1);
  });

  it('refuses to drop a committed id: the invariant stops the replica', () => {
    const f = follower();
    f.handleAppend(req({ entries: bs('a', 'b'), commitId: 1 }));
    expect(f.commitId).toBe(1);
    expect(() => f.handleAppend(req({ epoch: 2, entryEpoch: 2, firstId: 2, prevEpoch: 2, entries: bs('z') }))).toThrow(/committed id 1/);
    expect(() => f.handleAppend(req({ epoch: 2, entryEpoch: 2, firstId: 1, prevEpoch: 1, entries: bs('z') }))).toThrow(/committed id 1/);
  });
});

describe('commit point', () => {
  it('advances only up to the last id the message proved, however far the leader says it is', () => {
    const f = follower();
    expect(f.handleAppend(req({ entries: bs('a', 'b', 'c'), commitId: -1 }))).toMatchObject({ lastId: 2 });
    expect(f.commitId).toBe(-1);
    // The leader has committed up to 2, but this (late) message only proves id 0.
    f.handleAppend(req({ firstId: 0, entries: bs('a'), commitId: 2 }));
    expect(f.commitId).toBe(0);
    f.handleAppend(req({ firstId: 1, prevEpoch: 1, entries: bs('b'), commitId: 2 }));
    expect(f.commitId).toBe(1);
    f.handleAppend(req({ firstId: 3, prevEpoch: 1, entries: bs('d'), commitId: 2 }));
    expect(f.commitId).toBe(2);
  });

  it('never exceeds the ids the replica holds, nor what the leader committed', () => {
    const f = follower();
    f.handleAppend(req({ entries: bs('a', 'b', 'c'), commitId: 99 }));
    expect(f.commitId).toBe(2);
    f.handleAppend(req({ firstId: 3, prevEpoch: 1, entries: bs('d', 'e'), commitId: 3 }));
    expect(f.commitId).toBe(3);
  });

  it('never goes back', () => {
    const f = follower();
    f.handleAppend(req({ entries: bs('a', 'b', 'c'), commitId: 2 }));
    f.handleAppend(req({ firstId: 0, entries: bs('a'), commitId: -1 })); // a stale duplicate
    expect(f.commitId).toBe(2);
  });

  it('an empty heartbeat whose prevEpoch matches advances the commit point up to firstId - 1', () => {
    const f = follower();
    f.handleAppend(req({ entries: bs('a', 'b', 'c'), commitId: -1 }));
    expect(f.handleAppend(req({ seq: 5, firstId: 3, prevEpoch: 1, commitId: 2 }))).toEqual({ status: ReplyStatus.Ok, epoch: 1, seq: 5, lastId: 2 });
    expect(f.commitId).toBe(2);
    expect(f.buffer.lastId).toBe(2);
  });

  it('a heartbeat proves only up to its firstId - 1', () => {
    const f = follower();
    f.handleAppend(req({ entries: bs('a', 'b', 'c'), commitId: -1 }));
    expect(f.handleAppend(req({ firstId: 2, prevEpoch: 1, commitId: 2 }))).toMatchObject({ status: ReplyStatus.Ok, lastId: 1 });
    expect(f.commitId).toBe(1);
  });

  it('moves up with what object storage holds on release', () => {
    const f = follower();
    f.handleAppend(req({ entries: bs('a', 'b', 'c'), commitId: -1 }));
    f.releaseThrough(1);
    expect([f.commitId, f.buffer.startId, contents(f)]).toEqual([1, 2, ['c']]);
  });
});

describe('the pair rule of a 3-replica log: what a follower takes from its leader is committed', () => {
  const pairFollower = () => new LogReplica('log', { bytes: 0 }, { replicas: 3 });

  it('commits every id the message proved, whatever commit point the leader sent', () => {
    const f = pairFollower();
    f.handleAppend(req({ entries: bs('a', 'b', 'c'), commitId: -1 }));
    expect(f.commitId).toBe(2);
    f.handleAppend(req({ firstId: 3, prevEpoch: 1, entries: bs('d'), commitId: 0 }));
    expect(f.commitId).toBe(3);
  });

  it('a heartbeat commits up to its firstId - 1 only when its prevEpoch matches', () => {
    const f = pairFollower();
    f.handleAppend(req({ epoch: 1, entries: bs('a', 'b'), commitId: -1 }));
    // A leader of epoch 2 whose id 1 is of its own epoch: ours is divergent, nothing more is proved.
    const g = new LogReplica('log', { bytes: 0 }, { replicas: 3 });
    g.handleAppend(req({ entries: bs('a'), commitId: -1 }));
    expect(g.handleAppend(req({ epoch: 2, firstId: 2, prevEpoch: 2, commitId: 1 }))).toMatchObject({ status: ReplyStatus.Gap });
    expect(g.commitId).toBe(0);
    expect(f.handleAppend(req({ firstId: 2, prevEpoch: 1, commitId: -1 }))).toMatchObject({ status: ReplyStatus.Ok, lastId: 1 });
    expect(f.commitId).toBe(1);
  });

  it('a refused message proves nothing: a lower epoch, a gap, or no room', () => {
    const f = new LogReplica('log', { bytes: 0, limitBytes: 2 }, { replicas: 3, epoch: 2 });
    expect(f.handleAppend(req({ epoch: 1, entries: bs('a'), commitId: 0 })).status).toBe(ReplyStatus.Fenced);
    expect(f.handleAppend(req({ epoch: 2, entryEpoch: 2, firstId: 4, prevEpoch: 2, entries: bs('e'), commitId: 4 })).status).toBe(ReplyStatus.Gap);
    expect(f.handleAppend(req({ epoch: 2, entryEpoch: 2, entries: bs('abcdefgh'), commitId: 0 })).status).toBe(ReplyStatus.Full);
    expect(f.commitId).toBe(-1);
  });

  it('with five replicas the same messages commit nothing the leader did not say', () => {
    const f = follower();
    f.handleAppend(req({ entries: bs('a', 'b', 'c'), commitId: -1 }));
    expect(f.commitId).toBe(-1);
  });
});
