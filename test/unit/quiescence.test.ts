import { describe, expect, it } from 'vitest';
import { mayQuiesce, reopenedSegment, type LeaderActivity } from '../../src/control/quiescence.js';
import { isQuiesced, type SegmentMeta } from '../../src/fencing/keys.js';

const idle: LeaderActivity = { idleMs: 10_000, pending: 0, lastId: 41, commitId: 41, flushedId: 41, busy: false };

describe('mayQuiesce', () => {
  it('seals a log idle long enough with everything committed and flushed', () => {
    expect(mayQuiesce(idle, 10_000)).toBe(true);
    expect(mayQuiesce({ ...idle, lastId: -1, commitId: -1, flushedId: -1 }, 10_000)).toBe(true);
  });

  it('leaves a log alone while anything could be lost or cut by the seal', () => {
    expect(mayQuiesce({ ...idle, idleMs: 9_999 }, 10_000)).toBe(false);
    expect(mayQuiesce({ ...idle, pending: 1 }, 10_000)).toBe(false);
    expect(mayQuiesce({ ...idle, lastId: 42 }, 10_000)).toBe(false);
    expect(mayQuiesce({ ...idle, flushedId: 40 }, 10_000)).toBe(false);
    expect(mayQuiesce({ ...idle, busy: true }, 10_000)).toBe(false);
  });

  it('never quiesces with --quiesce-after-ms 0', () => {
    expect(mayQuiesce({ ...idle, idleMs: Number.MAX_SAFE_INTEGER }, 0)).toBe(false);
  });
});

describe('isQuiesced', () => {
  const sealed: SegmentMeta = { epoch: 4, firstId: 10, lastId: 41, replicas: {}, closedClean: true, quiesced: true };

  it('is a log with no leader key whose last segment was sealed for quiescence', () => {
    expect(isQuiesced({ leader: undefined, segments: [{ ...sealed, epoch: 3, quiesced: undefined }, sealed] })).toBe(true);
  });

  it('is not a log that has a leader, a later segment, or a segment closed by a clean stop', () => {
    expect(isQuiesced({ leader: { id: 'r1' }, segments: [sealed] })).toBe(false);
    expect(isQuiesced({ leader: undefined, segments: [sealed, { epoch: 5, firstId: 42, lastId: null, replicas: {} }] })).toBe(false);
    expect(isQuiesced({ leader: undefined, segments: [{ ...sealed, quiesced: undefined }] })).toBe(false);
    expect(isQuiesced({ leader: undefined, segments: [] })).toBe(false);
  });
});

describe('reopenedSegment', () => {
  it('opens the next epoch right after the seal, written to the live replicas', () => {
    const live = { r1: 'i1', r3: 'i3' };
    expect(reopenedSegment({ epoch: 4, firstId: 10, lastId: 41, replicas: {}, closedClean: true, quiesced: true }, 5, live)).toEqual({ epoch: 5, firstId: 42, lastId: null, replicas: live });
  });
});
