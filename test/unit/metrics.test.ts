import { describe, expect, it } from 'vitest';
import { ReplicaMetrics, type LogGauges, type MetricsSource } from '../../src/replica/metrics.js';
import type { ReaderLag } from '../../src/replica/retention.js';

function source(logs: LogGauges[], readers: ReaderLag[] = []): MetricsSource {
  return {
    logs: () => logs,
    readerLags: () => readers,
    bufferBytes: () => 3000,
    bufferLimitBytes: () => 4096,
    bufferEntries: () => 30,
    tailWaiters: () => 2,
    hasLog: (name) => logs.some((l) => l.log === name),
    logCount: () => logs.length,
    quiescedLogs: () => 0,
    leaseUp: () => true,
    coordinator: () => false,
    peersUp: () => ({ r2: true, r3: false }),
  };
}

const gauges = (log: string, committedId: number, leader: boolean): LogGauges => ({ log, committedId, flushedId: committedId - 5, flushLagEntries: 5, flushLagBytes: 500, epoch: 3, leader, producers: leader ? 2 : 0 });

/** The value of one series in the exposition text, or undefined when absent. */
function valueOf(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('replica metrics', () => {
  it('labels per-log gauges with the log and every series with the replica', async () => {
    const m = new ReplicaMetrics('r1', { perLog: true }, source([gauges('a', 10, true), gauges('b', 20, false)]));
    const { body, contentType } = await m.render();
    expect(contentType).toMatch(/^text\/plain/);
    expect(valueOf(body, 'tern_committed_id{log="a",replica="r1"}')).toBe(10);
    expect(valueOf(body, 'tern_log_leader{log="b",replica="r1"}')).toBe(0);
    expect(valueOf(body, 'tern_buffer_bytes{replica="r1"}')).toBe(3000);
    expect(valueOf(body, 'tern_buffer_limit_bytes{replica="r1"}')).toBe(4096);
    expect(valueOf(body, 'tern_peer_up{peer="r3",replica="r1"}')).toBe(0);
    expect(body).toContain('nodejs_eventloop_lag_seconds');
  });

  it('folds every log into log="_all" when per-log labels are off: sums of counts, highest of ids', async () => {
    const m = new ReplicaMetrics('r1', { perLog: false }, source([gauges('a', 10, true), gauges('b', 20, true)]));
    m.appended('a', 'ok', 2, 100);
    m.appended('b', 'NO_QUORUM', 1, 10);
    const { body } = await m.render();
    expect(valueOf(body, 'tern_log_leader{log="_all",replica="r1"}')).toBe(2);
    expect(valueOf(body, 'tern_flush_lag_bytes{log="_all",replica="r1"}')).toBe(1000);
    expect(valueOf(body, 'tern_committed_id{log="_all",replica="r1"}')).toBe(20);
    expect(valueOf(body, 'tern_appends_total{log="_all",outcome="ok",replica="r1"}')).toBe(1);
    expect(valueOf(body, 'tern_append_entries_total{log="_all",outcome="ok",replica="r1"}')).toBe(2);
    expect(valueOf(body, 'tern_appends_total{log="_all",outcome="NO_QUORUM",replica="r1"}')).toBe(1);
    expect(body).not.toContain('log="a"');
  });

  it('labels logs one by one while the replica holds at most perLogMax of them, and folds them beyond (--metrics-per-log auto)', async () => {
    const logs = [gauges('a', 10, true), gauges('b', 20, true)];
    const m = new ReplicaMetrics('r1', { perLog: true, perLogMax: 2 }, source(logs));
    m.appended('a', 'ok', 1, 10);
    let body = (await m.render()).body;
    expect(valueOf(body, 'tern_committed_id{log="a",replica="r1"}')).toBe(10);
    expect(valueOf(body, 'tern_appends_total{log="a",outcome="ok",replica="r1"}')).toBe(1);
    logs.push(gauges('c', 30, false));
    m.appended('a', 'ok', 1, 10);
    body = (await m.render()).body;
    expect(valueOf(body, 'tern_committed_id{log="_all",replica="r1"}')).toBe(30);
    expect(valueOf(body, 'tern_log_leader{log="_all",replica="r1"}')).toBe(2);
    expect(body).not.toContain('tern_committed_id{log="a"');
    expect(valueOf(body, 'tern_appends_total{log="_all",outcome="ok",replica="r1"}')).toBe(1);
  });

  it("exports each named reader's lag by log and reader, leaving out a lag in seconds that is unknown, and folds them with the logs into the worst", async () => {
    const readers: ReaderLag[] = [
      { log: 'a', reader: 'billing', lagEntries: 40, lagSeconds: 12.5 },
      { log: 'a', reader: 'audit', lagEntries: 0, lagSeconds: 0 },
      { log: 'b', reader: 'old', lagEntries: 7, lagSeconds: undefined },
    ];
    const logs = [gauges('a', 10, true), gauges('b', 20, true)];
    let body = (await new ReplicaMetrics('r1', { perLog: true }, source(logs, readers)).render()).body;
    expect(valueOf(body, 'tern_reader_lag_entries{log="a",reader="billing",replica="r1"}')).toBe(40);
    expect(valueOf(body, 'tern_reader_lag_seconds{log="a",reader="billing",replica="r1"}')).toBe(12.5);
    expect(valueOf(body, 'tern_reader_lag_seconds{log="a",reader="audit",replica="r1"}')).toBe(0);
    expect(valueOf(body, 'tern_reader_lag_entries{log="b",reader="old",replica="r1"}')).toBe(7);
    expect(valueOf(body, 'tern_reader_lag_seconds{log="b",reader="old",replica="r1"}')).toBeUndefined();
    body = (await new ReplicaMetrics('r1', { perLog: false }, source(logs, readers)).render()).body;
    expect(valueOf(body, 'tern_reader_lag_entries{log="_all",reader="_all",replica="r1"}')).toBe(40);
    expect(valueOf(body, 'tern_reader_lag_seconds{log="_all",reader="_all",replica="r1"}')).toBe(12.5);
    expect(body).not.toContain('reader="billing"');
  });

  it('counts failed appends to logs that do not exist under one label, whatever their names', async () => {
    const m = new ReplicaMetrics('r1', { perLog: true }, source([gauges('a', 10, true)]));
    m.appended('a', 'NO_QUORUM', 1, 10);
    for (let i = 0; i < 50; i++) m.appended(`invented-${i}`, i % 2 ? 'LOG_NOT_FOUND' : 'UNSUPPORTED_MEDIA_TYPE', 1, 10);
    const { body } = await m.render();
    expect(valueOf(body, 'tern_appends_total{log="a",outcome="NO_QUORUM",replica="r1"}')).toBe(1);
    expect(valueOf(body, 'tern_appends_total{log="_unknown",outcome="LOG_NOT_FOUND",replica="r1"}')).toBe(25);
    expect(valueOf(body, 'tern_appends_total{log="_unknown",outcome="UNSUPPORTED_MEDIA_TYPE",replica="r1"}')).toBe(25);
    expect(body).not.toContain('invented-');
  });

  it('shows zero error counters before any error, and counts them after', async () => {
    const m = new ReplicaMetrics('r2', { perLog: true }, source([]));
    expect(valueOf((await m.render()).body, 'tern_object_store_errors_total{operation="put",replica="r2"}')).toBe(0);
    m.storeFailed('put');
    m.etcdFailed('lease');
    m.acknowledged(0.003);
    const { body } = await m.render();
    expect(valueOf(body, 'tern_object_store_errors_total{operation="put",replica="r2"}')).toBe(1);
    expect(valueOf(body, 'tern_etcd_errors_total{operation="lease",replica="r2"}')).toBe(1);
    expect(valueOf(body, 'tern_append_ack_seconds_count{replica="r2"}')).toBe(1);
    expect(valueOf(body, 'tern_append_ack_seconds_bucket{le="0.005",replica="r2"}')).toBe(1);
    expect(valueOf(body, 'tern_append_ack_seconds_bucket{le="0.002",replica="r2"}')).toBe(0);
  });
});
