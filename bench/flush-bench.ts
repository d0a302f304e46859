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
    const store = new ObjectStore({ endpoint: cluster.objectStoreEndpoint!, region: 'us-east-1', bucket: S3RVER_BUCKET, credentials: S3RVER_CREDENTIALS, forcePathStyle: true, timeoutMs: 60_000 });
    const objects = Math.max(1, Math.round(backlog / objectBytes));
    const body = Buffer.alloc(objectBytes, 7);
    let t = performance.now();
    for (let i = 0; i < objects; i++) await store.put(`bench/plain-${i}`, body);
    const plainMBs = (objects * objectBytes) / 1e6 / ((performance.now() - t) / 1000);
    store.close();

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
    console.log(`plain PutObject loop:      ${plainMBs.toFixed(1)} MB/s (${objects} objects)`);
    console.log(`Tern flush of the backlog: ${flushMBs.toFixed(1)} MB/s (${flushSeconds.toFixed(2)} s) = ${((100 * flushMBs) / plainMBs).toFixed(0)} % of the plain loop`);
    console.log(`catch-up read from id 0 through object storage: ${readMBs.toFixed(1)} MB/s`);
  } finally {
    await cluster.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error('flush-bench:', err instanceof Error ? err.message : err);
  process.exit(1);
});
