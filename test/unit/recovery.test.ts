import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decideRecovery, isClosedClean, validLastId, type FenceAnswer, type SegmentView } from '../../src/quorum/recovery.js';

const seg = (epoch: number, firstId: number, lastId: number | null, incs: Record<string, string> = { a: 'a1', b: 'b1', c: 'c1' }): SegmentView => ({ epoch, firstId, lastId, replicas: incs });
const answer = (replica: string, incarnation: string, lastId: number, runs = [{ firstId: 0, epoch: 1 }], startId = 0): FenceAnswer => ({ replica, incarnation, startId, lastId, runs });

describe('validLastId', () => {
  it('accepts a tail that matches the open segment', () => {
    expect(validLastId(answer('a', 'a1', 9), [seg(1, 0, null)])).toBe(9);
  });

  it('cuts a tail past the seal of its segment', () => {
    expect(validLastId(answer('a', 'a1', 9), [seg(1, 0, 5), seg(2, 6, null)])).toBe(5);
  });

  it('cuts where the epoch of a run disagrees with the segment covering it', () => {
    const runs = [{ firstId: 0, epoch: 1 }, { firstId: 6, epoch: 3 }];
    // ids 6..7 belong to epoch 2's segment, so the epoch-3 run starting at 6 is not valid.
    expect(validLastId(answer('a', 'a1', 12, runs), [seg(1, 0, 5), seg(2, 6, 7), seg(3, 8, null)])).toBe(5);
    expect(validLastId(answer('a', 'a1', 12, [{ firstId: 0, epoch: 1 }, { firstId: 6, epoch: 2 }, { firstId: 8, epoch: 3 }]), [seg(1, 0, 5), seg(2, 6, 7), seg(3, 8, null)])).toBe(12);
  });

  it('treats ids below the memory start as flushed and valid', () => {
    expect(validLastId(answer('a', 'a1', 20, [{ firstId: 10, epoch: 1 }], 10), [seg(1, 0, null)])).toBe(20);
    expect(validLastId(answer('a', 'a1', 9, [], 10), [seg(1, 0, null)])).toBe(9);
  });
});

describe('validLastId after a reopen forgot the segments before the quiesced one', () => {
  // Epoch 5 quiesced at 150 (its ids all flushed); epoch 6 reopened the log at 151.
  const pruned = [{ ...seg(5, 100, 150), closedClean: true, quiesced: true }, seg(6, 151, null)];

  it('counts ids before the first recorded segment as agreed, so an older run held in memory does not hide the current tail', () => {
    const runs = [{ firstId: 40, epoch: 3 }, { firstId: 100, epoch: 5 }, { firstId: 151, epoch: 6 }];
    expect(validLastId(answer('a', 'a1', 170, runs, 40), pruned)).toBe(170);
  });

  it('still cuts a run whose epoch disagrees with a recorded segment', () => {
    const runs = [{ firstId: 40, epoch: 3 }, { firstId: 151, epoch: 6 }];
    // ids 100..150 belong to epoch 5: held as epoch 3 they are a divergent tail.
    expect(validLastId(answer('a', 'a1', 170, runs, 40), pruned)).toBe(99);
  });

  it('decides the tail a quorum holds, as it would with every segment recorded', () => {
    const full = [seg(3, 0, 99), ...pruned];
    const answers = [answer('a', 'a1', 160, [{ firstId: 151, epoch: 6 }], 151), answer('b', 'b1', 155, [{ firstId: 120, epoch: 5 }, { firstId: 151, epoch: 6 }], 120)];
    expect(decideRecovery(pruned, answers, 3)).toEqual(decideRecovery(full, answers, 3));
    expect(decideRecovery(pruned, answers, 3)).toMatchObject({ kind: 'recover', endId: 160, source: 'a' });
  });
});

describe('decideRecovery', () => {
  const open = [seg(1, 0, null)];

  it('takes the highest of the counted answers, never the lowest (Woodpecker #320)', () => {
    const d = decideRecovery(open, [answer('a', 'a1', 3), answer('b', 'b1', 7)], 3);
    expect(d).toMatchObject({ kind: 'recover', endId: 7, source: 'b' });
  });

  it('does not let a restarted replica (new incarnation) count: {B restarted, C} cannot decide', () => {
    const d = decideRecovery(open, [answer('b', 'b2', -1, []), answer('c', 'c1', 3)], 3);
    expect(d.kind).toBe('unavailable');
    expect(d.kind === 'unavailable' && d.reason).toMatch(/b restarted/);
  });

  it('decides from {A, C} when A still holds the entry B forgot', () => {
    const d = decideRecovery(open, [answer('a', 'a1', 5), answer('b', 'b2', -1, []), answer('c', 'c1', 3)], 3);
    expect(d).toMatchObject({ kind: 'recover', endId: 5, source: 'a', counted: ['a', 'c'] });
  });

  it('stays unavailable with two replicas restarted, unless unsafe recovery is asked for', () => {
    const answers = [answer('b', 'b2', -1, []), answer('c', 'c2', 1)];
    expect(decideRecovery(open, answers, 3).kind).toBe('unavailable');
    expect(decideRecovery(open, answers, 3, true)).toMatchObject({ kind: 'recover', endId: 1, source: 'c' });
  });

  it('never recovers below the start of the open segment (the sealed prefix is final)', () => {
    const d = decideRecovery([seg(1, 0, 9), seg(2, 10, null)], [answer('a', 'a1', -1, [], 0), answer('b', 'b1', -1, [], 0)], 3);
    expect(d).toMatchObject({ kind: 'recover', endId: 9 });
  });

  it('recovers a segment closed clean at its recorded end with no answers at all, even from restarted replicas only', () => {
    const closed = [seg(1, 0, 9), { ...seg(2, 10, 14), closedClean: true }];
    expect(decideRecovery(closed, [], 3)).toMatchObject({ kind: 'recover', endId: 14, counted: [] });
    // Answers from replicas that all restarted (new incarnations) change nothing: every id is in object storage.
    expect(decideRecovery(closed, [answer('a', 'a2', -1, []), answer('b', 'b2', 20, [{ firstId: 10, epoch: 2 }])], 3)).toMatchObject({ kind: 'recover', endId: 14 });
    expect(isClosedClean(closed.at(-1))).toBe(true);
  });

  it('treats a segment sealed by a recovery (not closed clean) as needing counted answers', () => {
    const sealed = [seg(1, 0, 9), seg(2, 10, 14)];
    expect(isClosedClean(sealed.at(-1))).toBe(false);
    expect(isClosedClean({ ...seg(2, 10, null), closedClean: true })).toBe(false);
    expect(decideRecovery(sealed, [answer('a', 'a2', -1, [])], 3).kind).toBe('unavailable');
  });

  it('recovers a log that was never led to nothing', () => {
    expect(decideRecovery([], [], 3)).toMatchObject({ kind: 'recover', endId: -1 });
  });

  // A random history of one segment: the leader (always 'a') writes ids in order; each id
  // reaches some followers in order (prefixes); an id is acknowledged once two replicas of the
  // same incarnation hold it; then replicas may restart (new incarnation, empty memory); the
  // new leader hears from some replicas. Whatever happens, recovery never drops an acknowledged id
  // and never invents one that was not written.
  it('never loses an acknowledged id and never invents one, over random histories', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 40 }),
        fc.record({ b: fc.integer({ min: -1, max: 40 }), c: fc.integer({ min: -1, max: 40 }) }),
        fc.record({ a: fc.boolean(), b: fc.boolean(), c: fc.boolean() }),
        fc.subarray(['a', 'b', 'c'], { minLength: 0 }),
        fc.boolean(),
        (written, reach, restarted, answering, unsafe) => {
          const held: Record<string, number> = { a: written - 1, b: Math.min(reach.b, written - 1), c: Math.min(reach.c, written - 1) };
          const sorted = Object.values(held).sort((x, y) => y - x);
          const acked = sorted[1]!; // the second-highest holder: ids up to it are on two replicas
          const answers = answering.map((r) => {
            const lost = restarted[r as 'a' | 'b' | 'c'];
            const last = lost ? -1 : held[r]!;
            return answer(r, lost ? `${r}2` : `${r}1`, last, last >= 0 ? [{ firstId: 0, epoch: 1 }] : []);
          });
          const d = decideRecovery(open, answers, 3, unsafe);
          const intactAnswers = answers.filter((a) => a.incarnation.endsWith('1')).length;
          if (!unsafe && intactAnswers < 2) expect(d.kind).toBe('unavailable');
          if (d.kind === 'recover') {
            expect(d.endId).toBeLessThanOrEqual(written - 1);
            if (!unsafe) expect(d.endId).toBeGreaterThanOrEqual(acked);
          }
        },
      ),
      { numRuns: 2000 },
    );
  });
});
