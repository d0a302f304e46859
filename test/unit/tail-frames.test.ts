import { describe, expect, it } from 'vitest';
import { FrameLimitError, FrameStreamDecoder, KEEP_ALIVE_FRAME, decodeTimedFrames, encodeFrames, encodeTimedFrames } from '../../src/frames.js';
import { encodeTailChunk, keepAliveChunk } from '../../src/replica/tail-stream.js';
import { tailFormatOf } from '../../src/http/tail.js';

const entries = [Buffer.from('a'), Buffer.alloc(0), Buffer.from('hello world'), Buffer.alloc(70_000, 7)];

describe('FrameStreamDecoder (a streaming tail read in chunks)', () => {
  it('decodes a stream cut at every possible byte, keep-alives included, into the same entries', () => {
    const stream = Buffer.concat([KEEP_ALIVE_FRAME, ...encodeFrames(entries.slice(0, 2)), KEEP_ALIVE_FRAME, ...encodeFrames(entries.slice(2)), KEEP_ALIVE_FRAME]);
    for (const cut of [1, 2, 3, 4, 5, 7, 13, 4096, stream.length]) {
      const d = new FrameStreamDecoder();
      const got: Buffer[] = [];
      let keepAlives = 0;
      for (let o = 0; o < stream.length; o += cut) {
        const r = d.push(stream.subarray(o, o + cut));
        got.push(...r.entries);
        keepAlives += r.keepAlives;
      }
      expect(got, `cut ${cut}`).toEqual(entries);
      expect(keepAlives, `cut ${cut}`).toBe(3);
      expect(d.pending).toBe(0);
    }
  });

  it('holds an incomplete frame back and says how much', () => {
    const d = new FrameStreamDecoder();
    const frame = Buffer.concat(encodeFrames([Buffer.from('abcdef')]));
    expect(d.push(frame.subarray(0, 6)).entries).toEqual([]);
    expect(d.pending).toBe(6);
    expect(d.push(frame.subarray(6)).entries).toEqual([Buffer.from('abcdef')]);
  });

  it('refuses a frame over its limit before waiting for its bytes', () => {
    const d = new FrameStreamDecoder(10);
    expect(() => d.push(Buffer.concat(encodeFrames([Buffer.alloc(11)])).subarray(0, 4))).toThrow(FrameLimitError);
  });
});

describe('timed frames', () => {
  it('round-trip entries with their times, whole or cut anywhere in a stream, keep-alives bare', () => {
    const entries = [Buffer.from('first'), Buffer.alloc(0), Buffer.alloc(300, 7)];
    const times = [0, 1_800_000_000_000, 1_800_000_000_001];
    const body = Buffer.concat(encodeTimedFrames(entries, times));
    expect(decodeTimedFrames(body)).toEqual({ entries, times });
    expect(() => decodeTimedFrames(body.subarray(0, body.length - 1))).toThrow(/cut short/);
    const stream = Buffer.concat([KEEP_ALIVE_FRAME, body, KEEP_ALIVE_FRAME]);
    for (const cut of [1, 5, 13, 20, 200, stream.length - 2]) {
      const d = new FrameStreamDecoder(Infinity, true);
      const a = d.push(stream.subarray(0, cut));
      const b = d.push(stream.subarray(cut));
      expect([...a.entries, ...b.entries]).toEqual(entries);
      expect([...a.times!, ...b.times!]).toEqual(times);
      expect(a.keepAlives + b.keepAlives).toBe(2);
      expect(d.pending).toBe(0);
    }
  });
});

describe('tail stream encoding', () => {
  it('writes frames, timed frames, or one JSON object a line with ids counted from the first', () => {
    const times = entries.map((_, i) => 1_800_000_000_000 + i);
    expect(encodeTailChunk(entries, times, 5, 'frames')).toEqual(Buffer.concat(encodeFrames(entries)));
    const timed = new FrameStreamDecoder(Infinity, true).push(encodeTailChunk(entries, times, 5, 'timed-frames'));
    expect(timed.entries).toEqual(entries);
    expect(timed.times).toEqual(times);
    const lines = encodeTailChunk([Buffer.from('x'), Buffer.from([0, 255])], [7, 8], 5, 'ndjson').toString().split('\n');
    expect(lines.slice(0, 2).map((l) => JSON.parse(l))).toEqual([
      { id: 5, timeMs: 7, data: 'eA==' },
      { id: 6, timeMs: 8, data: 'AP8=' },
    ]);
    expect(lines[2]).toBe('');
  });

  it('keeps alive with a frame of length 0xFFFFFFFF, or an empty JSON line', () => {
    expect(keepAliveChunk('frames').readUInt32BE(0)).toBe(0xffffffff);
    expect(keepAliveChunk('frames').length).toBe(4);
    expect(keepAliveChunk('ndjson').toString()).toBe('{}\n');
  });

  it('streams NDJSON to readers that accept JSON, frames to everyone else', () => {
    expect(tailFormatOf('application/json')).toBe('ndjson');
    expect(tailFormatOf('application/x-ndjson')).toBe('ndjson');
    expect(tailFormatOf('application/vnd.tern.frames')).toBe('frames');
    expect(tailFormatOf('*/*')).toBe('frames');
    expect(tailFormatOf(undefined)).toBe('frames');
  });
});
