/** Binary encoding of the replication messages: src/peer/wire.ts. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ReplyStatus, type AppendReply, type AppendRequest } from '../../src/quorum/messages.js';
import { WireError, decodeAppendReply, decodeAppendRequest, decodeEntryRuns, encodeAppendReply, encodeAppendRequest, encodeEntryRuns, requestVersion } from '../../src/peer/wire.js';

const req = (over: Partial<AppendRequest> = {}): AppendRequest => ({
  log: 'orders',
  epoch: 3,
  leader: 'r1',
  seq: 17,
  firstId: 10,
  prevEpoch: 2,
  entryEpoch: 3,
  commitId: 9,
  entries: [Buffer.from('hello')],
  ...over,
});

function body(r: AppendRequest): Buffer {
  const { chunks, length } = encodeAppendRequest(r);
  const out = Buffer.concat(chunks);
  expect(out.length).toBe(length);
  return out;
}

const allBytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));

describe('AppendRequest round trip', () => {
  it.each([
    { name: 'one text entry', r: req() },
    { name: 'a heartbeat (no entries)', r: req({ entries: [] }) },
    { name: 'an empty entry alone', r: req({ entries: [Buffer.alloc(0)] }) },
    { name: 'empty entries around others', r: req({ entries: [Buffer.alloc(0), Buffer.from('x'), Buffer.alloc(0), Buffer.alloc(0)] }) },
    { name: 'every byte value', r: req({ entries: [allBytes, Buffer.from([0]), Buffer.from([255, 255])] }) },
    { name: 'bytes that look like a header', r: req({ entries: [Buffer.from([1, 6, 0, 0, 0, 0]), Buffer.alloc(64, 0xff)] }) },
    { name: 'first message of a log', r: req({ firstId: 0, prevEpoch: -1, commitId: -1 }) },
    { name: 'ids at 2^46', r: req({ firstId: 2 ** 46, commitId: 2 ** 46 - 1 }) },
    { name: 'largest i48 ids', r: req({ firstId: 2 ** 47 - 1, commitId: 2 ** 47 - 2 }) },
    { name: 'largest u32 epoch and seq', r: req({ epoch: 2 ** 32 - 1, entryEpoch: 2 ** 32 - 1, seq: 2 ** 32 - 1, prevEpoch: 2 ** 31 - 1 }) },
    { name: 'empty log and leader names', r: req({ log: '', leader: '' }) },
    { name: 'longest names', r: req({ log: 'l'.repeat(255), leader: 'r'.repeat(255) }) },
    { name: 'many entries', r: req({ entries: Array.from({ length: 1000 }, (_, i) => Buffer.from(String(i))) }) },
  ])('$name', ({ r }) => {
    const decoded = decodeAppendRequest(body(r));
    expect(decoded).toEqual(r);
    expect(decoded.entries.map((e) => e.toString('hex'))).toEqual(r.entries.map((e) => e.toString('hex')));
  });

  it('references the entries in the chunks instead of copying them', () => {
    const entries = [Buffer.from('abc'), Buffer.from('defg')];
    const { chunks, length } = encodeAppendRequest(req({ entries }));
    expect(chunks.slice(1)).toHaveLength(2);
    expect(chunks[1]).toBe(entries[0]);
    expect(chunks[2]).toBe(entries[1]);
    expect(length).toBe(chunks.reduce((n, c) => n + c.length, 0));
  });

  it('decodes entries as views into the body, not copies', () => {
    const encoded = body(req({ entries: [Buffer.from('abc'), Buffer.from('defg')] }));
    const decoded = decodeAppendRequest(encoded);
    expect(decoded.entries[1]!.buffer).toBe(encoded.buffer);
    encoded[encoded.length - 1] = 'Z'.charCodeAt(0);
    expect(decoded.entries[1]!.toString()).toBe('defZ');
  });

  it('decodes a body that sits at an offset inside a larger buffer', () => {
    const encoded = body(req({ entries: [allBytes] }));
    const padded = Buffer.concat([Buffer.from('junk'), encoded, Buffer.from('more')]);
    expect(decodeAppendRequest(padded.subarray(4, 4 + encoded.length))).toEqual(req({ entries: [allBytes] }));
  });

  it('round-trips arbitrary requests', () => {
    const name = fc.string({ maxLength: 40, unit: fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789-_.') });
    const u32 = fc.integer({ min: 0, max: 2 ** 32 - 1 });
    const arb = fc.record({
      log: name,
      epoch: u32,
      leader: name,
      seq: u32,
      firstId: fc.integer({ min: 0, max: 2 ** 46 }),
      prevEpoch: fc.integer({ min: -1, max: 2 ** 31 - 1 }),
      entryEpoch: u32,
      commitId: fc.integer({ min: -1, max: 2 ** 46 }),
      entries: fc.array(fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)), { maxLength: 12 }),
    }).map((r) => ({ ...r, entryEpoch: Math.min(r.entryEpoch, r.epoch) }));
    fc.assert(
      fc.property(arb, (r) => {
        expect(decodeAppendRequest(body(r))).toEqual(r);
      }),
      { numRuns: 300 },
    );
  });
});

describe('producer marks (version 3)', () => {
  const marks = [
    { producerId: 'p:1', firstSeq: 2 ** 53 - 1, firstId: 10, count: 2, timeMs: 1_800_000_000_000 },
    { producerId: 'q', firstSeq: 0, firstId: 12, count: 1, timeMs: 0 },
  ];

  it('round-trips a request with marks in the newest version', () => {
    const r = req({ entries: [Buffer.from('a'), Buffer.from('b'), Buffer.from('c')], marks });
    const b = body(r);
    expect(requestVersion(b)).toBe(4);
    expect(decodeAppendRequest(b)).toEqual(r);
  });

  it('a request stepped down to version 2 (for a replica of the previous release) leaves the marks out', () => {
    const { chunks } = encodeAppendRequest(req({ entries: [Buffer.from('a'), Buffer.from('b'), Buffer.from('c')], marks }), 2);
    const stepped = Buffer.concat(chunks);
    expect(requestVersion(stepped)).toBe(2);
    expect(decodeAppendRequest(stepped).marks).toBeUndefined();
    expect(decodeAppendRequest(stepped).entries.map(String)).toEqual(['a', 'b', 'c']);
  });

  it('a request without marks is the newest version with an empty marks section', () => {
    expect(requestVersion(body(req()))).toBe(4);
    expect(decodeAppendRequest(body(req())).marks).toBeUndefined();
  });

  it.each([
    { name: 'a mark past the entries', m: [{ ...marks[0]!, firstId: 13 }] },
    { name: 'a mark before the entries', m: [{ ...marks[0]!, firstId: 9 }] },
    { name: 'overlapping marks', m: [marks[0]!, { ...marks[1]!, firstId: 11 }] },
    { name: 'a bad producer id', m: [{ ...marks[0]!, producerId: 'a b' }] },
    { name: 'a seq that is no safe integer', m: [{ ...marks[0]!, firstSeq: 0.5 }] },
    { name: 'an empty batch', m: [{ ...marks[0]!, count: 0 }] },
  ])('refuses $name', ({ m }) => {
    expect(() => decodeAppendRequest(body(req({ entries: [Buffer.from('a'), Buffer.from('b'), Buffer.from('c')], marks: m })))).toThrow(WireError);
  });

  it('throws WireError on every truncation of a version 3 request', () => {
    const b = body(req({ entries: [Buffer.from('a'), Buffer.from('b'), Buffer.from('c')], marks }));
    for (let n = 0; n < b.length; n++) expect(() => decodeAppendRequest(b.subarray(0, n))).toThrow(WireError);
  });
});

describe('entry times (version 4)', () => {
  const entries = [Buffer.from('a'), Buffer.from('b'), Buffer.from('c')];
  const times = [
    { firstId: 10, timeMs: 1_800_000_000_000 },
    { firstId: 12, timeMs: 1_800_000_000_007 },
  ];

  it('round-trips the time runs of a request, and of recovery fetches', () => {
    const r = req({ entries, times });
    expect(decodeAppendRequest(body(r))).toEqual(r);
    const runs = [{ firstId: 10, epoch: 2, entries, times }];
    expect(decodeEntryRuns(encodeEntryRuns('l', runs))).toEqual(runs);
  });

  it('a request stepped down to version 3 (for a replica of the previous release) leaves the times out', () => {
    const stepped = Buffer.concat(encodeAppendRequest(req({ entries, times }), 3).chunks);
    expect(requestVersion(stepped)).toBe(3);
    expect(decodeAppendRequest(stepped).times).toBeUndefined();
    expect(decodeAppendRequest(stepped).entries.map(String)).toEqual(['a', 'b', 'c']);
  });

  it.each([
    { name: 'a first run not at the first entry', t: [{ firstId: 11, timeMs: 1 }] },
    { name: 'a run past the entries', t: [times[0]!, { firstId: 13, timeMs: 2e12 }] },
    { name: 'runs out of id order', t: [times[0]!, { firstId: 10, timeMs: 2e12 }] },
    { name: 'a time going back', t: [times[0]!, { firstId: 11, timeMs: 1 }] },
    { name: 'a time that is no safe integer', t: [{ firstId: 10, timeMs: 0.5 }] },
    { name: 'a negative time', t: [{ firstId: 10, timeMs: -1 }] },
  ])('refuses $name', ({ t }) => {
    expect(() => decodeAppendRequest(body(req({ entries, times: t })))).toThrow(WireError);
  });
});

describe('AppendRequest bad bodies', () => {
  const good = body(req({ entries: [Buffer.from('abc'), Buffer.alloc(0), Buffer.from('de')] }));

  it('throws WireError on every truncation', () => {
    for (let cut = 0; cut < good.length; cut++) {
      expect(() => decodeAppendRequest(good.subarray(0, cut)), `cut at ${cut} of ${good.length}`).toThrow(WireError);
    }
  });

  it('throws WireError on trailing bytes', () => {
    expect(() => decodeAppendRequest(Buffer.concat([good, Buffer.from([0])]))).toThrow(WireError);
    expect(() => decodeAppendRequest(Buffer.concat([good, Buffer.alloc(100)]))).toThrow(/trailing/);
  });

  it('throws WireError on an unknown version', () => {
    for (const version of [0, 5, 255]) {
      const bad = Buffer.from(good);
      bad[0] = version;
      expect(() => decodeAppendRequest(bad)).toThrow(WireError);
    }
  });

  it('throws WireError when an entry length runs past the body', () => {
    const r = req({ log: 'l', leader: 'r', entries: [Buffer.from('abc')] });
    const bad = body(r);
    // version, log len, 'l', leader len, 'r', epoch 4, seq 4, firstId 6, prevEpoch 4, entryEpoch 4, commitId 6, count 4
    const lengthAt = 1 + 1 + 1 + 1 + 1 + 4 + 4 + 6 + 4 + 4 + 6 + 4;
    expect(bad.readUInt32BE(lengthAt)).toBe(3);
    bad.writeUInt32BE(4, lengthAt);
    expect(() => decodeAppendRequest(bad)).toThrow(WireError);
    bad.writeUInt32BE(2, lengthAt);
    expect(() => decodeAppendRequest(bad)).toThrow(WireError); // one byte left over
  });

  it('throws WireError on an absurd entry count instead of allocating it', () => {
    const r = req({ log: 'l', leader: 'r', entries: [] });
    const bad = body(r);
    bad.writeUInt32BE(2 ** 32 - 1, bad.length - 4);
    expect(() => decodeAppendRequest(bad)).toThrow(WireError);
  });

  it('throws WireError on an empty body', () => {
    expect(() => decodeAppendRequest(Buffer.alloc(0))).toThrow(WireError);
  });

  // The fields are wide enough for values the protocol never sends: such a message is refused at decode, never applied.
  it.each([
    { name: 'a negative first id', r: req({ firstId: -5 }) },
    { name: 'an entry id past i48 (the object format)', r: req({ firstId: 2 ** 47 - 1, entries: [Buffer.from('a'), Buffer.from('b')] }) },
    { name: 'a commit id below -1', r: req({ commitId: -2 }) },
    { name: 'a prevEpoch below -1', r: req({ prevEpoch: -7 }) },
    { name: 'entries of a later epoch than the sender', r: req({ epoch: 3, entryEpoch: 4 }) },
  ])('throws WireError on $name', ({ r }) => {
    expect(() => decodeAppendRequest(body(r))).toThrow(WireError);
  });

  it('cannot encode an epoch past u32, so none can be decoded', () => {
    expect(() => encodeAppendRequest(req({ epoch: 5_000_000_000 }))).toThrow(RangeError);
  });
});

describe('AppendReply', () => {
  it.each([
    { status: ReplyStatus.Ok, epoch: 1, seq: 1, lastId: 0 },
    { status: ReplyStatus.Ok, epoch: 7, seq: 2 ** 32 - 1, lastId: 2 ** 46 },
    { status: ReplyStatus.Fenced, epoch: 2 ** 32 - 1, seq: 0, lastId: -1 },
    { status: ReplyStatus.Gap, epoch: 3, seq: 12345, lastId: -1 },
    { status: ReplyStatus.Gap, epoch: 3, seq: 12345, lastId: 2 ** 47 - 1 },
  ] satisfies AppendReply[])('round-trips status $status lastId $lastId, with the following flag in version 3, the incarnation tag in versions 2 and 3, neither in version 1', (reply) => {
    const tagged = { ...reply, incarnation: 0xdeadbeef };
    const v3 = encodeAppendReply({ ...tagged, following: true });
    expect(v3.length).toBe(21);
    expect(decodeAppendReply(v3)).toEqual({ ...tagged, following: true });
    expect(decodeAppendReply(encodeAppendReply(tagged))).toEqual(tagged);
    const v2 = encodeAppendReply({ ...tagged, following: true }, 2);
    expect(v2.length).toBe(20);
    expect(decodeAppendReply(v2)).toEqual(tagged);
    const v1 = encodeAppendReply(tagged, 1);
    expect(v1.length).toBe(16);
    expect(decodeAppendReply(v1)).toEqual(reply);
  });

  it('answers in the version of the request: a leader of the previous version reads the reply', () => {
    const { chunks } = encodeAppendRequest({ log: 'l', epoch: 1, leader: 'r', seq: 1, firstId: 0, prevEpoch: -1, entryEpoch: 1, commitId: -1, entries: [] }, 1);
    const body = Buffer.concat(chunks);
    expect(decodeAppendRequest(body).log).toBe('l');
    expect(requestVersion(body)).toBe(1);
    expect(encodeAppendReply({ status: ReplyStatus.Ok, epoch: 1, seq: 1, lastId: -1, incarnation: 7 }, requestVersion(body))[0]).toBe(1);
    expect(encodeAppendReply({ status: ReplyStatus.Ok, epoch: 1, seq: 1, lastId: -1, incarnation: 7, following: true }, 2)[0]).toBe(2);
    expect(requestVersion(Buffer.concat(encodeAppendRequest({ log: 'l', epoch: 1, leader: 'r', seq: 1, firstId: 0, prevEpoch: -1, entryEpoch: 1, commitId: -1, entries: [] }).chunks))).toBe(4);
  });

  const good = encodeAppendReply({ status: ReplyStatus.Gap, epoch: 3, seq: 4, lastId: 99 });

  it('throws WireError on every truncation and on trailing bytes', () => {
    for (let cut = 0; cut < good.length; cut++) expect(() => decodeAppendReply(good.subarray(0, cut))).toThrow(WireError);
    expect(() => decodeAppendReply(Buffer.concat([good, Buffer.from([0])]))).toThrow(WireError);
  });

  it('throws WireError on a lastId below -1', () => {
    expect(() => decodeAppendReply(encodeAppendReply({ status: ReplyStatus.Gap, epoch: 3, seq: 4, lastId: -2 }))).toThrow(WireError);
  });

  it('throws WireError on an unknown version or status', () => {
    const badVersion = Buffer.from(good);
    badVersion[0] = 5;
    expect(() => decodeAppendReply(badVersion)).toThrow(WireError);
    for (const status of [4, 5, 255]) {
      const bad = Buffer.from(good);
      bad[1] = status;
      expect(() => decodeAppendReply(bad)).toThrow(WireError);
    }
  });
});
