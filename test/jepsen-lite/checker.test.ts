import { describe, expect, it } from 'vitest';
import { check, type AppendOp, type FinalState, type Op, type ReadOp } from './checker.js';

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
const finalOf = (values: string[], firstId = 0, perReplica?: Record<string, string[]>): FinalState => ({
  L: {
    firstId,
    replicas: Object.fromEntries(
      Object.entries(perReplica ?? { r1: values, r2: values, r3: values }).map(([r, vs]) => [r, vs.map((value, i) => ({ id: firstId + i, value }))]),
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
    const final: FinalState = { L: { firstId: 0, replicas: { r1: [{ id: 0, value: 'a' }, { id: 2, value: 'b' }] } } };
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
});
