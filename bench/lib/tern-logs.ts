/**
 * Many logs of a local Tern cluster, as the many-logs benchmark drives them:
 * a pool of workers over log indexes, each log's leader looked up from its
 * status, waiting until logs have flushed what they committed, and reading a
 * log back whole.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { LocalCluster } from '../../src/cli/local-cluster.js';
import { httpJson } from './http.js';

/** Between two polls of a log's status while waiting for its flush. */
const FLUSH_POLL_MS = 100;
/** Entries asked for per read while reading a log back (the replicas' default --max-read-entries). */
const READ_PAGE_ENTRIES = 1000;

/** Runs `work(i)` for i in [0, n), `concurrency` at a time; counts the ones that threw. */
export async function runPool(n: number, concurrency: number, signal: AbortSignal, work: (i: number) => Promise<void>): Promise<number> {
  let next = 0;
  let failures = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, n) }, async () => {
      while (next < n && !signal.aborted) {
        const i = next++;
        await work(i).catch(() => void failures++);
      }
    }),
  );
  return failures;
}

export interface LeaderStatus {
  leader: string;
  leaderUrl: string;
  committedId: number;
  flushedId: number;
}

/**
 * The log's status as its leader knows it: asked of `via` first (any replica
 * names the leader), then of the leader when that is another replica. Throws
 * when the log has no leader or a replica does not answer 200.
 */
export async function leaderStatus(cluster: LocalCluster, log: string, via: string): Promise<LeaderStatus> {
  let res = await httpJson(`${via}/v1/logs/${log}`, 'GET');
  if (res.status !== 200) throw new Error(`GET /v1/logs/${log} on ${via}: ${res.status}`);
  const leader: string | null = res.body?.leader ?? null;
  if (leader === null) throw new Error(`log ${log} has no leader`);
  const leaderUrl = cluster.replica(leader).clientUrl;
  if (leaderUrl !== via) {
    res = await httpJson(`${leaderUrl}/v1/logs/${log}`, 'GET');
    if (res.status !== 200) throw new Error(`GET /v1/logs/${log} on its leader ${leader}: ${res.status}`);
  }
  return { leader, leaderUrl, committedId: Number(res.body.committedId), flushedId: Number(res.body.flushedId) };
}

/**
 * Waits until each log's leader has flushed everything it committed (the
 * entries are in the object store), or the log is quiesced (sealed once all
 * of it was flushed), `concurrency` logs at a time. Resolves to the logs
 * still not flushed (or not answering) when `timeoutMs` ran out.
 */
export async function waitFlushed(cluster: LocalCluster, logs: readonly string[], concurrency: number, timeoutMs: number, signal: AbortSignal): Promise<string[]> {
  const urls = cluster.replicas.map((r) => r.clientUrl);
  const deadline = Date.now() + timeoutMs;
  const late: string[] = [];
  await runPool(logs.length, concurrency, signal, async (i) => {
    const log = logs[i]!;
    for (;;) {
      const via = urls[i % urls.length]!;
      const s = await leaderStatus(cluster, log, via).catch(() => undefined);
      if (s !== undefined && s.flushedId >= s.committedId) return;
      if (s === undefined && (await httpJson(`${via}/v1/logs/${log}`, 'GET').catch(() => undefined))?.body?.quiesced === true) return;
      if (Date.now() > deadline || signal.aborted) {
        late.push(log);
        return;
      }
      await sleep(FLUSH_POLL_MS);
    }
  });
  return late;
}

/** Every committed entry of `log`, read from `url` in pages from id 0; throws on an answer other than 200. */
export async function readWholeLog(url: string, log: string): Promise<Buffer[]> {
  const out: Buffer[] = [];
  let from = 0;
  for (;;) {
    const res = await httpJson(`${url}/v1/logs/${log}/entries?from=${from}&limit=${READ_PAGE_ENTRIES}`, 'GET');
    if (res.status !== 200) throw new Error(`GET /v1/logs/${log}/entries?from=${from}: ${res.status} ${JSON.stringify(res.body).slice(0, 200)}`);
    const entries: { id: number; data: string }[] = res.body.entries ?? [];
    for (const e of entries) out.push(Buffer.from(e.data, 'base64'));
    const nextId = Number(res.body.nextId);
    if (entries.length === 0 || nextId > Number(res.body.committedId)) return out;
    from = nextId;
  }
}

/** Logs of the cluster that are quiesced, as the replica at `url` counts them (its tern_logs_quiesced gauge). */
export async function quiescedLogs(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('tern_logs_quiesced'));
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
}

/**
 * Waits until `count` logs are quiesced (idle past --quiesce-after-ms and
 * sealed: README, Quiescence) or `timeoutMs` ran out: how long it took, and
 * how many were quiesced then.
 */
export async function waitQuiesced(cluster: LocalCluster, count: number, timeoutMs: number, signal: AbortSignal): Promise<{ seconds: number; quiesced: number }> {
  const started = Date.now();
  let quiesced = 0;
  while (!signal.aborted) {
    quiesced = await quiescedLogs(cluster.replicas[0]!.clientUrl).catch(() => quiesced);
    if (quiesced >= count || Date.now() - started > timeoutMs) break;
    await sleep(FLUSH_POLL_MS);
  }
  return { seconds: Math.round((Date.now() - started) / 100) / 10, quiesced };
}
