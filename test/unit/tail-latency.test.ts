import { describe, expect, it } from 'vitest';
import { STAMP_BYTES, TailProbe } from '../../bench/lib/tail-latency.js';

/** A fake system: holds each appended entry; `deliver` hands the held entries to readers, `fail` makes the next append fail. */
function fakeLog() {
  const held: Buffer[] = [];
  let failNext = false;
  return {
    held,
    fail: () => (failNext = true),
    send: async (entry: Buffer) => {
      if (failNext) {
        failNext = false;
        throw new Error('refused');
      }
      held.push(entry);
    },
  };
}

describe('TailProbe (append-to-reader latency of the tail benchmarks)', () => {
  it('counts an acked entry a reader has not delivered as missing, and a failed append as neither acked nor missing', async () => {
    const log = fakeLog();
    const probe = new TailProbe(64);
    const a = probe.reader('reader@leader');
    const b = probe.reader('reader@follower');
    for (let i = 0; i < 5; i++) await probe.append(log.send);
    log.fail();
    await expect(probe.append(log.send)).rejects.toThrow('refused');
    expect(probe.sent).toBe(6);
    expect(probe.acked).toBe(5);
    for (const e of log.held) a(e);
    for (const e of log.held.slice(0, 3)) b(e);
    expect(probe.missing('reader@leader')).toBe(0);
    expect(probe.missing('reader@follower')).toBe(2);
    await probe.drain(100);
    expect(probe.missing('reader@follower')).toBe(2);
    const f = probe.figures();
    expect(f.ack.totalCount).toBe(5);
    expect(f.readers.get('reader@leader')!.totalCount).toBe(5);
    expect(f.readers.get('reader@follower')!.totalCount).toBe(3);
  });

  it('ignores entries it did not stamp (another run, another writer) and a second delivery of the same entry', async () => {
    const log = fakeLog();
    const probe = new TailProbe(STAMP_BYTES);
    const other = new TailProbe(STAMP_BYTES);
    const r = probe.reader('r');
    other.reader('r');
    await other.append(log.send);
    await probe.append(log.send);
    for (const e of log.held) r(e);
    r(log.held[1]!);
    r(Buffer.alloc(3));
    expect(probe.missing('r')).toBe(0);
    expect(probe.figures().readers.get('r')!.totalCount).toBe(1);
    expect(() => new TailProbe(STAMP_BYTES - 1)).toThrow();
  });

  it('measures only the entries sent within the window', async () => {
    const log = fakeLog();
    const probe = new TailProbe(16);
    const r = probe.reader('r');
    await probe.append(log.send);
    await new Promise((res) => setTimeout(res, 5));
    const from = performance.now();
    await probe.append(log.send);
    await probe.append(log.send);
    for (const e of log.held) r(e);
    const f = probe.figures(from);
    expect(f.ack.totalCount).toBe(2);
    expect(f.readers.get('r')!.totalCount).toBe(2);
    expect(probe.figures(-Infinity, from).readers.get('r')!.totalCount).toBe(1);
  });
});
