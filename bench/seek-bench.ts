/**
 * Seek-by-time benchmark: how long `GET /offsets?time=T` and
 * `GET /entries?fromTime=T` take on a log whose entries are all in object
 * storage, and what timestamps cost in object bytes.
 *
 *   npm run bench:seek -- [--log-mib 1024] [--entry-bytes 1024] [--seeks 200] [--stamped-seconds 10]
 *
 * 1. Builds a log of --log-mib of --entry-bytes entries, appended as 1 MiB
 *    batches, batch k stamped (Tern-Time-Ms) at base + k seconds, then waits
 *    until every entry is flushed and released from memory everywhere.
 * 2. From a follower, seeks --seeks random times inside the log (each checked:
 *    it must land on the first entry of the batch after the time), timing the
 *    offsets answer and a fromTime read of 100 entries. The times are random,
 *    so most seeks need an object the replica's read cache
 *    (--read-cache-bytes, 64 MiB) does not hold: one GET of the object the
 *    manifest names.
 * 3. Object bytes per entry: the time index costs 12 bytes per run of equal
 *    times. The 1 MiB batches above share one time each; a second log takes
 *    --stamped-seconds of single 1 KiB appends from 64 writers stamped by the
 *    leader's clock (the 1k-64p shape, where the runs are most), and its
 *    objects are weighed against the same entries without a time index.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { LocalCluster, freeClusterPorts } from '../src/cli/local-cluster.js';
import { S3RVER_BUCKET, S3RVER_CREDENTIALS } from '../src/cli/s3rver.js';
import { HEADER_BYTES, TRAILER_BYTES } from '../src/flusher/object-format.js';
import { ObjectStore } from '../src/flusher/object-store.js';
import { FRAMES_CONTENT_TYPE, encodeFrames } from '../src/frames.js';
import { numberFlag, optionsOrExitCode, parseFlags } from './lib/flags.js';

const MiB = 1024 * 1024;
const USAGE = `npm run bench:seek -- [--log-mib 1024] [--entry-bytes 1024] [--seeks 200] [--stamped-seconds 10]`;
/** Bytes an object spends per entry besides its data: a record's length and CRC, and its index slot. */
const PER_ENTRY_BYTES = 12;

interface Options {
  logMib: number;
  entryBytes: number;
  seeks: number;
  stampedSeconds: number;
}

function parse(argv: readonly string[]): Options | 'help' {
  const f = parseFlags(argv, ['log-mib', 'entry-bytes', 'seeks', 'stamped-seconds']);
  if (f.help) return 'help';
  return {
    logMib: numberFlag('log-mib', f['log-mib'] as string | undefined, 1024, 1, 16_384, true),
    entryBytes: numberFlag('entry-bytes', f['entry-bytes'] as string | undefined, 1024, 1, MiB, true),
    seeks: numberFlag('seeks', f.seeks as string | undefined, 200, 1, 100_000, true),
    stampedSeconds: numberFlag('stamped-seconds', f['stamped-seconds'] as string | undefined, 10, 0, 3600, true),
  };
}

async function main(): Promise<number> {
  const options = optionsOrExitCode('bench:seek', USAGE, () => parse(process.argv.slice(2)));
  if (typeof options === 'number') return options;
  const dataDir = mkdtempSync(join(tmpdir(), 'tern-seek-bench-'));
  const cluster = await LocalCluster.start({ dataDir, ...(await freeClusterPorts()), replicaArgs: ['--log-level', 'warn', '--max-request-bytes', String(4 * MiB)] });
  try {
    const seekLog = await buildLog(cluster, 'seekbench', options);
    await seekAll(cluster, seekLog, options);
    if (options.stampedSeconds > 0) await weighStamped(cluster, options.stampedSeconds);
    return 0;
  } finally {
    await cluster.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

interface BuiltLog {
  name: string;
  leader: string;
  base: number;
  perBatch: number;
  batches: number;
}

/** Appends the log, batch k stamped base + k seconds, and waits until all of it is in object storage and out of every replica's memory. */
async function buildLog(cluster: LocalCluster, name: string, o: Options): Promise<BuiltLog> {
  const { leader } = await json<{ leader: string }>(`${cluster.replicas[0]!.clientUrl}/v1/logs/${name}`, { method: 'PUT' });
  const leaderUrl = cluster.replica(leader).clientUrl;
  const perBatch = Math.max(1, Math.floor(MiB / o.entryBytes));
  const entry = Buffer.alloc(o.entryBytes, 5);
  const body = Buffer.concat(encodeFrames(Array.from({ length: perBatch }, () => entry)));
  const batches = Math.max(1, Math.round((o.logMib * MiB) / (perBatch * o.entryBytes)));
  const base = Date.now() - batches * 1000;
  const started = performance.now();
  for (let k = 0; k < batches; k++) {
    const res = await request(`${leaderUrl}/v1/logs/${name}/entries`, { method: 'POST', headers: { 'content-type': FRAMES_CONTENT_TYPE, 'tern-time-ms': String(base + k * 1000) }, body });
    const text = await res.body.text();
    if (res.statusCode !== 200) throw new Error(`append ${k} failed: ${res.statusCode} ${text}`);
  }
  const lastId = batches * perBatch - 1;
  for (;;) {
    const statuses = await Promise.all(cluster.replicas.map((r) => json<{ flushedId: number; flushLag: { entries: number } }>(`${r.clientUrl}/v1/logs/${name}`)));
    if (statuses.every((s) => s.flushedId >= lastId && s.flushLag.entries === 0)) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const objects = await objectsOf(cluster, name);
  const bytes = objects.reduce((n, x) => n + x.size, 0);
  console.log(`log: ${(bytes / 1e9).toFixed(2)} GB in ${objects.length} objects, ${lastId + 1} entries of ${o.entryBytes} B, appended and flushed in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  return { name, leader, base, perBatch, batches };
}

/** Random seeks from a follower, each checked, timed as offsets answers and as fromTime reads. */
async function seekAll(cluster: LocalCluster, log: BuiltLog, o: Options): Promise<void> {
  const follower = cluster.replicas.find((r) => r.id !== log.leader)!.clientUrl;
  const offsets: number[] = [];
  const reads: number[] = [];
  for (let i = 0; i < o.seeks; i++) {
    const k = Math.floor(Math.random() * (log.batches - 1));
    const time = log.base + k * 1000 + 1 + Math.floor(Math.random() * 999);
    const expected = (k + 1) * log.perBatch;
    let t = performance.now();
    const found = await json<{ id: number }>(`${follower}/v1/logs/${log.name}/offsets?time=${time}`);
    offsets.push(performance.now() - t);
    if (found.id !== expected) throw new Error(`seek to ${time} landed on ${found.id}, not ${expected}`);
    t = performance.now();
    const page = await json<{ entries: { id: number }[] }>(`${follower}/v1/logs/${log.name}/entries?fromTime=${time + 1}&limit=100`);
    reads.push(performance.now() - t);
    if (page.entries[0]?.id !== expected) throw new Error(`fromTime ${time + 1} read from ${page.entries[0]?.id}, not ${expected}`);
  }
  console.log(`seek by time (${o.seeks} random times, all checked), ms:`);
  console.log(`  offsets?time=T               ${summary(offsets)}`);
  console.log(`  entries?fromTime=T&limit=100 ${summary(reads)}`);
}

/** Single 1 KiB appends from 64 writers for `seconds`, stamped by the leader; the time index's share of the objects. */
async function weighStamped(cluster: LocalCluster, seconds: number): Promise<void> {
  const name = 'stampedbench';
  const { leader } = await json<{ leader: string }>(`${cluster.replicas[0]!.clientUrl}/v1/logs/${name}`, { method: 'PUT' });
  const leaderUrl = cluster.replica(leader).clientUrl;
  const entry = Buffer.alloc(1024, 9);
  const until = performance.now() + seconds * 1000;
  let lastId = -1;
  const writer = async () => {
    while (performance.now() < until) {
      const res = await request(`${leaderUrl}/v1/logs/${name}/entries`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: entry });
      const answer = (await res.body.json()) as { id: number };
      if (res.statusCode === 200) lastId = Math.max(lastId, answer.id);
    }
  };
  await Promise.all(Array.from({ length: 64 }, writer));
  for (;;) {
    const s = await json<{ flushedId: number }>(`${leaderUrl}/v1/logs/${name}`);
    if (s.flushedId >= lastId) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const objects = await objectsOf(cluster, name);
  const entries = lastId + 1;
  const bytes = objects.reduce((n, x) => n + x.size, 0);
  const withoutTimes = objects.length * (HEADER_BYTES + TRAILER_BYTES) + entries * (PER_ENTRY_BYTES + entry.length);
  const index = bytes - withoutTimes;
  console.log(
    `1 KiB x 64 stamped by the leader for ${seconds} s: ${entries} entries (${(entries / seconds).toFixed(0)}/s) in ${objects.length} objects, ${(bytes / entries).toFixed(2)} object bytes per entry, ` +
      `of which the time index ${(index / entries).toFixed(2)} (${(index / 12).toFixed(0)} runs, ${((100 * index) / bytes).toFixed(2)} % of the bytes)`,
  );
}

async function objectsOf(cluster: LocalCluster, log: string): Promise<{ key: string; size: number }[]> {
  const store = new ObjectStore({ endpoint: cluster.objectStoreEndpoint!, region: 'us-east-1', bucket: S3RVER_BUCKET, credentials: S3RVER_CREDENTIALS, forcePathStyle: true, timeoutMs: 60_000 });
  try {
    return (await store.list('')).filter((o) => o.key.includes(`/${log}/`));
  } finally {
    store.close();
  }
}

async function json<T>(url: string, init: { method?: 'PUT' } = {}): Promise<T> {
  const res = await request(url, init);
  const text = await res.body.text();
  if (res.statusCode >= 300) throw new Error(`${init.method ?? 'GET'} ${url}: ${res.statusCode} ${text}`);
  return JSON.parse(text) as T;
}

function summary(ms: number[]): string {
  const sorted = [...ms].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!.toFixed(1);
  return `p50 ${at(0.5)}  p90 ${at(0.9)}  p99 ${at(0.99)}  max ${sorted.at(-1)!.toFixed(1)}`;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error('bench:seek:', err instanceof Error ? err.message : err);
    process.exit(1);
  },
);
