/** The in-memory run of entries of one log on one replica: src/quorum/entry-buffer.ts. */
import { describe, expect, it } from 'vitest';
import { ENTRY_OVERHEAD_BYTES, EntryBuffer, UNKNOWN_TIME_MS, exceedsBound, memoryCost, type MemoryAccount } from '../../src/quorum/entry-buffer.js';

const b = (s: string) => Buffer.from(s);
const bs = (...s: string[]) => s.map(b);
/** What a MemoryAccount counts for `entries` entries of `bytes` bytes in all. */
const held = (bytes: number, entries: number) => bytes + entries * ENTRY_OVERHEAD_BYTES;

/** What the buffer holds, id by id, as strings. */
function contents(buf: EntryBuffer): string[] {
  const out: string[] = [];
  for (let id = buf.startId; id <= buf.lastId; id++) {
    const e = buf.get(id);
    expect(e, `id ${id} of [${buf.startId}, ${buf.lastId}] is missing`).toBeDefined();
    out.push(e!.toString());
  }
  return out;
}

function fresh(startId = 0): { buf: EntryBuffer; account: MemoryAccount } {
  const account = { bytes: 0 };
  return { buf: new EntryBuffer(startId, account), account };
}

describe('append and get', () => {
  it('gives dense ids from startId, in order', () => {
    const { buf } = fresh(100);
    expect([buf.startId, buf.lastId, buf.length]).toEqual([100, 99, 0]);
    buf.append(1, bs('a', 'b'));
    buf.append(1, bs('c'));
    expect([buf.startId, buf.lastId, buf.length]).toEqual([100, 102, 3]);
    expect(contents(buf)).toEqual(['a', 'b', 'c']);
    expect(buf.get(99)).toBeUndefined();
    expect(buf.get(103)).toBeUndefined();
  });

  it('holds entries by reference, not as copies', () => {
    const { buf } = fresh();
    const body = b('0123456789');
    const view = body.subarray(2, 5);
    buf.append(1, [view]);
    expect(buf.get(0)).toBe(view);
    body[2] = 'X'.charCodeAt(0);
    expect(buf.get(0)!.toString()).toBe('X34');
  });

  it('keeps empty entries as ids of their own', () => {
    const { buf, account } = fresh();
    buf.append(1, [Buffer.alloc(0), b('x'), Buffer.alloc(0)]);
    expect([buf.lastId, buf.bytes, account.bytes]).toEqual([2, 1, held(1, 3)]);
    expect(buf.get(0)!.length).toBe(0);
    expect(buf.get(2)!.length).toBe(0);
  });

  it('appending nothing changes nothing, not even the epoch runs', () => {
    const { buf } = fresh();
    buf.append(1, bs('a'));
    buf.append(9, []);
    buf.append(1, bs('b'));
    expect(buf.lastId).toBe(1);
    expect(buf.epochRuns()).toEqual([{ firstId: 0, epoch: 1 }]);
  });

  it('counts an overhead per entry against the bound, so empty entries are not free', () => {
    const account: MemoryAccount = { bytes: 0, limitBytes: 10 * ENTRY_OVERHEAD_BYTES };
    const buf = new EntryBuffer(0, account);
    const empties = (n: number) => Array.from({ length: n }, () => Buffer.alloc(0));
    expect(memoryCost(empties(4))).toBe(4 * ENTRY_OVERHEAD_BYTES);
    buf.append(1, empties(8));
    expect(account.bytes).toBe(8 * ENTRY_OVERHEAD_BYTES);
    expect([buf.hasRoomFor(empties(2)), buf.hasRoomFor(empties(3)), buf.hasRoomFor([b('x'), Buffer.alloc(0)])]).toEqual([true, false, false]);
    expect(exceedsBound({ bytes: 1e12 }, empties(1))).toBe(false); // no bound
  });

  it('counts bytes in the buffer and in the account shared by several buffers', () => {
    const account = { bytes: 0 };
    const one = new EntryBuffer(0, account);
    const two = new EntryBuffer(50, account);
    one.append(1, bs('aa', 'bbb'));
    two.append(4, bs('cccc'));
    expect([one.bytes, two.bytes, account.bytes]).toEqual([5, 4, held(9, 3)]);
  });
});

describe('slice', () => {
  const filled = () => {
    const { buf } = fresh();
    buf.append(1, bs('aa', 'bbb', 'c', 'dddd', 'ee'));
    return buf;
  };

  it.each([
    { from: 0, count: 10, bytes: 1000, want: ['aa', 'bbb', 'c', 'dddd', 'ee'] },
    { from: 0, count: 2, bytes: 1000, want: ['aa', 'bbb'] }, // count limit
    { from: 1, count: 1, bytes: 1000, want: ['bbb'] },
    { from: 0, count: 10, bytes: 5, want: ['aa', 'bbb'] }, // exactly fits
    { from: 0, count: 10, bytes: 6, want: ['aa', 'bbb', 'c'] },
    { from: 0, count: 10, bytes: 4, want: ['aa'] }, // 'bbb' would exceed
    { from: 0, count: 10, bytes: 1, want: ['aa'] }, // at least one, even when too big
    { from: 3, count: 10, bytes: 0, want: ['dddd'] },
    { from: 3, count: 10, bytes: 1000, want: ['dddd', 'ee'] },
    { from: 4, count: 10, bytes: 1000, want: ['ee'] },
    { from: 5, count: 10, bytes: 1000, want: [] }, // past the end: nothing to send
    { from: 9, count: 10, bytes: 1000, want: [] },
  ].map((c) => ({ ...c, name: `slice(${c.from}, count ${c.count}, bytes ${c.bytes}) = [${c.want.join(', ')}]` })))('$name', ({ from, count, bytes, want }) => {
    expect(filled().slice(from, count, bytes).map(String)).toEqual(want);
  });

  it('refuses ids below the start of the buffer', () => {
    const buf = filled();
    buf.releaseThrough(1);
    expect(() => buf.slice(1, 10, 100)).toThrow(RangeError);
    expect(buf.slice(2, 10, 100).map(String)).toEqual(['c', 'dddd', 'ee']);
  });

  it('returns the held buffers themselves', () => {
    const buf = filled();
    const [first] = buf.slice(0, 1, 100);
    expect(first).toBe(buf.get(0));
  });
});

describe('epochs', () => {
  // ids 0..1 epoch 1, 2..4 epoch 2, 5 epoch 5, 6..7 epoch 7
  const mixed = () => {
    const { buf, account } = fresh();
    buf.append(1, bs('a', 'b'));
    buf.append(2, bs('c', 'd'));
    buf.append(2, bs('e')); // same epoch continues the run
    buf.append(5, bs('f'));
    buf.append(7, bs('g', 'h'));
    return { buf, account };
  };

  it('answers the epoch of every held id, undefined outside', () => {
    const { buf } = mixed();
    expect([-1, 0, 1, 2, 3, 4, 5, 6, 7, 8].map((id) => buf.epochOf(id))).toEqual([undefined, 1, 1, 2, 2, 2, 5, 7, 7, undefined]);
  });

  it('lists the runs and where each ends', () => {
    const { buf } = mixed();
    expect(buf.epochRuns()).toEqual([
      { firstId: 0, epoch: 1 },
      { firstId: 2, epoch: 2 },
      { firstId: 5, epoch: 5 },
      { firstId: 6, epoch: 7 },
    ]);
    expect([0, 1, 2, 3, 4, 5, 6, 7].map((id) => buf.runLastId(id))).toEqual([1, 1, 4, 4, 4, 5, 7, 7]);
  });

  it('clips the first run to the start after a release, and forgets runs released whole', () => {
    const { buf } = mixed();
    buf.releaseThrough(2);
    expect(buf.epochRuns()).toEqual([
      { firstId: 3, epoch: 2 },
      { firstId: 5, epoch: 5 },
      { firstId: 6, epoch: 7 },
    ]);
    expect([2, 3, 4, 5].map((id) => buf.epochOf(id))).toEqual([undefined, 2, 2, 5]);
    buf.releaseThrough(5);
    expect(buf.epochRuns()).toEqual([{ firstId: 6, epoch: 7 }]);
    expect(buf.epochOf(6)).toBe(7);
  });

  it('has no runs when empty', () => {
    expect(fresh(10).buf.epochRuns()).toEqual([]);
    const { buf } = mixed();
    buf.releaseThrough(7);
    expect(buf.epochRuns()).toEqual([]);
  });
});

describe('truncateFrom', () => {
  const mixed = () => {
    const { buf, account } = fresh();
    buf.append(1, bs('a', 'bb'));
    buf.append(2, bs('ccc', 'dddd'));
    return { buf, account };
  };

  it('drops the tail inside a run, giving its bytes back', () => {
    const { buf, account } = mixed();
    buf.truncateFrom(3);
    expect(contents(buf)).toEqual(['a', 'bb', 'ccc']);
    expect([buf.lastId, buf.bytes, account.bytes]).toEqual([2, 6, held(6, 3)]);
    expect(buf.epochOf(2)).toBe(2);
    expect(buf.epochOf(3)).toBeUndefined();
  });

  it('drops whole runs at a run boundary, so a new epoch starts a new run there', () => {
    const { buf, account } = mixed();
    buf.truncateFrom(2);
    expect(buf.epochRuns()).toEqual([{ firstId: 0, epoch: 1 }]);
    expect(account.bytes).toBe(held(3, 2));
    buf.append(3, bs('X', 'Y'));
    expect(contents(buf)).toEqual(['a', 'bb', 'X', 'Y']);
    expect(buf.epochRuns()).toEqual([{ firstId: 0, epoch: 1 }, { firstId: 2, epoch: 3 }]);
    expect(buf.epochOf(2)).toBe(3);
    expect(buf.runLastId(0)).toBe(1);
  });

  it('re-appending in the epoch of the kept run extends that run', () => {
    const { buf } = mixed();
    buf.truncateFrom(3);
    buf.append(2, bs('D'));
    expect(buf.epochRuns()).toEqual([{ firstId: 0, epoch: 1 }, { firstId: 2, epoch: 2 }]);
    expect(contents(buf)).toEqual(['a', 'bb', 'ccc', 'D']);
  });

  it('ignores ids past the end and refuses ids below the start', () => {
    const { buf, account } = mixed();
    buf.truncateFrom(4);
    buf.truncateFrom(100);
    expect([buf.lastId, account.bytes]).toEqual([3, held(10, 4)]);
    buf.releaseThrough(0);
    expect(() => buf.truncateFrom(0)).toThrow(RangeError);
  });

  it('can empty the buffer from its start, after a release', () => {
    const { buf, account } = mixed();
    buf.releaseThrough(0);
    buf.truncateFrom(1);
    expect([buf.startId, buf.lastId, buf.length, buf.bytes, account.bytes]).toEqual([1, 0, 0, 0, 0]);
    expect(buf.epochRuns()).toEqual([]);
    // A new epoch writes the next ids; the runs describe only what is held.
    buf.append(4, bs('n1', 'n2'));
    expect(contents(buf)).toEqual(['n1', 'n2']);
    expect(buf.epochRuns()).toEqual([{ firstId: 1, epoch: 4 }]);
    expect(buf.epochOf(1)).toBe(4);
  });
});

describe('releaseThrough', () => {
  it('gives memory back, moves startId, and keeps later ids where they were', () => {
    const { buf, account } = fresh();
    buf.append(1, bs('aa', 'bbb', 'cccc'));
    buf.releaseThrough(1);
    expect([buf.startId, buf.lastId, buf.length, buf.bytes, account.bytes]).toEqual([2, 2, 1, 4, held(4, 1)]);
    expect(buf.get(0)).toBeUndefined();
    expect(buf.get(1)).toBeUndefined();
    expect(buf.get(2)!.toString()).toBe('cccc');
    buf.append(1, bs('d'));
    expect(buf.lastId).toBe(3);
    expect(contents(buf)).toEqual(['cccc', 'd']);
  });

  it('ignores ids already released', () => {
    const { buf, account } = fresh();
    buf.append(1, bs('aa', 'bbb'));
    buf.releaseThrough(0);
    buf.releaseThrough(0);
    buf.releaseThrough(-1);
    expect([buf.startId, account.bytes]).toEqual([1, held(3, 1)]);
  });

  it('releasing everything leaves an empty buffer that continues after it', () => {
    const { buf, account } = fresh();
    buf.append(1, bs('aa', 'bbb'));
    buf.releaseThrough(1);
    expect([buf.startId, buf.lastId, buf.length, buf.bytes, account.bytes]).toEqual([2, 1, 0, 0, 0]);
    buf.append(2, bs('c'));
    expect([buf.startId, buf.lastId, buf.get(2)?.toString(), buf.epochOf(2)]).toEqual([2, 2, 'c', 2]);
  });

  it('fast-forwards an empty or short buffer past what is durable elsewhere', () => {
    const { buf, account } = fresh();
    buf.append(1, bs('a', 'b'));
    buf.releaseThrough(41);
    expect([buf.startId, buf.lastId, buf.length, account.bytes]).toEqual([42, 41, 0, 0]);
    buf.append(3, bs('z'));
    expect([buf.lastId, buf.get(42)?.toString(), buf.epochOf(42)]).toEqual([42, 'z', 3]);
    expect(buf.epochRuns()).toEqual([{ firstId: 42, epoch: 3 }]);
  });

  it('keeps every id, epoch and byte count right across many releases and compactions', () => {
    const { buf, account } = fresh();
    const value = (id: number) => `v${id}`;
    const epochOf = (id: number) => 1 + Math.floor(id / 700); // a new epoch every 700 ids
    let next = 0;
    let released = -1;
    // Interleave appends and releases so the dead prefix is compacted several times.
    for (let round = 0; round < 40; round++) {
      for (let i = 0; i < 250; i++, next++) buf.append(epochOf(next), [b(value(next))]);
      released = Math.min(next - 1, released + 1 + ((round * 37) % 300));
      buf.releaseThrough(released);
      expect(buf.startId).toBe(released + 1);
      expect(buf.lastId).toBe(next - 1);
    }
    let bytes = 0;
    for (let id = buf.startId; id <= buf.lastId; id++) {
      expect(buf.get(id)?.toString()).toBe(value(id));
      expect(buf.epochOf(id)).toBe(epochOf(id));
      bytes += value(id).length;
    }
    expect(buf.get(buf.startId - 1)).toBeUndefined();
    expect([buf.bytes, account.bytes, buf.length]).toEqual([bytes, held(bytes, buf.length), buf.lastId - buf.startId + 1]);
    expect(buf.slice(buf.startId, 3, 1000).map(String)).toEqual([0, 1, 2].map((i) => value(buf.startId + i)));
    expect(buf.epochRuns()[0]).toEqual({ firstId: buf.startId, epoch: epochOf(buf.startId) });
    // Truncation after compaction still cuts at the right id.
    const cut = buf.startId + 5;
    buf.truncateFrom(cut);
    expect(buf.lastId).toBe(cut - 1);
    expect(buf.get(cut - 1)?.toString()).toBe(value(cut - 1));
  });

  it('releases many single ids one at a time (amortised compaction keeps ids right)', () => {
    const { buf, account } = fresh();
    for (let i = 0; i < 5000; i++) buf.append(1, [b(String(i))]);
    for (let i = 0; i < 4990; i++) {
      buf.releaseThrough(i);
      if (i % 997 === 0) expect(buf.get(i + 1)?.toString()).toBe(String(i + 1));
    }
    expect(buf.startId).toBe(4990);
    expect(contents(buf)).toEqual(['4990', '4991', '4992', '4993', '4994', '4995', '4996', '4997', '4998', '4999']);
    expect(account.bytes).toBe(held(40, 10));
  });
});

describe('timestamps', () => {
  const T = 1_800_000_000_000;

  it('answers each held id its run\'s time, and the first id at or after a time', () => {
    const { buf } = fresh(10);
    buf.append(1, bs('a', 'b'), undefined, [{ firstId: 10, timeMs: T }]);
    buf.append(1, bs('c'), undefined, [{ firstId: 12, timeMs: T }]); // same time: merges into the run before
    buf.append(1, bs('d', 'e'), undefined, [{ firstId: 13, timeMs: T + 5 }]);
    expect([10, 11, 12, 13, 14].map((id) => buf.timeOf(id))).toEqual([T, T, T, T + 5, T + 5]);
    expect(buf.timesOf(11, 4)).toEqual([T, T, T + 5, T + 5]);
    expect(buf.timeRunsBetween(11, 14)).toEqual([
      { firstId: 11, timeMs: T },
      { firstId: 13, timeMs: T + 5 },
    ]);
    expect([T - 1, T, T + 1, T + 5, T + 6].map((t) => buf.firstIdAtOrAfter(t))).toEqual([10, 10, 13, 13, 15]);
    expect(buf.lastTimeMs).toBe(T + 5);
    expect(buf.timeOf(9)).toBeUndefined();
  });

  it('entries sent without times keep the time of the entry before them (a sender of the previous release)', () => {
    const { buf } = fresh();
    buf.append(1, bs('a'), undefined, [{ firstId: 0, timeMs: T }]);
    buf.append(1, bs('b', 'c'));
    expect(buf.timesOf(0, 3)).toEqual([T, T, T]);
    const { buf: bare } = fresh();
    bare.append(1, bs('a'));
    expect(bare.timeOf(0)).toBe(UNKNOWN_TIME_MS);
    expect(bare.timeRunsBetween(0, 0)).toEqual([]);
    bare.append(1, bs('b'), undefined, [{ firstId: 1, timeMs: T }]);
    // Runs always start at the first id asked for: the wire and the object format require it.
    expect(bare.timeRunsBetween(0, 1)).toEqual([
      { firstId: 0, timeMs: UNKNOWN_TIME_MS },
      { firstId: 1, timeMs: T },
    ]);
  });

  it('never lets a time go back: a run older than the one before is held to it', () => {
    const { buf } = fresh();
    buf.append(1, bs('a'), undefined, [{ firstId: 0, timeMs: T }]);
    buf.append(1, bs('b'), undefined, [{ firstId: 1, timeMs: T - 10 }]);
    expect(buf.timesOf(0, 2)).toEqual([T, T]);
  });

  it('takes the run covering the first new entry when a message overlaps what is held', () => {
    const { buf } = fresh();
    buf.append(1, bs('a', 'b'), undefined, [{ firstId: 0, timeMs: T }]);
    buf.releaseThrough(1);
    // A message from id 0 whose first two entries were released: the run from 0 covers id 2.
    buf.append(1, bs('c'), undefined, [{ firstId: 0, timeMs: T + 1 }]);
    expect(buf.timeOf(2)).toBe(T + 1);
  });

  it('keeps the clipped run across releases and the newest time across truncation and release', () => {
    const { buf } = fresh();
    buf.append(1, bs('a', 'b', 'c'), undefined, [{ firstId: 0, timeMs: T }]);
    buf.append(2, bs('d'), undefined, [{ firstId: 3, timeMs: T + 9 }]);
    buf.releaseThrough(1);
    expect(buf.timesOf(2, 2)).toEqual([T, T + 9]);
    expect(buf.firstIdAtOrAfter(T)).toBe(2);
    buf.truncateFrom(3);
    expect(buf.timeRunsBetween(2, 2)).toEqual([{ firstId: 2, timeMs: T }]);
    buf.releaseThrough(2);
    expect(buf.lastTimeMs).toBe(T + 9);
    buf.raiseTimeFloor(T + 20);
    buf.raiseTimeFloor(T + 1);
    expect(buf.lastTimeMs).toBe(T + 20);
  });
});
