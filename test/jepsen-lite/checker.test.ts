import { describe, expect, it } from 'vitest';
import { check, unquiescedRestarts, type AppendOp, type FinalState, type KillAll, type Op, type ReadOp, type SeekOp } from './checker.js';

let clock = 0;
const append = (value: string, outcome: AppendOp['outcome'], id?: number, times?: [number, number]): AppendOp => {
  const [invokeMs, completeMs] = times ?? [clock++, clock++];
  return { type: 'append', process: 'c1', log: 'L', replica: 'r1', value, invokeMs, completeMs, outcome, ...(id === undefined ? {} : { id }) };
};
const read = (entries: [number, string][], extra: Partial<ReadOp> = {}): ReadOp => ({
  type: 'read',
  process: 'reader',
  log: 'L',
  replica: 'r2',
  invokeMs: clock++,
  completeMs: clock++,
  outcome: 'ok',
  tail: false,
  entries: entries.map(([id, value]) => ({ id, value })),
  ...extra,
});
/** A final read of these values from firstId on, every entry at time 0 (the time rules have their own tests). */
const finalOf = (values: string[], firstId = 0, perReplica?: Record<string, string[]>): FinalState => ({
  L: {
    firstId,
    replicas: Object.fromEntries(
      Object.entries(perReplica ?? { r1: values, r2: values, r3: values }).map(([r, vs]) => [r, vs.map((value, i) => ({ id: firstId + i, value, timeMs: 0 }))]),
    ),
  },
});
const kinds = (history: Op[], final: FinalState) => check(history, final).logs.L!.anomalies.map((a) => a.kind);

describe('jepsen-lite checker', () => {
  const clean: Op[] = [append('a', 'ok', 0), append('b', 'ok', 1), append('x', 'fail'), append('c', 'info'), read([[0, 'a'], [1, 'b']])];

  it('passes a clean history, an unknown (info) append present or not', () => {
    expect(check(clean, finalOf(['a', 'b'])).valid).toBe(true);
    expect(check(clean, finalOf(['a', 'b', 'c'])).valid).toBe(true);
    const v = check(clean, finalOf(['a', 'b'])).logs.L!;
    expect(v.counts).toMatchObject({ ok: 2, fail: 1, info: 1, reads: 1, finalEntries: 2 });
  });

  it('flags a lost acknowledged append', () => {
    expect(kinds(clean, finalOf(['a']))).toContain('lost');
  });

  it('flags an acknowledged append found at another id', () => {
    expect(kinds([append('a', 'ok', 0), append('b', 'ok', 1)], finalOf(['b', 'a']))).toContain('lost');
  });

  it('flags a phantom: a value nobody appended, or one that failed definitely', () => {
    expect(kinds(clean, finalOf(['a', 'b', 'zzz']))).toEqual(['phantom']);
    expect(kinds(clean, finalOf(['a', 'b', 'x']))).toEqual(['phantom']);
  });

  it('flags a duplicated value', () => {
    expect(kinds(clean, finalOf(['a', 'b', 'b']))).toContain('duplicated');
  });

  it('flags divergent reads, during the run or between replicas at the end', () => {
    expect(kinds([...clean, read([[1, 'B!']])], finalOf(['a', 'b']))).toContain('divergent');
    expect(kinds(clean, finalOf([], 0, { r1: ['a', 'b'], r2: ['a', 'q'], r3: ['a', 'b'] }))).toContain('divergent');
  });

  it('flags a real-time order violation', () => {
    const history = [append('first', 'ok', 5, [0, 1]), append('second', 'ok', 4, [2, 3])];
    expect(kinds(history, finalOf(['x0', 'x1', 'x2', 'x3', 'second', 'first'].slice(0), 0))).toContain('order');
    // Concurrent appends may be ordered either way.
    const concurrent = [append('p', 'ok', 1, [0, 5]), append('q', 'ok', 0, [1, 4])];
    expect(kinds(concurrent, finalOf(['q', 'p']))).toEqual([]);
  });

  it('flags gaps in the final ids', () => {
    const final: FinalState = { L: { firstId: 0, replicas: { r1: [{ id: 0, value: 'a', timeMs: 0 }, { id: 2, value: 'b', timeMs: 0 }] } } };
    expect(kinds([append('a', 'ok', 0), append('b', 'ok', 2)], final)).toContain('gap');
  });

  it('flags a tail reader going backwards, and a read of an id the final log does not have', () => {
    const tail = (entries: [number, string][]) => read(entries, { tail: true });
    expect(kinds([...clean, tail([[1, 'b']]), tail([[0, 'a']])], finalOf(['a', 'b']))).toContain('backwards');
    expect(kinds([...clean, read([[2, 'discarded']])], finalOf(['a', 'b']))).toContain('beyond');
  });

  it('measures the longest stretch without an acknowledged append', () => {
    const history = [append('a', 'ok', 0, [0, 10]), append('b', 'ok', 1, [20, 30]), append('c', 'ok', 2, [900, 1000])];
    expect(check(history, finalOf(['a', 'b', 'c'])).logs.L).toMatchObject({ longestUnavailableMs: 970, longestUnavailableFromMs: 30 });
  });

  describe('time: the final read\'s times, append answers\' times and seeks by time', () => {
    // The final log: a@100 b@100 c@200 d@300 (ids 0-3); a, b, c acknowledged with their times, d an unknown (info) append.
    const times: [string, number][] = [['a', 100], ['b', 100], ['c', 200], ['d', 300]];
    const timedFinal = (entries: [string, number][], firstId = 0, other?: [string, number][]): FinalState => {
      const of = (es: [string, number][]) => es.map(([value, timeMs], i) => ({ id: firstId + i, value, timeMs }));
      return { L: { firstId, replicas: { r1: of(entries), r2: of(other ?? entries), r3: of(entries) } } };
    };
    const timed = (value: string, id: number, timeMs: number, at: [number, number]): AppendOp => ({ ...append(value, 'ok', id, at), timeMs });
    const acked = [timed('a', 0, 100, [0, 1]), timed('b', 1, 100, [2, 3]), timed('c', 2, 200, [4, 5]), append('d', 'info', undefined, [6, 7])];
    const seek = (time: number, id: number, timeMs: number | null, at: [number, number] = [20, 21]): SeekOp => ({ type: 'seek', process: 'seeker', log: 'L', replica: 'r2', invokeMs: at[0], completeMs: at[1], outcome: 'ok', time, id, timeMs });
    const fromTime = (time: number, entries: [number, string, number][], nextId: number, at: [number, number] = [22, 23]): ReadOp =>
      ({ ...read([], { invokeMs: at[0], completeMs: at[1] }), fromTime: time, nextId, entries: entries.map(([id, value, timeMs]) => ({ id, value, timeMs })) });
    const verdict = (history: Op[], final = timedFinal(times), killAlls: KillAll[] = []) => check(history, final, killAlls).logs.L!;
    const kindsOf = (history: Op[], final?: FinalState) => verdict(history, final).anomalies.map((a) => a.kind);

    it('passes seeks at a time, between times, before the first and after the last, "none yet" that trails, and counts them', () => {
      const history: Op[] = [
        ...acked,
        seek(100, 0, 100), // at the first time: its first entry, not b
        seek(150, 2, 200), // between: the next time
        seek(5, 0, 100), // before the first
        seek(301, 4, null), // after the last: none yet, the next id
        seek(250, 3, null), // none yet while d (time 300) was not committed
        seek(200, 1, null), // a follower trailing: it knew only a committed, c was acknowledged before the seek
        fromTime(150, [[2, 'c', 200], [3, 'd', 300]], 4),
        fromTime(301, [], 4),
        read([[2, 'c'], [3, 'd']]),
      ];
      const v = verdict(history);
      expect(v.anomalies).toEqual([]);
      expect(v.counts).toMatchObject({ seeks: 8, seeksNoneYet: 4 });
    });

    it('flags times going back in the final read', () => {
      expect(kindsOf(acked, timedFinal([['a', 100], ['b', 100], ['c', 200], ['d', 150]]))).toEqual(['time-went-back']);
    });

    it('flags an entry given another time than the final read\'s: by an append\'s answer, a read, another replica\'s final read', () => {
      expect(kindsOf([acked[0]!, acked[1]!, timed('c', 2, 199, [4, 5]), acked[3]!])).toEqual(['time-changed']);
      const timedRead = { ...read([]), entries: [{ id: 2, value: 'c', timeMs: 201 }] };
      expect(kindsOf([...acked, timedRead])).toEqual(['time-changed']);
      expect(kindsOf(acked, timedFinal(times, 0, [['a', 100], ['b', 100], ['c', 250], ['d', 300]]))).toEqual(['time-changed']);
      // Another value at the id is a loss or a divergence, not a changed time.
      expect(kindsOf([...acked, { ...read([]), entries: [{ id: 2, value: 'q', timeMs: 999 }] }])).toEqual(['divergent']);
    });

    it('flags a seek answered with an entry that is not the final log\'s first at or after the time', () => {
      // Past c (time 200), acknowledged before the seek.
      expect(kindsOf([...acked, seek(150, 3, 300)])).toEqual(['bad-seek']);
      // An entry before the time.
      expect(kindsOf([...acked, seek(150, 1, 100)])).toEqual(['bad-seek']);
      // The right id with another time than the entry's.
      expect(kindsOf([...acked, seek(150, 2, 201)])).toEqual(['bad-seek']);
      // An entry the final log does not have.
      expect(kindsOf([...acked, seek(400, 4, 400)])).toEqual(['bad-seek']);
    });

    it('flags "none yet" whose next id passes an entry at or after the time, or the final log\'s end', () => {
      expect(kindsOf([...acked, seek(150, 3, null)])).toEqual(['bad-seek']);
      expect(kindsOf([...acked, seek(301, 5, null)])).toEqual(['bad-seek']);
    });

    it('judges a fromTime read by where it starts, as offsets?time= is judged', () => {
      expect(kindsOf([...acked, fromTime(150, [[3, 'd', 300]], 4)])).toEqual(['bad-seek']);
      expect(kindsOf([...acked, fromTime(150, [], 3)])).toEqual(['bad-seek']);
      expect(kindsOf([...acked, fromTime(150, [], 2)])).toEqual([]);
    });

    it('leaves seeks below the final first id (truncated since) unjudged', () => {
      const v = verdict([...acked, seek(100, 1, 100)], timedFinal([['c', 200], ['d', 300]], 2));
      expect(v.anomalies).toEqual([]);
      expect(v.counts.seeks).toBe(0);
    });

    it('lists a bad seek before a kill-all that met the log unquiesced as outside the promise', () => {
      const v = verdict([...acked, seek(150, 3, 300, [8, 9])], timedFinal(times), [{ killMs: 10, restartMs: 20, quiesced: [] }]);
      expect(v.anomalies).toEqual([]);
      expect(v.outsidePromise.map((a) => a.kind)).toEqual(['bad-seek']);
    });
  });

  describe('after a kill-all (every replica SIGKILLed at once)', () => {
    // a and b acknowledged before the kill (10..20), b lost: the log restarted after a and took c at b's id.
    const before = [append('a', 'ok', 0, [0, 1]), append('b', 'ok', 1, [2, 3]), read([[0, 'a'], [1, 'b']], { invokeMs: 4, completeMs: 5 })];
    const after = [append('c', 'ok', 1, [30, 31]), append('d', 'ok', 2, [32, 33])];
    const killAt = (quiesced: string[]): KillAll[] => [{ killMs: 10, restartMs: 20, quiesced }];

    it('reports a loss on a log not quiesced at the kill as lost_outside_promise, with its consequences, not as anomalies', () => {
      const v = check([...before, ...after], finalOf(['a', 'c', 'd']), killAt([])).logs.L!;
      expect(v.anomalies).toEqual([]);
      expect(v.valid).toBe(true);
      // b lost; the read before the restart saw b at id 1 (divergent); b's id 1 is not below c's (order across the kill).
      expect(v.outsidePromise.map((a) => a.kind).sort()).toEqual(['divergent', 'lost_outside_promise', 'order']);
      expect(v.counts.lostOutsidePromise).toBe(1);
      expect(v.lossesExemptBeforeMs).toBe(20);
    });

    it('judges a log quiesced at the kill in full: the same loss is an anomaly', () => {
      const v = check([...before, ...after], finalOf(['a', 'c', 'd']), killAt(['L'])).logs.L!;
      expect(v.anomalies.map((a) => a.kind).sort()).toEqual(['divergent', 'lost', 'order']);
      expect(v.outsidePromise).toEqual([]);
      expect(v.lossesExemptBeforeMs).toBeUndefined();
    });

    it('still judges what was acknowledged or read after the restart on an unquiesced log', () => {
      // d acknowledged after the restart and lost: an anomaly whatever the kill.
      expect(kinds([...before, ...after], finalOf(['a', 'c']))).toContain('lost');
      const v = check([...before, ...after], finalOf(['a', 'c']), killAt([])).logs.L!;
      expect(v.anomalies.map((a) => a.kind)).toEqual(['lost']);
      expect(v.anomalies[0]!.detail).toMatch(/"d"/);
      // A read after the restart of an id the final log lacks, or of another value, is an anomaly.
      const lateRead = read([[1, 'c'], [2, 'd']], { invokeMs: 34, completeMs: 35 });
      expect(check([...before, ...after, lateRead], finalOf(['a', 'c', 'd']), killAt([])).logs.L!.anomalies).toEqual([]);
      expect(check([...before, ...after, lateRead], finalOf(['a', 'c']), killAt([])).logs.L!.anomalies.map((a) => a.kind).sort()).toEqual(['beyond', 'lost']);
      // A read before the restart past the end the log restarted from: outside the promise.
      const v2 = check([...before], finalOf(['a']), killAt([])).logs.L!;
      expect(v2.anomalies).toEqual([]);
      expect(v2.outsidePromise.map((a) => a.kind).sort()).toEqual(['beyond', 'lost_outside_promise']);
    });

    it('checks real-time order within each stretch between kills, not across one', () => {
      // After the restart: e acknowledged, then f invoked and given a lower id: an order anomaly even on an unquiesced log.
      const history = [...before, append('e', 'ok', 3, [30, 31]), append('f', 'ok', 2, [32, 33])];
      const v = check(history, finalOf(['a', 'b', 'f', 'e']), killAt([])).logs.L!;
      expect(v.anomalies.map((a) => a.kind)).toEqual(['order']);
    });

    it('leaves logs alone that no kill-all met unquiesced, and takes the last such kill as the bound', () => {
      expect(check(clean, finalOf(['a', 'b']), killAt(['L'])).logs.L!.outsidePromise).toEqual([]);
      const kills: KillAll[] = [{ killMs: 50, restartMs: 60, quiesced: ['L'] }, { killMs: 10, restartMs: 20, quiesced: [] }, { killMs: 80, restartMs: 90, quiesced: ['other'] }];
      expect(unquiescedRestarts(kills, 'L')).toEqual([20, 90]);
      expect(unquiescedRestarts(kills, 'other')).toEqual([20, 60]);
      // g acknowledged between the two kills and lost: outside the promise (the second kill met L unquiesced).
      const v = check([...before, append('g', 'ok', 2, [62, 63])], finalOf(['a', 'b']), kills).logs.L!;
      expect(v.anomalies).toEqual([]);
      expect(v.counts.lostOutsidePromise).toBe(1);
      expect(v.lossesExemptBeforeMs).toBe(90);
    });
  });
});
