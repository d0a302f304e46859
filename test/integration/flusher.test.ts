import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { S3RVER_BUCKET, S3RVER_CREDENTIALS } from '../../src/cli/s3rver.js';
import { ObjectStore } from '../../src/flusher/object-store.js';
import { appendRaw, createLog, eventually, http, readAll, clusterPerTest, appendMany, logStatus, storedObjects, storedObjectsDir } from '../support/cluster.js';

const FAST = ['--lease-ttl-seconds', '2', '--ack-timeout-ms', '1500', '--retransmit-ms', '200', '--heartbeat-ms', '100', '--backoff-ms', '100', '--flush-interval-ms', '200'];

const cluster = clusterPerTest(FAST);

const status = logStatus;

describe('flushing to object storage', () => {
  it('flushes everything, and after all three replicas are SIGKILLed and restarted every entry reads back byte-identical from objects', async () => {
    const c = await cluster();
    const { leader } = await createLog(c.replicas[0]!.clientUrl, 'durable');
    const values = Array.from({ length: 300 }, (_, i) => randomBytes(1 + (i % 700)));
    await appendMany(c.replica(leader).clientUrl, 'durable', values);
    await eventually(async () => expect((await status(c.replica(leader).clientUrl, 'durable')).flushedId).toBe(values.length - 1));
    expect(storedObjects(c, 'durable').length).toBeGreaterThan(0);
    for (const r of c.replicas) await c.signal(r.id, 'SIGKILL');
    for (const r of c.replicas) await c.restart(r.id);
    for (const r of c.replicas) {
      const entries = await readAll(r.clientUrl, 'durable');
      expect(entries.length).toBe(values.length);
      entries.forEach((e, i) => expect(e.data.equals(values[i]!), `id ${i} on ${r.id}`).toBe(true));
    }
  });

  it('keeps acknowledging through an object store outage until the memory bound, then flushes everything and releases memory', async () => {
    const c = await cluster(['--max-buffer-bytes', String(256 * 1024)]);
    const { leader } = await createLog(c.replicas[0]!.clientUrl, 'outage');
    const url = c.replica(leader).clientUrl;
    await c.stopObjectStore();
    const acked: Buffer[] = [];
    let refused: { status: number; json(): any; headers: Record<string, unknown> } | undefined;
    for (let i = 0; i < 200 && !refused; i++) {
      const v = randomBytes(4096);
      const res = await appendRaw(url, 'outage', v);
      if (res.status === 200) acked.push(v);
      else refused = res;
    }
    expect(acked.length).toBeGreaterThan(10);
    expect(refused?.status).toBe(503);
    expect(refused?.json().error.code).toBe('BUFFER_FULL');
    expect(refused?.headers['retry-after']).toBeDefined();
    expect((await status(url, 'outage')).flushedId).toBe(-1);

    await c.startObjectStore();
    await eventually(async () => {
      const s = await status(url, 'outage');
      expect(s.flushedId).toBe(acked.length - 1);
      expect(s.flushLag).toEqual({ entries: 0, bytes: 0 });
    }, 20_000, 200);
    // Memory is released, so appends are taken again.
    expect((await appendRaw(url, 'outage', 'after')).status).toBe(200);
    for (const r of c.replicas) {
      const entries = await readAll(r.clientUrl, 'outage');
      expect(entries.length).toBe(acked.length + 1);
      acked.forEach((v, i) => expect(entries[i]!.data.equals(v)).toBe(true));
    }
  });

  it('reports corrupted object bytes as an error, never as data', async () => {
    const c = await cluster();
    const { leader } = await createLog(c.replicas[0]!.clientUrl, 'rot');
    await appendMany(c.replica(leader).clientUrl, 'rot', Array.from({ length: 20 }, (_, i) => Buffer.from(`entry-${i}`)));
    await eventually(async () => expect((await status(c.replica(leader).clientUrl, 'rot')).flushedId).toBe(19));
    const [file] = storedObjects(c, 'rot');
    const path = join(storedObjectsDir(c, 'rot'), file!);
    const bytes = readFileSync(path);
    bytes[30]! ^= 0x55; // inside the first record
    writeFileSync(path, bytes);
    // A replica restarted after the flush holds nothing in memory: it must go to the object.
    const other = c.replicas.find((r) => r.id !== leader)!;
    await c.signal(other.id, 'SIGKILL');
    await c.restart(other.id);
    const res = await http(`${other.clientUrl}/v1/logs/rot/entries?from=0`);
    expect(res.status).toBe(500);
    expect(res.json().error.code).toBe('CORRUPT_OBJECT');
  });

  it('truncates: reads below the retention point fail with 410 TRUNCATED and their objects are deleted', async () => {
    const c = await cluster(['--flush-max-entries', '10']);
    const { leader } = await createLog(c.replicas[0]!.clientUrl, 'retention');
    const url = c.replica(leader).clientUrl;
    await appendMany(url, 'retention', Array.from({ length: 40 }, (_, i) => Buffer.from(`r${i}`)));
    await eventually(async () => expect((await status(url, 'retention')).flushedId).toBe(39));
    const before = storedObjects(c, 'retention').length;
    expect(before).toBeGreaterThanOrEqual(4);
    const cut = await http(`${url}/v1/logs/retention/truncate`, { method: 'POST', contentType: 'application/json', body: JSON.stringify({ beforeId: 25 }) });
    expect(cut.status, cut.body.toString()).toBe(200);
    expect(cut.json().firstId).toBe(25);
    for (const r of c.replicas) {
      const below = await http(`${r.clientUrl}/v1/logs/retention/entries?from=3`);
      expect(below.status).toBe(410);
      expect(below.json().error.code).toBe('TRUNCATED');
      const page = (await http(`${r.clientUrl}/v1/logs/retention/entries?from=25&limit=3`)).json();
      expect(page.entries.map((e: { data: string }) => Buffer.from(e.data, 'base64').toString())).toEqual(['r25', 'r26', 'r27']);
    }
    // Objects holding only ids below 25 (0-9, 10-19) go; the one holding 20-29 stays.
    await eventually(async () => expect(storedObjects(c, 'retention').length).toBe(before - 2), 15_000, 200);
    const bad = await http(`${url}/v1/logs/retention/truncate`, { method: 'POST', contentType: 'application/json', body: JSON.stringify({ beforeId: 1000 }) });
    expect(bad.status).toBe(400);
  });

  it('deletes a log with its objects; created again it starts from id 0 in a higher epoch', async () => {
    const c = await cluster();
    const { leader, epoch } = await createLog(c.replicas[0]!.clientUrl, 'gone');
    await appendMany(c.replica(leader).clientUrl, 'gone', Array.from({ length: 30 }, (_, i) => Buffer.from(`old-${i}`)));
    await eventually(async () => expect((await status(c.replica(leader).clientUrl, 'gone')).flushedId).toBe(29));
    expect(storedObjects(c, 'gone').length).toBeGreaterThan(0);
    const via = c.replicas.find((r) => r.id !== leader)!.clientUrl;
    const del = await http(`${via}/v1/logs/gone`, { method: 'DELETE' });
    expect(del.status, del.body.toString()).toBe(200);
    expect(storedObjects(c, 'gone')).toEqual([]);
    for (const r of c.replicas) expect((await http(`${r.clientUrl}/v1/logs/gone`)).status).toBe(404);
    expect((await http(`${via}/v1/logs/gone`, { method: 'DELETE' })).status).toBe(404);

    const again = await createLog(via, 'gone');
    expect(again.epoch).toBeGreaterThan(epoch);
    const res = await appendRaw(via, 'gone', 'new-0');
    expect(res.status, res.body.toString()).toBe(200);
    expect(res.json().id).toBe(0);
    for (const r of c.replicas) {
      await eventually(async () => expect((await readAll(r.clientUrl, 'gone')).map((e) => e.data.toString())).toEqual(['new-0']));
    }
  });

  it('deletes an orphan (an upload no manifest records, as a fenced leader leaves) after the grace period, and never serves it', async () => {
    const c = await cluster(['--orphan-grace-ms', '1000']);
    const { leader } = await createLog(c.replicas[0]!.clientUrl, 'orphans');
    const url = c.replica(leader).clientUrl;
    await appendMany(url, 'orphans', [Buffer.from('kept')]);
    await eventually(async () => expect((await status(url, 'orphans')).flushedId).toBe(0));
    const uid = dirname(storedObjects(c, 'orphans')[0]!);
    const store = new ObjectStore({ endpoint: c.objectStoreEndpoint!, region: 'us-east-1', bucket: S3RVER_BUCKET, credentials: S3RVER_CREDENTIALS, forcePathStyle: true, timeoutMs: 5000 });
    try {
      // What a stale leader of epoch 0 would have uploaded for ids 0-0: never recorded.
      await store.put(`tern/orphans/${uid}/0000000000000000-0000000000000000-e0000000000.tern`, Buffer.from('stale upload'));
      expect(storedObjects(c, 'orphans').length).toBe(2);
      expect((await readAll(url, 'orphans')).map((e) => e.data.toString())).toEqual(['kept']);
      await eventually(async () => expect(storedObjects(c, 'orphans').length).toBe(1), 15_000, 200);
    } finally {
      store.close();
    }
  });
});
