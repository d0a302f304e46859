/** The 2-of-3 commit point as arithmetic: table tests of src/quorum/majority.ts. */
import { describe, expect, it } from 'vitest';
import { majorityOf, quorumMatchId } from '../../src/quorum/majority.js';

describe('quorumMatchId', () => {
  it.each([
    // [match ids (leader first), quorum, commit point]
    { ids: [-1, -1, -1], quorum: 2, want: -1 },
    { ids: [0, -1, -1], quorum: 2, want: -1 }, // only the leader holds id 0
    { ids: [7, -1, -1], quorum: 2, want: -1 },
    { ids: [7, 0, -1], quorum: 2, want: 0 },
    { ids: [7, 3, -1], quorum: 2, want: 3 },
    { ids: [7, -1, 3], quorum: 2, want: 3 },
    { ids: [7, 3, 5], quorum: 2, want: 5 },
    { ids: [7, 7, 3], quorum: 2, want: 7 },
    { ids: [7, 7, 7], quorum: 2, want: 7 },
    { ids: [2, 9, 8], quorum: 2, want: 8 }, // a follower may be ahead of what the leader counts
    { ids: [2 ** 46, 2 ** 46 - 1, 0], quorum: 2, want: 2 ** 46 - 1 },
    { ids: [7, 3, 5], quorum: 1, want: 7 },
    { ids: [7, 3, 5], quorum: 3, want: 3 },
    { ids: [4], quorum: 1, want: 4 },
    { ids: [9, 1, 5, 3, 7], quorum: 3, want: 5 },
    { ids: [9, 1, 5, 3, 7], quorum: 5, want: 1 },
  ])('quorumMatchId($ids, $quorum) = $want', ({ ids, quorum, want }) => {
    expect(quorumMatchId(ids, quorum)).toBe(want);
  });

  it('does not depend on the order of the match ids, nor reorder the caller array', () => {
    const ids = [3, 11, -1];
    for (const perm of [
      [3, 11, -1],
      [3, -1, 11],
      [11, 3, -1],
      [11, -1, 3],
      [-1, 3, 11],
      [-1, 11, 3],
    ]) {
      expect(quorumMatchId(perm, 2)).toBe(3);
    }
    quorumMatchId(ids, 2);
    expect(ids).toEqual([3, 11, -1]);
  });

  it('sorts numerically, not as strings', () => {
    // A default Array#sort would put 10 before 9 and answer 10 here.
    expect(quorumMatchId([9, 10, 100], 2)).toBe(10);
    expect(quorumMatchId([9, 10, 100], 3)).toBe(9);
  });

  it.each([
    { ids: [1, 2, 3], quorum: 0 },
    { ids: [1, 2, 3], quorum: -1 },
    { ids: [1, 2, 3], quorum: 4 },
    { ids: [1, 2], quorum: 3 },
    { ids: [], quorum: 1 },
  ])('refuses quorum $quorum of $ids.length replicas', ({ ids, quorum }) => {
    expect(() => quorumMatchId(ids, quorum)).toThrow(RangeError);
  });
});

describe('majorityOf', () => {
  it.each([
    { replicas: 1, want: 1 },
    { replicas: 2, want: 2 },
    { replicas: 3, want: 2 },
    { replicas: 4, want: 3 },
    { replicas: 5, want: 3 },
    { replicas: 6, want: 4 },
    { replicas: 7, want: 4 },
  ])('majorityOf($replicas) = $want', ({ replicas, want }) => {
    expect(majorityOf(replicas)).toBe(want);
  });

  it('any two majorities of the same replicas intersect', () => {
    for (let n = 1; n <= 9; n++) expect(2 * majorityOf(n)).toBeGreaterThan(n);
  });
});
