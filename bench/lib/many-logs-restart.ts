/**
 * The whole-cluster crash of the many-logs benchmark (issue 19): every log
 * flushed, the three replica processes SIGKILLed at once (etcd and the object
 * store keep running), started again on the same data, then
 *
 *   - the time from the restart until all three answer /readyz with 200;
 *   - one append to each log (a replica in turn, `concurrency` at a time),
 *     each retried on a 503 or no answer until `timeoutMs` after its first
 *     attempt: the time from the restart until every log took one, and the
 *     latency of each log's first append (first attempt to ack);
 *   - a sample of logs read back whole: every entry acknowledged on them
 *     before the kill must be there.
 *
 * The kill waits until every log is quiesced as well (README, Quiescence:
 * idle past --quiesce-after-ms, sealed in etcd), since only those are promised
 * to come back on their own; a log whose last segment was not closed clean
 * stays NOT_READY after such a crash, so its first append fails.
 */
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { build as buildHistogram } from 'hdr-histogram-js';
import { Pool } from 'undici';
import type { LocalCluster } from '../../src/cli/local-cluster.js';
import type { AckedEntries } from './acked-entries.js';
import { ms, round2 } from './format.js';
import { OCTET_STREAM_HEADERS, append, httpJson } from './http.js';
import { readWholeLog, runPool, waitFlushed, waitQuiesced } from './tern-logs.js';

/** Between two polls of /readyz, and before a first append or a read is tried again. */
const RETRY_MS = 100;
/** First appends: error keys worth trying again (503 NOT_READY and the like, or no answer while a replica comes up). */
const RETRYABLE = /^(503|0) /;

export interface KillRestartOptions {
  logs: readonly string[];
  concurrency: number;
  /** How long to wait for the flushes before the kill, for readiness after it, and for each log's first append. */
  timeoutMs: number;
  /** Seconds the logs stay idle between their flush (and quiescence) and the kill. */
  killAfterS: number;
  acked: AckedEntries;
}

/** What one append to each of `logs` needs. */
export type AppendOnceOptions = Pick<KillRestartOptions, 'logs' | 'concurrency' | 'timeoutMs' | 'acked'>;

export interface KillRestartResult {
  /** Waiting for every log's leader to flush what it committed, before the kill. */
  flushWaitS: number;
  notFlushed: number;
  /** Waiting until every log was quiesced, after the flushes; and how many were when the kill came. */
  quiesceWaitS: number;
  quiescedAtKill: number;
  killAfterS: number;
  /** From the restart until all three replicas answered /readyz with 200; null when not within the timeout. */
  readyS: number | null;
  /** The last /readyz answer of each replica not ready by then. */
  notReady: Record<string, string>;
  /** From the restart until every log took one append; null when some did not. */
  allAppendedS: number | null;
  firstAppends: { taken: number; failed: number; p50Ms: number; p99Ms: number; maxMs: number; failuresByCode: Record<string, number> };
  /** The sampled logs read back: entries acknowledged on them before the kill, how many are not there, logs that could not be read. */
  check: { logs: number; entries: number; missing: number; unreadableLogs: number; unreadable: Record<string, string> };
}

export async function killAndRestart(cluster: LocalCluster, o: KillRestartOptions, signal: AbortSignal, progress: (line: string) => void): Promise<KillRestartResult> {
  const urls = cluster.replicas.map((r) => r.clientUrl);
  progress(`waiting for ${o.logs.length} logs to be flushed before the kill`);
  const flushStart = performance.now();
  const late = await waitFlushed(cluster, o.logs, o.concurrency, o.timeoutMs, signal);
  const flushWaitS = round2((performance.now() - flushStart) / 1000);
  progress(`flushed in ${flushWaitS} s; waiting for every log to quiesce`);
  const quiescence = await waitQuiesced(cluster, o.logs.length, o.timeoutMs, signal);
  progress(`${quiescence.quiesced} logs quiesced after ${quiescence.seconds} s`);
  if (o.killAfterS > 0) {
    progress(`flushed in ${flushWaitS} s; idle ${o.killAfterS} s before the kill`);
    await sleep(o.killAfterS * 1000, undefined, { signal });
  }

  progress('SIGKILL to the three replicas at once');
  await Promise.all(
    cluster.replicas.map((r) => {
      const exited = r.process.exitCode !== null || r.process.signalCode !== null ? Promise.resolve() : new Promise<void>((resolve) => r.process.once('exit', () => resolve()));
      r.process.kill('SIGKILL');
      return exited;
    }),
  );
  const restartedAt = performance.now();
  await Promise.all(cluster.replicas.map((r) => cluster.restart(r.id, 'live')));
  progress(`restarted, live in ${((performance.now() - restartedAt) / 1000).toFixed(1)} s; waiting for /readyz`);

  const { readyS, notReady } = await waitReady(urls, restartedAt, o.timeoutMs, signal);
  progress(readyS === null ? `not all ready after ${o.timeoutMs / 1000} s: ${JSON.stringify(notReady)}` : `all ready ${readyS} s after the restart; one append to each log`);

  const firstAppends = await appendOnceEach(urls, o, signal);
  const allAppendedS = firstAppends.failed === 0 && firstAppends.lastAckAt !== undefined ? round2((firstAppends.lastAckAt - restartedAt) / 1000) : null;
  progress(`first appends: ${firstAppends.taken} taken, ${firstAppends.failed} failed${allAppendedS !== null ? `, all ${allAppendedS} s after the restart` : ''}`);

  const sample = o.acked.sample;
  progress(`reading back ${sample.length} logs`);
  const check = { logs: sample.length, entries: 0, missing: 0, unreadableLogs: 0, unreadable: {} as Record<string, string> };
  await runPool(sample.length, o.concurrency, signal, async (i) => {
    const log = sample[i]!;
    const want = o.acked.count(log);
    check.entries += want;
    const deadline = Date.now() + o.timeoutMs;
    for (;;) {
      try {
        check.missing += o.acked.missing(log, await readWholeLog(urls[i % urls.length]!, log));
        return;
      } catch (err) {
        if (Date.now() > deadline || signal.aborted) {
          check.unreadableLogs++;
          check.unreadable[log] = (err as Error).message;
          return;
        }
        await sleep(RETRY_MS);
      }
    }
  });
  const { lastAckAt: _, ...fa } = firstAppends;
  return { flushWaitS, notFlushed: late.length, quiesceWaitS: quiescence.seconds, quiescedAtKill: quiescence.quiesced, killAfterS: o.killAfterS, readyS, notReady, allAppendedS, firstAppends: fa, check };
}

async function waitReady(urls: string[], since: number, timeoutMs: number, signal: AbortSignal): Promise<{ readyS: number | null; notReady: Record<string, string> }> {
  const waiting = new Map(urls.map((u) => [u, 'no answer']));
  const deadline = since + timeoutMs;
  while (waiting.size > 0 && performance.now() < deadline && !signal.aborted) {
    await Promise.all(
      [...waiting.keys()].map(async (u) => {
        try {
          const res = await httpJson(`${u}/readyz`, 'GET');
          if (res.status === 200) waiting.delete(u);
          else waiting.set(u, `${res.status} ${JSON.stringify(res.body).slice(0, 200)}`);
        } catch (err) {
          waiting.set(u, (err as Error).message);
        }
      }),
    );
    if (waiting.size > 0) await sleep(RETRY_MS);
  }
  return { readyS: waiting.size === 0 ? round2((performance.now() - since) / 1000) : null, notReady: Object.fromEntries(waiting) };
}

interface Pending {
  i: number;
  firstAt: number;
  notBefore: number;
}

/**
 * One append to each log, `concurrency` in flight, acknowledged entries kept
 * in `acked`; a log whose append fails with a retryable key goes back at the
 * end of the queue until `timeoutMs` after its first attempt, so that every
 * log's window starts near the restart.
 */
export async function appendOnceEach(urls: string[], o: AppendOnceOptions, signal: AbortSignal) {
  const pools = urls.map((u) => new Pool(u, { connections: o.concurrency, headersTimeout: o.timeoutMs, bodyTimeout: o.timeoutMs }));
  // Microseconds, up to the longest --restart-timeout (an hour).
  const hist = buildHistogram({ lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: 3 });
  const queue: Pending[] = o.logs.map((_, i) => ({ i, firstAt: NaN, notBefore: 0 }));
  const failuresByCode: Record<string, number> = {};
  let inFlight = 0;
  let taken = 0;
  let failed = 0;
  let lastAckAt: number | undefined;
  try {
    await Promise.all(
      Array.from({ length: Math.min(o.concurrency, o.logs.length) }, async () => {
        while ((queue.length > 0 || inFlight > 0) && !signal.aborted) {
          const p = queue.shift();
          if (p === undefined) {
            await sleep(RETRY_MS);
            continue;
          }
          inFlight++;
          const wait = p.notBefore - performance.now();
          if (wait > 0) await sleep(wait);
          const sent = performance.now();
          if (Number.isNaN(p.firstAt)) p.firstAt = sent;
          const entry = o.acked.entry();
          const key = await append(pools[p.i % pools.length]!, `/v1/logs/${o.logs[p.i]}/entries`, entry, OCTET_STREAM_HEADERS);
          const done = performance.now();
          inFlight--;
          if (key === undefined) {
            o.acked.ack(o.logs[p.i]!, entry);
            taken++;
            lastAckAt = done;
            hist.recordValue(Math.max(1, Math.round((done - p.firstAt) * 1000)));
          } else if (RETRYABLE.test(key) && done - p.firstAt < o.timeoutMs) {
            p.notBefore = done + RETRY_MS;
            queue.push(p);
          } else {
            failed++;
            failuresByCode[key] = (failuresByCode[key] ?? 0) + 1;
          }
        }
      }),
    );
  } finally {
    await Promise.all(pools.map((p) => p.close().catch(() => undefined)));
  }
  const has = hist.totalCount > 0;
  const out = { taken, failed, p50Ms: has ? ms(hist.getValueAtPercentile(50)) : NaN, p99Ms: has ? ms(hist.getValueAtPercentile(99)) : NaN, maxMs: has ? ms(hist.maxValue) : NaN, failuresByCode, lastAckAt };
  hist.destroy();
  return out;
}
