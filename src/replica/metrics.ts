/**
 * The replica's Prometheus metrics (prom-client), served at GET /metrics on
 * the client port. Names follow Prometheus conventions: `tern_` prefix, base
 * units, `_total` counters, `_seconds` histograms, `_bytes`. Every series
 * carries `replica` (the replica id), so a dashboard can tell replicas apart
 * whatever the scrape labels.
 *
 * Label cardinality (README, Metrics): `log` labels grow with the number of
 * logs (7 gauges per log on every replica, plus 3 counters per log and append
 * outcome seen on the replica that processed it); `--metrics-per-log false` folds every log into
 * log="_all"; failed appends to logs that do not exist count under
 * log="_unknown", whatever name they gave. `peer` has two values, `outcome` the error codes, `operation`
 * and `source` a handful each. Histograms carry no log label.
 *
 * Counters and histograms are bumped where things happen; gauges of state
 * (ids, epochs, buffer sizes, waiters) are read from the replica at scrape
 * time through `MetricsSource`, so the hot path pays nothing for them.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ReaderLag } from './retention.js';

export interface LogGauges {
  log: string;
  committedId: number;
  flushedId: number;
  flushLagEntries: number;
  flushLagBytes: number;
  epoch: number;
  leader: boolean;
  /** Idempotent producers the leader remembers for the log (0 on a follower). */
  producers: number;
}

/** What the replica reports at scrape time. */
export interface MetricsSource {
  logs(): LogGauges[];
  bufferBytes(): number;
  bufferLimitBytes(): number;
  bufferEntries(): number;
  tailWaiters(): number;
  /** The named readers this replica exports (those of the logs it leads, and of quiesced logs when it is the coordinator), with their lag. */
  readerLags(): ReaderLag[];
  /** Whether a log of that name exists (as this replica's view of etcd has it). */
  hasLog(name: string): boolean;
  /** Logs in the cluster (per-log labels stop above --metrics-per-log-max of them). */
  logCount(): number;
  /** Logs etcd shows quiesced. */
  quiescedLogs(): number;
  leaseUp(): boolean;
  coordinator(): boolean;
  /** Per peer this replica has exchanged replication messages with: whether one succeeded within the ack timeout. */
  peersUp(): Record<string, boolean>;
}

export const ALL_LOGS = '_all';
/** The log label of failed appends to logs that do not exist: one series for every such name, which a client picks at will. */
export const UNKNOWN_LOG = '_unknown';

/** Latency buckets from 0.5 ms to 10 s: acks are milliseconds, recoveries and flushes seconds. */
const SECONDS_BUCKETS = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10];

export class ReplicaMetrics {
  readonly registry = new Registry();
  private readonly logLabel: (log: string) => string;
  private readonly source: MetricsSource;
  private readonly appendChildren = new Map<string, { appends: Counter.Internal; entries: Counter.Internal; bytes: Counter.Internal }>();

  private readonly appends = this.counter('tern_appends_total', 'Client appends answered by the replica the client sent them to, by outcome (ok or the error code).', ['log', 'outcome']);
  private readonly appendBytes = this.counter('tern_append_bytes_total', 'Entry bytes of client appends, by outcome.', ['log', 'outcome']);
  private readonly appendEntries = this.counter('tern_append_entries_total', 'Entries of client appends, by outcome (a batch counts each entry).', ['log', 'outcome']);
  private readonly ackSeconds = this.histogram('tern_append_ack_seconds', 'Client-visible append latency: request received to successful answer, forwarding included.');
  private readonly forwardedAnswers = this.counter('tern_forwarded_appends_total', 'Appends this replica forwarded to their log\'s leader and answered 200, by how: held (the leader gave the ids at once and this replica committed them itself as they arrived) or commit (the leader answered once a quorum held them).', ['answer']);
  private readonly quorumRound = this.histogram('tern_quorum_round_seconds', 'Leader side: an append taken by the leader until a quorum holds it.');
  private readonly replicationMessages = this.counter('tern_replication_messages_total', 'Replication messages sent to a peer, by result (ok, fenced, full: the peer held its memory bound and took nothing, error).', ['peer', 'result']);
  private readonly replicationBytes = this.counter('tern_replication_bytes_total', 'Entry bytes sent to a peer in replication messages.', ['peer']);
  private readonly replicationRtt = this.histogram('tern_replication_round_trip_seconds', 'A replication message sent until its reply.', ['peer']);
  private readonly leadership = this.counter('tern_leadership_changes_total', 'Leaderships taken (acquired) and given up (lost) by this replica.', ['change']);
  private readonly recoveries = this.counter('tern_recoveries_total', 'Recoveries (takeovers) run by this replica, by outcome (ok, failed).', ['outcome']);
  private readonly recoverySeconds = this.histogram('tern_recovery_duration_seconds', 'A takeover from the epoch raise to taking appends.');
  private readonly reads = this.counter('tern_reads_total', 'Read requests served, by where the first entry came from (memory, object_store, none).', ['source']);
  private readonly readBytes = this.counter('tern_read_bytes_total', 'Entry bytes served to readers, by source.', ['source']);
  private readonly flushSeconds = this.histogram('tern_flush_duration_seconds', 'One flushed object: upload and manifest record.');
  private readonly flushedBytes = this.counter('tern_flushed_bytes_total', 'Entry bytes flushed to object storage and recorded in the manifest.');
  private readonly flushedObjects = this.counter('tern_flushed_objects_total', 'Objects flushed and recorded in the manifest.');
  private readonly storeErrors = this.counter('tern_object_store_errors_total', 'Failed object store requests, by operation (put, get, list, delete).', ['operation']);
  private readonly deletedLogSweeps = this.counter('tern_deleted_log_sweeps_total', "Sweeps of a deleted log's objects done by the replica that deleted it: at the delete (at_delete), and the late one for an upload that was in flight (late).", ['sweep']);
  private readonly etcdErrors = this.counter('tern_etcd_errors_total', 'etcd requests that failed, by operation (request: one a client request needed; lease: keep-alive deadline passed; record: a manifest or segment write retried).', ['operation']);
  private readonly authRefusals = this.counter('tern_auth_refusals_total', 'Client requests refused by authentication (UNAUTHENTICATED) or authorization (FORBIDDEN).', ['code']);
  private readonly authReloads = this.counter('tern_auth_reloads_total', 'Re-reads of the tokens file, by result (ok, failed: the old tokens stay).', ['result']);
  private readonly quiescence = this.counter('tern_quiescence_total', 'Logs this replica sealed because they went idle (quiesced), and quiesced logs it reopened for an append (reopened).', ['event']);
  private readonly reopenSeconds = this.histogram('tern_reopen_duration_seconds', 'Reopening a quiesced log for an append: the etcd transaction and taking the leadership.');
  private readonly producerDuplicates = this.counter('tern_producer_duplicates_total', 'Idempotent producer appends answered as duplicates (with the original ids) by the leader.', ['log']);
  private readonly tailStreams = new Gauge({ name: 'tern_tail_streams', help: 'Streaming tails (GET entries with follow=true) open on this replica.', registers: [this.registry] });
  private readonly authOpen = new Gauge({ name: 'tern_auth_open', help: '1 when no tokens file is configured: the client API is open to anyone who reaches it.', registers: [this.registry] });
  private readonly authTokens = new Gauge({ name: 'tern_auth_tokens', help: 'Tokens loaded from the tokens file (0 when open).', registers: [this.registry] });

  /**
   * `perLog`: label per-log series with the log's name; with `perLogMax`, only
   * while the replica holds at most that many logs (--metrics-per-log auto).
   */
  constructor(replica: string, options: { perLog: boolean; perLogMax?: number }, source: MetricsSource) {
    this.registry.setDefaultLabels({ replica });
    const max = options.perLogMax;
    this.logLabel = !options.perLog ? () => ALL_LOGS : max === undefined ? (log) => log : (log) => (source.logCount() <= max ? log : ALL_LOGS);
    this.source = source;
    collectDefaultMetrics({ register: this.registry });
    this.stateGauges(source);
    // Series of bounded label sets exist from the start, so rate() and alerts see a zero, not nothing.
    for (const operation of ['put', 'get', 'list', 'delete']) this.storeErrors.inc({ operation }, 0);
    for (const operation of ['request', 'lease', 'record'] as const) this.etcdErrors.inc({ operation }, 0);
    for (const change of ['acquired', 'lost']) this.leadership.inc({ change }, 0);
    for (const outcome of ['ok', 'failed']) this.recoveries.inc({ outcome }, 0);
    for (const source of ['memory', 'object_store', 'none']) this.reads.inc({ source }, 0);
    for (const sweep of ['at_delete', 'late']) this.deletedLogSweeps.inc({ sweep }, 0);
    for (const code of ['UNAUTHENTICATED', 'FORBIDDEN']) this.authRefusals.inc({ code }, 0);
    for (const result of ['ok', 'failed']) this.authReloads.inc({ result }, 0);
    for (const event of ['quiesced', 'reopened']) this.quiescence.inc({ event }, 0);
    for (const answer of ['held', 'commit']) this.forwardedAnswers.inc({ answer }, 0);
  }

  /**
   * An append processed here (by the leader, or refused here before it got
   * anywhere), counted once however it was routed: a forwarding replica counts
   * only the client-visible latency (`acknowledged`).
   */
  appended(log: string, outcome: string, entries: number, bytes: number): void {
    const series = this.appendSeries(outcome === 'ok' || this.source.hasLog(log) ? this.logLabel(log) : UNKNOWN_LOG, outcome);
    series.appends.inc();
    series.entries.inc(entries);
    series.bytes.inc(bytes);
  }

  /** The append counters of one (log, outcome), looked up once: this runs for every append. */
  private appendSeries(label: string, outcome: string) {
    const key = `${label}\u0000${outcome}`;
    let series = this.appendChildren.get(key);
    if (!series) {
      const labels = { log: label, outcome };
      series = { appends: this.appends.labels(labels), entries: this.appendEntries.labels(labels), bytes: this.appendBytes.labels(labels) };
      this.appendChildren.set(key, series);
    }
    return series;
  }

  /** A successful append answered to the client that sent it here, after `seconds`. */
  acknowledged(seconds: number): void {
    this.ackSeconds.observe(seconds);
  }

  /** The two series of forwarded answers, looked up once: one is counted for every forwarded append. */
  private readonly forwardedSeries = { held: this.forwardedAnswers.labels({ answer: 'held' }), commit: this.forwardedAnswers.labels({ answer: 'commit' }) };

  /** A forwarded append answered 200: held, or at the leader's commit. */
  forwardedAnswered(answer: 'held' | 'commit'): void {
    this.forwardedSeries[answer].inc();
  }

  /** A producer's retry answered with the ids of the batch it repeats. */
  producerDuplicate(log: string): void {
    this.producerDuplicates.inc({ log: this.logLabel(log) });
  }

  quorumReached(seconds: number): void {
    this.quorumRound.observe(seconds);
  }

  replicationSent(peer: string, bytes: number): void {
    this.replicationBytes.inc({ peer }, bytes);
  }

  replicationAnswered(peer: string, result: 'ok' | 'fenced' | 'full' | 'error', seconds?: number): void {
    this.replicationMessages.inc({ peer, result });
    if (seconds !== undefined) this.replicationRtt.observe({ peer }, seconds);
  }

  /** This replica sealed an idle log it led. */
  quiesced(): void {
    this.quiescence.inc({ event: 'quiesced' });
  }

  /** This replica reopened a quiesced log for an append, in `seconds`. */
  reopened(seconds: number): void {
    this.quiescence.inc({ event: 'reopened' });
    this.reopenSeconds.observe(seconds);
  }

  leadershipChanged(change: 'acquired' | 'lost'): void {
    this.leadership.inc({ change });
  }

  recovered(outcome: 'ok' | 'failed', seconds: number): void {
    this.recoveries.inc({ outcome });
    if (outcome === 'ok') this.recoverySeconds.observe(seconds);
  }

  served(source: 'memory' | 'object_store' | 'none', bytes: number): void {
    this.reads.inc({ source });
    this.readBytes.inc({ source }, bytes);
  }

  flushed(bytes: number, seconds: number): void {
    this.flushedObjects.inc();
    this.flushedBytes.inc(bytes);
    this.flushSeconds.observe(seconds);
  }

  storeFailed(operation: string): void {
    this.storeErrors.inc({ operation });
  }

  deletedLogSwept(sweep: 'at_delete' | 'late'): void {
    this.deletedLogSweeps.inc({ sweep });
  }

  etcdFailed(operation: 'request' | 'lease' | 'record'): void {
    this.etcdErrors.inc({ operation });
  }

  /** The tokens in force: `open` when the replica runs without a tokens file. */
  authState(state: { open: true } | { open: false; tokens: number }): void {
    this.authOpen.set(state.open ? 1 : 0);
    this.authTokens.set(state.open ? 0 : state.tokens);
  }

  /** A streaming tail opened (+1) or ended (-1). */
  tailStreamsChanged(delta: 1 | -1): void {
    this.tailStreams.inc(delta);
  }

  authReloaded(result: 'ok' | 'failed'): void {
    this.authReloads.inc({ result });
  }

  authRefused(code: 'UNAUTHENTICATED' | 'FORBIDDEN'): void {
    this.authRefusals.inc({ code });
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  private counter<L extends string>(name: string, help: string, labelNames: readonly L[] = []): Counter<L> {
    return new Counter({ name, help, labelNames, registers: [this.registry] });
  }

  private histogram<L extends string>(name: string, help: string, labelNames: readonly L[] = []): Histogram<L> {
    return new Histogram({ name, help, labelNames, buckets: SECONDS_BUCKETS, registers: [this.registry] });
  }

  /** Gauges read from the replica at scrape time. */
  private stateGauges(source: MetricsSource): void {
    const logLabelOf = this.logLabel;
    const perLog: [name: string, help: string, value: (l: LogGauges) => number][] = [
      ['tern_committed_id', 'Highest committed id of the log this replica knows (-1: none).', (l) => l.committedId],
      ['tern_flushed_id', 'Highest id of the log recorded in object storage (-1: none).', (l) => l.flushedId],
      ['tern_flush_lag_entries', 'Committed entries of the log not yet in object storage.', (l) => l.flushLagEntries],
      ['tern_flush_lag_bytes', 'Bytes of the log this replica holds in memory, not yet released after a flush.', (l) => l.flushLagBytes],
      ['tern_log_epoch', 'Epoch of the log as this replica knows it.', (l) => l.epoch],
      ['tern_log_leader', '1 when this replica leads the log.', (l) => (l.leader ? 1 : 0)],
      ['tern_producers', 'Idempotent producers the leader of the log remembers (0 on followers).', (l) => l.producers],
    ];
    for (const [name, help, value] of perLog) {
      const folded = name === 'tern_log_epoch' || name === 'tern_committed_id' || name === 'tern_flushed_id' ? Math.max : (a: number, b: number) => a + b;
      new Gauge({
        name,
        help,
        labelNames: ['log'],
        registers: [this.registry],
        collect() {
          this.reset();
          const byLabel = new Map<string, number>();
          for (const l of source.logs()) {
            const label = logLabelOf(l.log);
            const prior = byLabel.get(label);
            byLabel.set(label, prior === undefined ? value(l) : folded(prior, value(l)));
          }
          for (const [log, v] of byLabel) this.set({ log }, v);
        },
      });
    }
    const scalar: [name: string, help: string, value: () => number][] = [
      ['tern_buffer_bytes', 'Entry bytes held in memory, all logs together (bounded by --max-buffer-bytes).', () => source.bufferBytes()],
      ['tern_buffer_limit_bytes', 'Configured bound of tern_buffer_bytes (--max-buffer-bytes): appends beyond it get 503 BUFFER_FULL.', () => source.bufferLimitBytes()],
      ['tern_buffer_entries', 'Entries held in memory, all logs together.', () => source.bufferEntries()],
      ['tern_tail_waiters', 'Tail reads (waitMs) waiting for an entry.', () => source.tailWaiters()],
      ['tern_etcd_lease_up', '1 while this replica holds a live etcd lease (registered).', () => (source.leaseUp() ? 1 : 0)],
      ['tern_coordinator', '1 when this replica is the coordinator.', () => (source.coordinator() ? 1 : 0)],
      ['tern_logs', 'Logs in the cluster, as this replica\'s view of etcd has them.', () => source.logCount()],
      ['tern_logs_quiesced', 'Logs of the cluster that are quiesced (idle, sealed in etcd, no leader until an append).', () => source.quiescedLogs()],
    ];
    for (const [name, help, value] of scalar) {
      new Gauge({ name, help, registers: [this.registry], collect() { this.set(value()); } });
    }
    const readerGauges: [name: string, help: string, value: (r: ReaderLag) => number | undefined][] = [
      ['tern_reader_lag_entries', "Committed entries a named reader has not read yet (0 when caught up); exported by the log's leader, or the coordinator while the log is quiesced.", (r) => r.lagEntries],
      ['tern_reader_lag_seconds', "Age of the next entry a named reader will read (now minus its time; 0 when caught up); exported by the log's leader, or the coordinator while the log is quiesced; absent while that entry's time is unknown.", (r) => r.lagSeconds],
    ];
    for (const [name, help, value] of readerGauges) {
      new Gauge({
        name,
        help,
        labelNames: ['log', 'reader'],
        registers: [this.registry],
        collect() {
          this.reset();
          // Folded with the logs (log="_all"), readers fold into reader="_all" with the worst lag.
          const byLabels = new Map<string, { log: string; reader: string; v: number }>();
          for (const r of source.readerLags()) {
            const v = value(r);
            if (v === undefined) continue;
            const log = logLabelOf(r.log);
            const reader = log === ALL_LOGS ? ALL_LOGS : r.reader;
            const key = `${log}\u0000${reader}`;
            const prior = byLabels.get(key);
            byLabels.set(key, { log, reader, v: prior === undefined ? v : Math.max(prior.v, v) });
          }
          for (const { log, reader, v } of byLabels.values()) this.set({ log, reader }, v);
        },
      });
    }
    new Gauge({
      name: 'tern_peer_up',
      help: '1 when a replication exchange with the peer (either direction) succeeded within the ack timeout; only peers this replica replicates with.',
      labelNames: ['peer'],
      registers: [this.registry],
      collect() {
        for (const [peer, up] of Object.entries(source.peersUp())) this.set({ peer }, up ? 1 : 0);
      },
    });
  }
}
