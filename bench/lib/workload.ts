/**
 * The workload of bench/compare.ts: the scenarios, and the closed-loop and
 * open-loop drivers that run one scenario against any `Target` and record ack
 * latency in an HDR histogram (microseconds).
 *
 * Closed loop: P producers, each sends an append, awaits its ack, sends the
 * next. Only appends completed inside the measured window count; latency is
 * request sent -> ack received. After an error a producer pauses 20 ms.
 *
 * Open loop: appends are due at a fixed rate (request i at t0 + i/rate),
 * whatever the answers do; latency is measured from each request's intended
 * send time (not from when the driver got round to sending it), so a stall
 * is charged to every request it delayed (no coordinated omission). At most
 * MAX_OUTSTANDING requests are in flight: a request due while that many are
 * outstanding is not sent and counts as an error ("not sent"). Requests
 * whose intended time falls in the measured window count, their answers are
 * awaited after it.
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { build as buildHistogram, type Histogram } from 'hdr-histogram-js';
import { cpuFigures, cpuSnapshot, type CpuFigures, type CpuSnapshot } from './proc.js';
import type { TailProbe } from './tail-latency.js';
import { AppendError, type OpenTarget } from './targets.js';

export interface Scenario {
  id: string;
  title: string;
  kind: 'closed' | 'open';
  entryBytes: number;
  /** Closed loop: concurrent producers. Open loop: HTTP connections per pool (requests beyond wait in the pool, which the latency includes). */
  producers: number;
  /** Entries per append (1: a single-entry append; more: one batch). */
  batch: number;
  /** Open loop: appends due per second. */
  rate?: number;
  /**
   * A tail scenario: each entry is stamped by a TailProbe (bench/lib/tail-latency.ts) and
   * readers on the system time its arrival (append-to-reader latency) beside its ack.
   */
  tail?: boolean;
}

export const DEFAULT_RATE = 5000;
/** The light load of the tail scenarios: appends/s, open loop. */
export const TAIL_LIGHT_RATE = 200;
/** Open loop of the light tail scenario: HTTP connections, enough that an append at that rate never queues behind another. */
const TAIL_LIGHT_CONNECTIONS = 8;
/** Open loop: requests in flight beyond which a due request is not sent (counted as an error). */
export const MAX_OUTSTANDING = 1000;
/** Open loop: HTTP connections per pool. */
const OPEN_LOOP_CONNECTIONS = 64;
const ERROR_PAUSE_MS = 20;

export function scenarios(rate: number): Scenario[] {
  return [
    { id: '1k-64p', title: 'closed loop, 1 KiB entries, 64 producers', kind: 'closed', entryBytes: 1024, producers: 64, batch: 1 },
    { id: '64k-16p', title: 'closed loop, 64 KiB entries, 16 producers', kind: 'closed', entryBytes: 65536, producers: 16, batch: 1 },
    { id: '1k-1p', title: 'closed loop, 1 KiB entries, 1 producer (latency)', kind: 'closed', entryBytes: 1024, producers: 1, batch: 1 },
    { id: 'open-1k', title: `open loop, 1 KiB entries at ${rate}/s (latency from intended send time)`, kind: 'open', entryBytes: 1024, producers: OPEN_LOOP_CONNECTIONS, batch: 1, rate },
    { id: 'batch-100x1k', title: 'closed loop, batches of 100 x 1 KiB entries, 8 producers', kind: 'closed', entryBytes: 1024, producers: 8, batch: 100 },
  ];
}

/** The tail scenarios (opt-in in bench/compare.ts): the same loads, with readers following the log. */
export function tailScenarios(): Scenario[] {
  return [
    { id: 'tail-light', title: `open loop, 1 KiB entries at ${TAIL_LIGHT_RATE}/s, append-to-reader latency`, kind: 'open', entryBytes: 1024, producers: TAIL_LIGHT_CONNECTIONS, batch: 1, rate: TAIL_LIGHT_RATE, tail: true },
    { id: 'tail-1k-64p', title: 'closed loop, 1 KiB entries, 64 producers, append-to-reader latency', kind: 'closed', entryBytes: 1024, producers: 64, batch: 1, tail: true },
  ];
}

export function newHistogram(): Histogram {
  return buildHistogram({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: 3 });
}

export interface RunTiming {
  warmupS: number;
  durationS: number;
}

export interface RunOutcome {
  /** Acked appends (batches count once) in the measured window. */
  acked: number;
  histogram: Histogram;
  errors: number;
  errorsByCode: Record<string, number>;
  warmupErrors: number;
  /** Entries acked over the whole run (warm-up, window and drain), for the system's own count check. */
  ackedEntriesTotal: number;
  /** Over the measured window; undefined when it could not be sampled. */
  cpu: CpuFigures | undefined;
  /** The measured window, performance.now() times (a TailProbe's figures are taken over it). */
  window: { start: number; end: number };
}

/**
 * Runs one scenario against an opened target: warm-up, then the measured window. With a
 * `probe` (tail scenarios) every append is a fresh entry stamped by it, so that readers know it.
 */
export async function runScenario(
  target: OpenTarget,
  sc: Scenario,
  timing: RunTiming,
  pids: Record<string, number | undefined>,
  signal: AbortSignal,
  probe?: TailProbe,
): Promise<RunOutcome> {
  const payload = randomBytes(sc.entryBytes);
  const entries = Array.from({ length: sc.batch }, () => payload);
  const appendStamped = (entry: Buffer) => target.append(entry);
  const send: () => Promise<void> = probe
    ? () => probe.append(appendStamped)
    : sc.batch > 1
      ? () => target.appendBatch(entries)
      : () => target.append(payload);

  const histogram = newHistogram();
  const t0 = performance.now();
  const measureStart = t0 + timing.warmupS * 1000;
  const measureEnd = measureStart + timing.durationS * 1000;
  const window = { start: measureStart, end: measureEnd };
  const out: RunOutcome = { acked: 0, histogram, errors: 0, errorsByCode: {}, warmupErrors: 0, ackedEntriesTotal: 0, cpu: undefined, window };

  let before: CpuSnapshot | undefined;
  let after: CpuSnapshot | undefined;
  const startTimer = setTimeout(() => (before = cpuSnapshot(pids)), Math.max(0, measureStart - performance.now()));
  const endTimer = setTimeout(() => (after = cpuSnapshot(pids)), Math.max(0, measureEnd - performance.now()));
  // On Ctrl-C, break the appends in flight (their outcome is not counted).
  const onAbort = () => void target.destroy();
  signal.addEventListener('abort', onAbort, { once: true });

  const error = (key: string, counted: boolean, warmup: boolean) => {
    if (counted) {
      out.errors++;
      out.errorsByCode[key] = (out.errorsByCode[key] ?? 0) + 1;
    } else if (warmup) {
      out.warmupErrors++;
    }
  };
  const keyOf = (err: unknown) => (err instanceof AppendError ? err.key : `driver ${(err as Error)?.message ?? String(err)}`);

  try {
    if (sc.kind === 'closed') {
      const producer = async (): Promise<void> => {
        while (!signal.aborted && performance.now() < measureEnd) {
          const sent = performance.now();
          let key: string | undefined;
          try {
            await send();
          } catch (err) {
            key = keyOf(err);
          }
          const done = performance.now();
          if (signal.aborted) return;
          const inWindow = done >= measureStart && done < measureEnd;
          if (key === undefined) {
            out.ackedEntriesTotal += sc.batch;
            if (inWindow) {
              out.acked++;
              histogram.recordValue(Math.max(1, Math.round((done - sent) * 1000)));
            }
          } else {
            error(key, inWindow, done < measureStart);
            await sleep(ERROR_PAUSE_MS);
          }
        }
      };
      await Promise.all(Array.from({ length: sc.producers }, () => producer()));
    } else {
      await openLoop(sc.rate ?? DEFAULT_RATE, t0, measureStart, measureEnd, send, signal, (intended, done, key) => {
        const inWindow = intended >= measureStart && intended < measureEnd;
        if (key === undefined) {
          out.ackedEntriesTotal += sc.batch;
          if (inWindow) {
            out.acked++;
            histogram.recordValue(Math.max(1, Math.round((done - intended) * 1000)));
          }
        } else {
          error(key, inWindow, intended < measureStart);
        }
      }, keyOf);
    }
  } finally {
    signal.removeEventListener('abort', onAbort);
    clearTimeout(startTimer);
    clearTimeout(endTimer);
  }
  // Should the last answers have come in the same event-loop turn that crossed measureEnd,
  // the end timer was cleared first and this late snapshot stands in for it.
  after ??= cpuSnapshot(pids);
  out.cpu = before && before !== after ? cpuFigures(before, after) : undefined;
  return out;
}

/**
 * Sends requests at `rate`/s from t0 until `end` (by intended time) and resolves once every
 * request sent has been answered. `record(intended, done, errorKey?)` is called for each
 * request, also for those not sent because MAX_OUTSTANDING were in flight.
 */
function openLoop(
  rate: number,
  t0: number,
  _measureStart: number,
  end: number,
  send: () => Promise<void>,
  signal: AbortSignal,
  record: (intended: number, done: number, key?: string) => void,
  keyOf: (err: unknown) => string,
): Promise<void> {
  const intervalMs = 1000 / rate;
  const notSent = `not sent (${MAX_OUTSTANDING} outstanding)`;
  return new Promise((resolve) => {
    let i = 0;
    let outstanding = 0;
    let scheduling = true;
    const maybeDone = () => {
      if (!scheduling && outstanding === 0) resolve();
    };
    const tick = () => {
      const now = performance.now();
      for (;;) {
        const intended = t0 + i * intervalMs;
        if (intended > now || intended >= end || signal.aborted) break;
        i++;
        if (outstanding >= MAX_OUTSTANDING) {
          record(intended, now, notSent);
          continue;
        }
        outstanding++;
        send().then(
          () => record(intended, performance.now()),
          (err) => record(intended, performance.now(), keyOf(err)),
        ).finally(() => {
          outstanding--;
          maybeDone();
        });
      }
      const nextAt = t0 + i * intervalMs;
      if (signal.aborted || nextAt >= end) {
        scheduling = false;
        maybeDone();
        return;
      }
      // Timers fire no more often than every ~1 ms: requests due meanwhile go out together, each
      // still timed from its own intended send time.
      setTimeout(tick, Math.max(0, nextAt - performance.now()));
    };
    tick();
  });
}
