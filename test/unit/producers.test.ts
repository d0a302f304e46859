/**
 * The idempotent producer's rules (src/quorum/producers.ts), the marks that
 * carry them with the entries (entry-buffer.ts, log-replica.ts, leader.ts)
 * and the formats that carry marks and snapshots (peer/wire.ts,
 * peer/forwarded-appends.ts, flusher/object-format.ts).
 */
import { describe, expect, it } from 'vitest';
import { EntryBuffer } from '../../src/quorum/entry-buffer.js';
import { LeaderLog, type LeaderConfig } from '../../src/quorum/leader.js';
import { LogReplica } from '../../src/quorum/log-replica.js';
import { ReplyStatus } from '../../src/quorum/messages.js';
import { PRODUCER_ID_PATTERN, PRODUCER_WINDOW, ProducerTable, isProducerSeq, type ProducerMark } from '../../src/quorum/producers.js';
import { decodeEntryRuns, encodeEntryRuns } from '../../src/peer/wire.js';
import { decodeForwardedAppend, encodeForwardedAppend } from '../../src/peer/forwarded-appends.js';
import { producerOf } from '../../src/http/bodies.js';

const DAY = 86_400_000;
const limits = { expiryMs: DAY, maxProducers: 3 };
const T0 = 1_800_000_000_000;
const mark = (producerId: string, firstSeq: number, firstId: number, count = 1, timeMs = T0): ProducerMark => ({ producerId, firstSeq, firstId, count, timeMs });

describe('judging an append', () => {
  it('takes an unknown producer at any seq', () => {
    const t = new ProducerTable(limits);
    expect(t.judge('p', 0, 1, T0)).toEqual({ kind: 'new' });
    expect(t.judge('p', 12345, 3, T0)).toEqual({ kind: 'new' });
  });

  it('takes the next seq after a batch, and answers a retry of it with its ids', () => {
    const t = new ProducerTable(limits);
    t.record(mark('p', 10, 100, 3));
    expect(t.judge('p', 13, 1, T0)).toEqual({ kind: 'new' });
    expect(t.judge('p', 10, 3, T0)).toEqual({ kind: 'duplicate', firstId: 100, lastId: 102 });
  });

  it('refuses a seq that skips ahead, naming the one expected', () => {
    const t = new ProducerTable(limits);
    t.record(mark('p', 10, 100, 3));
    expect(t.judge('p', 14, 1, T0)).toEqual({ kind: 'gap', expectedSeq: 13 });
  });

  it(`remembers the last ${PRODUCER_WINDOW} batches; older ones are stale`, () => {
    const t = new ProducerTable(limits);
    for (let i = 0; i < PRODUCER_WINDOW + 2; i++) t.record(mark('p', i * 2, 50 + i * 2, 2));
    // Batches 0 and 1 (seqs 0 and 2) fell out of the window.
    expect(t.judge('p', 0, 2, T0)).toEqual({ kind: 'stale', expectedSeq: 14 });
    expect(t.judge('p', 2, 2, T0)).toEqual({ kind: 'stale', expectedSeq: 14 });
    for (let i = 2; i < PRODUCER_WINDOW + 2; i++) expect(t.judge('p', i * 2, 2, T0)).toEqual({ kind: 'duplicate', firstId: 50 + i * 2, lastId: 51 + i * 2 });
  });

  it('answers a run of seqs inside one remembered batch with the ids those seqs got (a writer resending entry by entry)', () => {
    const t = new ProducerTable(limits);
    t.record(mark('p', 0, 10, 4));
    expect(t.judge('p', 1, 1, T0)).toEqual({ kind: 'duplicate', firstId: 11, lastId: 11 });
    expect(t.judge('p', 2, 2, T0)).toEqual({ kind: 'duplicate', firstId: 12, lastId: 13 });
    // Partly applied, partly new: neither a duplicate nor a new batch.
    expect(t.judge('p', 3, 2, T0)).toEqual({ kind: 'stale', expectedSeq: 4 });
  });

  it('calls a run of seqs that spans two remembered batches stale (no one run of ids answers it)', () => {
    const t = new ProducerTable(limits);
    t.record(mark('p', 0, 0, 4));
    t.record(mark('p', 4, 20, 4));
    expect(t.judge('p', 3, 2, T0)).toEqual({ kind: 'stale', expectedSeq: 8 });
    expect(t.judge('p', 0, 8, T0)).toEqual({ kind: 'stale', expectedSeq: 8 });
  });

  it('keeps producers apart', () => {
    const t = new ProducerTable(limits);
    t.record(mark('a', 0, 0));
    t.record(mark('b', 0, 1));
    expect(t.judge('a', 0, 1, T0)).toEqual({ kind: 'duplicate', firstId: 0, lastId: 0 });
    expect(t.judge('b', 0, 1, T0)).toEqual({ kind: 'duplicate', firstId: 1, lastId: 1 });
    expect(t.judge('a', 1, 1, T0)).toEqual({ kind: 'new' });
  });

  it('judging changes nothing: the same question gets the same answer', () => {
    const t = new ProducerTable(limits);
    t.record(mark('p', 0, 0));
    expect(t.judge('p', 1, 1, T0)).toEqual({ kind: 'new' });
    expect(t.judge('p', 1, 1, T0)).toEqual({ kind: 'new' });
    expect(t.size).toBe(1);
  });
});

describe('bounds', () => {
  it('forgets a producer idle for the expiry, by the times its marks carry; a retry then is new', () => {
    const t = new ProducerTable(limits);
    t.record(mark('p', 0, 0, 1, T0));
    expect(t.judge('p', 0, 1, T0 + DAY - 1)).toEqual({ kind: 'duplicate', firstId: 0, lastId: 0 });
    expect(t.judge('p', 0, 1, T0 + DAY)).toEqual({ kind: 'new' });
    expect(t.size).toBe(0);
  });

  it('a new batch keeps a producer alive', () => {
    const t = new ProducerTable(limits);
    t.record(mark('p', 0, 0, 1, T0));
    t.record(mark('p', 1, 1, 1, T0 + DAY - 10));
    expect(t.judge('p', 0, 1, T0 + DAY + 10)).toEqual({ kind: 'duplicate', firstId: 0, lastId: 0 });
  });

  it('expire() sweeps every idle producer', () => {
    const t = new ProducerTable(limits);
    t.record(mark('old', 0, 0, 1, T0));
    t.record(mark('new', 0, 1, 1, T0 + DAY));
    t.expire(T0 + DAY + 1);
    expect(t.snapshot().producers.map((p) => p.producerId)).toEqual(['new']);
  });

  it('keeps at most maxProducers, the least recently used going first', () => {
    const t = new ProducerTable(limits);
    t.record(mark('a', 0, 0));
    t.record(mark('b', 0, 1));
    t.record(mark('c', 0, 2));
    t.record(mark('a', 1, 3)); // a is used again: b is now the least recently used
    t.record(mark('d', 0, 4));
    expect(t.snapshot().producers.map((p) => p.producerId)).toEqual(['c', 'a', 'd']);
    expect(t.judge('b', 0, 1, T0)).toEqual({ kind: 'new' });
  });

  it('a snapshot over the bound loads the most recently used', () => {
    const big = new ProducerTable({ expiryMs: DAY, maxProducers: 10 });
    for (const [i, p] of ['a', 'b', 'c', 'd', 'e'].entries()) big.record(mark(p, 0, i));
    expect(new ProducerTable(limits, big.snapshot()).snapshot().producers.map((p) => p.producerId)).toEqual(['c', 'd', 'e']);
  });
});

describe('rebuilding from marks', () => {
  it('a snapshot plus the marks above it judge as the table that made them', () => {
    const leader = new ProducerTable(limits);
    const marks = [mark('a', 0, 0, 2), mark('b', 5, 2), mark('a', 2, 3, 3), mark('b', 6, 6)];
    leader.record(marks[0]!);
    leader.record(marks[1]!);
    leader.advanceTo(2);
    const snapshot = leader.snapshot();
    leader.record(marks[2]!);
    leader.record(marks[3]!);
    const rebuilt = new ProducerTable(limits, snapshot);
    for (const m of marks) rebuilt.record(m); // marks at or below the snapshot are already in it
    expect(rebuilt.snapshot()).toEqual(leader.snapshot());
    for (const [p, seq, n] of [['a', 0, 2], ['a', 2, 3], ['a', 5, 1], ['b', 5, 1], ['b', 6, 1], ['b', 8, 1]] as const) expect(rebuilt.judge(p, seq, n, T0)).toEqual(leader.judge(p, seq, n, T0));
  });

  it('a snapshot is a copy: later records do not change it', () => {
    const t = new ProducerTable(limits);
    t.record(mark('a', 0, 0));
    const s = t.snapshot();
    t.record(mark('a', 1, 1));
    expect(s.producers[0]!.batches).toHaveLength(1);
    expect(s.throughId).toBe(0);
  });
});

describe('header values', () => {
  it.each(['p', 'a.b_c:d-9', 'x'.repeat(128)])('accepts producer id %s', (id) => expect(PRODUCER_ID_PATTERN.test(id)).toBe(true));
  it.each(['', 'x'.repeat(129), 'a b', 'é', 'a/b'])('refuses producer id %j', (id) => expect(PRODUCER_ID_PATTERN.test(id)).toBe(false));
  it('seqs are non-negative safe integers', () => {
    expect([0, 1, Number.MAX_SAFE_INTEGER].every(isProducerSeq)).toBe(true);
    expect([-1, 1.5, Number.MAX_SAFE_INTEGER + 1, Number.NaN].some(isProducerSeq)).toBe(false);
  });
});

describe('the producer headers (http/bodies.ts producerOf)', () => {
  const h = (id?: string | string[], seq?: string) => ({ 'tern-producer-id': id, 'tern-producer-seq': seq });
  it('takes both or neither', () => {
    expect(producerOf({}, 1)).toBeUndefined();
    expect(producerOf(h('p', '7'), 3)).toEqual({ id: 'p', seq: 7 });
    expect(producerOf(h('p', String(Number.MAX_SAFE_INTEGER)), 1)).toEqual({ id: 'p', seq: Number.MAX_SAFE_INTEGER });
  });
  it.each([
    ['only the id', h('p')],
    ['only the seq', h(undefined, '1')],
    ['the id twice', h(['p', 'q'], '1')],
    ['a bad id', h('a b', '1')],
    ['a negative seq', h('p', '-1')],
    ['a fraction', h('p', '1.5')],
    ['a word', h('p', 'one')],
    ['a seq past the safe integers', h('p', '9007199254740992')],
  ])('refuses %s with BAD_REQUEST', (_, headers) => {
    expect(() => producerOf(headers, 1)).toThrow(expect.objectContaining({ code: 'BAD_REQUEST' }));
  });
  it('refuses a batch whose last seq would pass the safe integers', () => {
    expect(() => producerOf(h('p', String(Number.MAX_SAFE_INTEGER)), 2)).toThrow(expect.objectContaining({ code: 'BAD_REQUEST' }));
  });
});

describe('marks travel with their entries', () => {
  const b = (s: string) => Buffer.from(s);

  it('the buffer holds a mark while it holds its first entry', () => {
    const buf = new EntryBuffer(0, { bytes: 0 });
    buf.append(1, [b('a'), b('b'), b('c')], [mark('p', 0, 0, 2), mark('q', 0, 2), mark('r', 0, 7)]);
    expect(buf.marksBetween(0, 10).map((m) => m.producerId)).toEqual(['p', 'q']);
    buf.releaseThrough(0);
    expect(buf.marksBetween(0, 10).map((m) => m.producerId)).toEqual(['q']);
  });

  it('truncation drops a batch cut in two with its tail', () => {
    const buf = new EntryBuffer(0, { bytes: 0 });
    buf.append(1, [b('a'), b('b'), b('c'), b('d')], [mark('p', 0, 0, 1), mark('q', 0, 1, 3)]);
    buf.truncateFrom(3);
    expect(buf.marksBetween(0, 10).map((m) => m.producerId)).toEqual(['p']);
  });

  it('a batch recovery cut short is no batch to rebuild from: only whole batches of one epoch run count', () => {
    const buf = new EntryBuffer(0, { bytes: 0 });
    // A follower got the head (ids 0-1) of a 4-entry batch of epoch 1 ...
    buf.append(1, [b('a'), b('b')], [mark('p', 0, 0, 4), mark('q', 0, 1, 1)]);
    expect(buf.completeMarksBetween(0, 10).map((m) => m.producerId)).toEqual(['q']);
    // ... and epoch 2's leader, which recovered only ids 0-1, wrote other entries after them.
    buf.append(2, [b('x'), b('y')]);
    expect(buf.marksBetween(0, 10).map((m) => m.producerId)).toEqual(['p', 'q']);
    expect(buf.completeMarksBetween(0, 10).map((m) => m.producerId)).toEqual(['q']);
    // The whole batch, re-replicated in its own epoch, counts.
    const whole = new EntryBuffer(0, { bytes: 0 });
    whole.append(1, [b('a'), b('b'), b('c'), b('d')], [mark('p', 0, 0, 4)]);
    whole.append(2, [b('x')]);
    expect(whole.completeMarksBetween(0, 10)).toEqual([mark('p', 0, 0, 4)]);
  });

  const config: LeaderConfig = { self: 'r1', peers: ['r2', 'r3'], epoch: 1, maxInflight: 4, maxBatchEntries: 2, maxBatchBytes: 1 << 20, pipelineMinBytes: 0, ackTimeoutTicks: 10, retransmitTicks: 5, heartbeatTicks: 3, backoffTicks: 1, checkQuorum: false };

  it('a leader sends each mark with the message that holds its first entry; a follower keeps it', () => {
    const leader = new LeaderLog<string>(new LogReplica('l', { bytes: 0 }), config);
    const r = leader.propose([b('a'), b('b'), b('c')], 'x', { producerId: 'p', firstSeq: 7, timeMs: T0 });
    expect(r).toMatchObject({ ok: true, firstId: 0, lastId: 2, mark: mark('p', 7, 0, 3) });
    // maxBatchEntries 2: the batch goes in two messages, the mark with the first.
    const follower = new LogReplica('l', { bytes: 0 });
    const marksSent: unknown[] = [];
    for (let toR2 = leader.ready().messages.filter((m) => m.to === 'r2'); toR2.length > 0; toR2 = leader.ready().messages.filter((m) => m.to === 'r2' && m.req.entries.length > 0)) {
      for (const m of toR2) {
        marksSent.push(m.req.marks);
        const reply = follower.handleAppend(m.req);
        expect(reply.status).toBe(ReplyStatus.Ok);
        leader.handleReply('r2', reply);
      }
    }
    expect(marksSent).toEqual([[mark('p', 7, 0, 3)], undefined]);
    expect(follower.buffer.marksBetween(0, 2)).toEqual([mark('p', 7, 0, 3)]);
    // Recovery fetches carry them too.
    const runs = decodeEntryRuns(encodeEntryRuns('l', follower.runsBetween(0, 2, 1 << 20)));
    const recovering = new LogReplica('l', { bytes: 0 });
    for (const run of runs) recovering.adopt(run);
    expect(recovering.buffer.marksBetween(0, 2)).toEqual([mark('p', 7, 0, 3)]);
  });

  it('awaitCommit acks a retry once its original commits, and fails it with the leader', () => {
    const leader = new LeaderLog<string>(new LogReplica('l', { bytes: 0 }), config);
    leader.propose([b('a')], 'first', { producerId: 'p', firstSeq: 0, timeMs: T0 });
    const sent = leader.ready().messages;
    leader.awaitCommit(0, 0, 'retry');
    expect(leader.ready().acked).toEqual([]);
    const r2 = sent.find((m) => m.to === 'r2')!.req;
    leader.handleReply('r2', { status: ReplyStatus.Ok, epoch: 1, seq: r2.seq, lastId: 0 });
    expect(leader.ready().acked.map((a) => a.token).sort()).toEqual(['first', 'retry']);
    leader.awaitCommit(0, 0, 'late retry');
    expect(leader.ready().acked).toEqual([{ token: 'late retry', firstId: 0, lastId: 0 }]);
    leader.propose([b('b')], 'second');
    leader.awaitCommit(1, 1, 'waiting');
    leader.stepDown();
    expect(leader.ready().failed.map((f) => [f.token, f.reason])).toEqual([['second', 'FENCED'], ['waiting', 'FENCED']]);
  });

  it('awaitCommit times out as a proposal does', () => {
    const leader = new LeaderLog<string>(new LogReplica('l', { bytes: 0 }), config);
    leader.propose([b('a')], 'first');
    leader.awaitCommit(0, 0, 'retry');
    for (let i = 0; i < config.ackTimeoutTicks; i++) leader.tick();
    expect(leader.ready().failed.map((f) => [f.token, f.reason])).toEqual([['first', 'ACK_TIMEOUT'], ['retry', 'ACK_TIMEOUT']]);
  });
});

describe('forwarded appends carry the producer and the append\'s own time', () => {
  it.each([
    { single: true, timeMs: undefined },
    { single: false, timeMs: undefined },
    { single: true, timeMs: 1_800_000_000_000 },
    { single: false, timeMs: 0 },
  ])('single $single, time $timeMs', ({ single, timeMs }) => {
    const append = { entries: [Buffer.from('x')], single, producer: { id: 'prod:1', seq: 2 ** 52 }, ...(timeMs === undefined ? {} : { timeMs }) };
    const { chunks } = encodeForwardedAppend('orders', append);
    const item = Buffer.concat(chunks).subarray(4);
    const decoded = decodeForwardedAppend(item);
    expect(decoded).toMatchObject({ log: 'orders', single, producer: { id: 'prod:1', seq: 2 ** 52 } });
    expect(decoded.timeMs).toBe(timeMs);
    expect(decoded.frames.equals(Buffer.concat(chunks.slice(1)))).toBe(true);
  });

  it('an append without a producer or time has neither', () => {
    const { chunks } = encodeForwardedAppend('orders', { entries: [Buffer.from('x')], single: false, timeMs: 5 });
    const decoded = decodeForwardedAppend(Buffer.concat(chunks).subarray(4));
    expect(decoded.producer).toBeUndefined();
    expect(decoded.timeMs).toBe(5);
    expect(decodeForwardedAppend(Buffer.concat(encodeForwardedAppend('orders', { entries: [], single: true }).chunks).subarray(4)).timeMs).toBeUndefined();
  });

  it('a cut producer header is BAD_REQUEST', () => {
    const { chunks } = encodeForwardedAppend('orders', { entries: [], single: false, producer: { id: 'p', seq: 1 } });
    const item = Buffer.concat(chunks).subarray(4);
    expect(() => decodeForwardedAppend(item.subarray(0, item.length - 3))).toThrow(/truncated producer/);
  });
});
