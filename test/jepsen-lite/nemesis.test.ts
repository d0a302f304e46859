import { describe, expect, it } from 'vitest';
import { isQuiesced, type LogStatus } from './nemesis.js';

const segment = (extra: Partial<LogStatus['segments'][number]>): LogStatus['segments'][number] => ({ epoch: 1, sealed: false, replicas: { r1: 'a', r2: 'b', r3: 'c' }, ...extra });

describe('jepsen-lite: which logs a kill-all judges in full (quiesced at the kill)', () => {
  it('takes quiesced: true from the status when the server reports it', () => {
    expect(isQuiesced({ leader: null, epoch: 3, quiesced: true, segments: [segment({ sealed: true, closedClean: true })] })).toBe(true);
  });

  it('otherwise, a log with no leader whose last segment is sealed closed clean', () => {
    expect(isQuiesced({ leader: null, epoch: 3, segments: [segment({ epoch: 2, sealed: true }), segment({ epoch: 3, sealed: true, closedClean: true })] })).toBe(true);
    // A leader, an open segment, a segment sealed but not clean (a takeover), no segment, no status: not quiesced.
    expect(isQuiesced({ leader: 'r1', epoch: 3, segments: [segment({ sealed: true, closedClean: true })] })).toBe(false);
    expect(isQuiesced({ leader: null, epoch: 3, segments: [segment({ sealed: true, closedClean: true }), segment({ epoch: 4 })] })).toBe(false);
    expect(isQuiesced({ leader: null, epoch: 3, segments: [segment({ sealed: true, closedClean: false })] })).toBe(false);
    expect(isQuiesced({ leader: null, epoch: 0, segments: [] })).toBe(false);
    expect(isQuiesced(undefined)).toBe(false);
  });
});
