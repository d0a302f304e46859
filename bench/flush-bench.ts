/**
 * Flush benchmark: how fast the flusher drains a backlog into the local S3
 * server, as a fraction of a plain PutObject loop of the same object size
 * against the same server in the same run, and how fast a reader catches up
 * from id 0 through object storage.
 *
 *   npm run bench:flush -- [--backlog-mib 128] [--entry-bytes 1024] [--object-mib 4]
 *
 * The backlog is built with the object store stopped (entries wait in memory),
 * then the store is started; from the first recorded object until flushedId
 * reaches the last id is the flush time: appends do not compete with it.
 *
 * The baselines, all of the same object size through the same ObjectStore
 * client (so the same SDK settings):
 * - the plain loop, one PutObject at a time, run twice: before the backlog
 *   (the figure this benchmark always gave) and again right after the flush,
 *   against the same s3rver process the flush wrote to (the store is
 *   restarted for the flush, so the first run met another process). The ratio
 *   is against the mean of the two: on a shared 2-core machine a single
 *   1-second loop moved fourfold between runs (60-243 MB/s on
 *   2026-12-03), and one figure before and one after bracket the flush.
 * - the plain loop with 3 uploads at once (the flusher kept 3 in flight when
 *   this was written; 4 now): what the store takes from a client that
 *   overlaps, as the flusher does. The sequential loop leaves the store idle while the client
 *   sends, so a flusher that overlaps can pass it; this one it should only
 *   approach.
 * The flush counts entry bytes only: the object format adds 12 bytes per entry
 * (1.2 % at 1 KiB entries) that the plain loops do not carry.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { request } from 'undici';
import { LocalCluster, freeClusterPorts } from '../src/cli/local-cluster.js';
import { S3RVER_BUCKET, S3RVER_CREDENTIALS } from '../src/cli/s3rver.js';
import { ObjectStore } from '../src/flusher/object-store.js';
import { FRAMES_CONTENT_TYPE, decodeFrames, encodeFrames } from '../src/frames.js';

const MiB = 1024 * 1024;
/**
 * Uploads at once in the overlapped plain loop: the flusher's UPLOADS_IN_FLIGHT when this
 * baseline was set (3). The flusher keeps 4 since; the baseline stays at 3 so that runs before
 * and after compare (bench/results/2026-12-03-flush.md).
 */
const PLAIN_UPLOADS_AT_ONCE = 3;

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { 'backlog-mib': { type: 'string' }, 'entry-bytes': { type: 'string' }, 'object-mib': { type: 'string' } } });
  const backlog = Number(values['backlog-mib'] ?? 128) * MiB;
  const entryBytes = Number(values['entry-bytes'] ?? 1024);
  const objectBytes = Number(values['object-mib'] ?? 4) * MiB;
  if (![backlog, entryBytes, objectBytes].every((n) => Number.isInteger(n) && n > 0)) {
    console.error('flush-bench: --backlog-mib, --entry-bytes and --object-mib take positive integers');
    process.exit(2);
  }
  const dataDir = mkdtempSync(join(tmpdir(), 'tern-flush-bench-'));
  const cluster = await LocalCluster.start({
    dataDir,
    ...(await freeClusterPorts()),
    replicaArgs: ['--log-level', 'warn', '--max-buffer-bytes', String(4 * backlog), '--flush-max-bytes', String(objectBytes), '--max-request-bytes', String(64 * MiB)],
  });
  try {
    const connect = () => new ObjectStore({ endpoint: cluster.objectStoreEndpoint!, region: 'us-east-1', bucket: S3RVER_BUCKET, credentials: S3RVER_CREDENTIALS, forcePathStyle: true, timeoutMs: 60_000 });
    const objects = Math.max(1, Math.round(backlog / objectBytes));
    const body = Buffer.alloc(objectBytes, 7);
    let store = connect();
    const plainBeforeMBs = await plainLoop(store, 'before', objects, body, 1);
    store.close();
    let t = 0;

    const url = cluster.replicas[0]!.clientUrl;
    const created = (await (await request(`${url}/v1/logs/flushbench`, { method: 'PUT' })).body.json()) as { leader: string };
    const leaderUrl = cluster.replica(created.leader).clientUrl;
    await cluster.stopObjectStore();
    const entry = Buffer.alloc(entryBytes, 3);
    const perBatch = Math.max(1, Math.floor(MiB / entryBytes));
    const frames = Buffer.concat(encodeFrames(Array.from({ length: perBatch }, () => entry)));
    let lastId = -1;
    for (let sent = 0; sent < backlog; sent += perBatch * entryBytes) {
      const res = await request(`${leaderUrl}/v1/logs/flushbench/entries`, { method: 'POST', headers: { 'content-type': FRAMES_CONTENT_TYPE }, body: frames });
      const answer = (await res.body.json()) as { lastId: number };
      if (res.statusCode !== 200) throw new Error(`append failed: ${res.statusCode} ${JSON.stringify(answer)}`);
      lastId = answer.lastId;
    }
    const totalBytes = (lastId + 1) * entryBytes;
    await cluster.startObjectStore();
    // The clock starts at the first recorded object: before it the flusher may still sit in
    // the retry backoff (up to 5 s) it entered while the store was down.
    let firstFlushed = -1;
    for (;;) {
      const s = (await (await request(`${leaderUrl}/v1/logs/flushbench`)).body.json()) as { flushedId: number };
      if (s.flushedId >= 0 && firstFlushed < 0) {
        firstFlushed = s.flushedId;
        t = performance.now();
      }
      if (s.flushedId >= lastId) break;
      await new Promise((r) => setTimeout(r, 5));
    }
    const flushSeconds = (performance.now() - t) / 1000;
    const flushMBs = ((lastId - firstFlushed) * entryBytes) / 1e6 / flushSeconds;
    store = connect();
    const plainAfterMBs = await plainLoop(store, 'after', objects, body, 1);
    const overlappedMBs = await plainLoop(store, 'overlapped', objects, body, PLAIN_UPLOADS_AT_ONCE);
    store.close();
    const plainMBs = (plainBeforeMBs + plainAfterMBs) / 2;

    // Every replica released its memory after the flush: this reads objects only.
    const reader = cluster.replicas.find((r) => r.id !== created.leader)!.clientUrl;
    t = performance.now();
    let read = 0;
    for (let from = 0; from <= lastId; ) {
      const res = await request(`${reader}/v1/logs/flushbench/entries?from=${from}&limit=10000`, { headers: { accept: 'application/octet-stream' } });
      const got = decodeFrames(Buffer.from(await res.body.arrayBuffer()));
      if (res.statusCode !== 200 || got.length === 0) throw new Error(`read at ${from} failed: ${res.statusCode}`);
      for (const e of got) read += e.length;
      from += got.length;
    }
    const readMBs = read / 1e6 / ((performance.now() - t) / 1000);

    console.log(`backlog ${(totalBytes / MiB).toFixed(0)} MiB of ${entryBytes}-byte entries, objects of ${objectBytes / MiB} MiB, s3rver on loopback`);
    console.log(`plain PutObject loop:      ${plainMBs.toFixed(1)} MB/s (${objects} objects; ${plainBeforeMBs.toFixed(1)} before the flush, ${plainAfterMBs.toFixed(1)} after)`);
    console.log(`plain loop, ${PLAIN_UPLOADS_AT_ONCE} at once:   ${overlappedMBs.toFixed(1)} MB/s`);
    console.log(
      `Tern flush of the backlog: ${flushMBs.toFixed(1)} MB/s (${flushSeconds.toFixed(2)} s) = ${((100 * flushMBs) / plainMBs).toFixed(0)} % of the plain loop, ${((100 * flushMBs) / overlappedMBs).toFixed(0)} % of ${PLAIN_UPLOADS_AT_ONCE} at once`,
    );
    console.log(`catch-up read from id 0 through object storage: ${readMBs.toFixed(1)} MB/s`);
  } finally {
    await cluster.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/** PutObject of `objects` copies of `body`, `atOnce` at a time; MB/s. */
async function plainLoop(store: ObjectStore, name: string, objects: number, body: Buffer, atOnce: number): Promise<number> {
  const t = performance.now();
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < objects; i = next++) await store.put(`bench/plain-${name}-${i}`, body);
  };
  await Promise.all(Array.from({ length: atOnce }, worker));
  return (objects * body.length) / 1e6 / ((performance.now() - t) / 1000);
}

main().catch((err) => {
  console.error('flush-bench:', err instanceof Error ? err.message : err);
  process.exit(1);
});
