/**
 * The idempotent producer on a real cluster (etcd, s3rver, three replica
 * processes): retries answered with the original ids, gaps refused, through
 * a follower, across a SIGKILLed leader and across a whole-cluster clean
 * restart (the table then comes from the flushed objects' snapshot).
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import type { LocalCluster } from '../../src/cli/local-cluster.js';
import { S3RVER_BUCKET } from '../../src/cli/s3rver.js';
import { FRAMES_CONTENT_TYPE, encodeFrames } from '../../src/frames.js';
import { clusterPerTest, createLog, eventually, http, readAll } from '../support/cluster.js';

// A 2 s lease makes leader loss visible in about 2 s; the defaults are 5 s.
const FAST = ['--lease-ttl-seconds', '2', '--ack-timeout-ms', '1500', '--retransmit-ms', '200', '--heartbeat-ms', '100', '--backoff-ms', '100'];
const cluster = clusterPerTest(FAST);

interface Answer {
  status: number;
  json: any;
}

/** An append of `entries` (one raw entry when a string, else a frames batch) from producer `id` at `seq`; headers as given when `headers` is set. */
async function produce(baseUrl: string, log: string, entries: string | string[], id: string | undefined, seq: number | string | undefined, timeoutMs = 10_000): Promise<Answer> {
  const single = typeof entries === 'string';
  const headers: Record<string, string> = { 'content-type': single ? 'application/octet-stream' : FRAMES_CONTENT_TYPE };
  if (id !== undefined) headers['tern-producer-id'] = id;
  if (seq !== undefined) headers['tern-producer-seq'] = String(seq);
  const body = single ? Buffer.from(entries) : Buffer.concat(encodeFrames(entries.map((e) => Buffer.from(e))));
  const res = await request(`${baseUrl}/v1/logs/${log}/entries`, { method: 'POST', headers, body, headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
  return { status: res.statusCode, json: await res.body.json() };
}

/** `produce`, tried again until it is answered 200 (a new leader takes over, or loads its producers: 503 NOT_READY meanwhile). */
async function produceOnceReady(baseUrl: string, log: string, entries: string | string[], id: string, seq: number, timeoutMs: number): Promise<Answer> {
  return eventually(async () => {
    const res = await produce(baseUrl, log, entries, id, seq, 3000);
    expect(res.status, JSON.stringify(res.json)).toBe(200);
    return res;
  }, timeoutMs, 100);
}

async function statusOf(c: LocalCluster, log: string, via = 0): Promise<any> {
  return (await http(`${c.replicas[via]!.clientUrl}/v1/logs/${log}`)).json();
}

/** The value of a labelled series in a replica's /metrics, 0 when absent. */
async function metric(url: string, series: RegExp): Promise<number> {
  const text = (await http(`${url}/metrics`)).body.toString('utf8');
  const m = new RegExp(`^${series.source}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

/** Values of the log as read back, in id order. */
async function values(url: string, log: string): Promise<string[]> {
  return (await readAll(url, log)).map((e) => e.data.toString());
}

describe('idempotent producer', () => {
  it('answers a retry with the original ids, refuses gaps and stale seqs, through the leader and through a follower', async () => {
    const c = await cluster();
    const { leader } = await createLog(c.replicas[0]!.clientUrl, 'dedup');
    const lead = c.replica(leader).clientUrl;
    const follower = c.replicas.find((r) => r.id !== leader)!.clientUrl;

    const first = await produce(lead, 'dedup', 'a', 'p1', 0);
    expect(first).toEqual({ status: 200, json: { id: 0, epoch: 1, timeMs: expect.any(Number) } });
    // A retry is answered with the original's ids and time.
    expect(await produce(lead, 'dedup', 'a', 'p1', 0)).toEqual({ status: 200, json: { id: 0, epoch: 1, timeMs: first.json.timeMs, duplicate: true } });
    // A batch consumes seq..seq+n-1; its retry gets its ids, through a follower too.
    const batch = await produce(follower, 'dedup', ['b', 'c', 'd'], 'p1', 1);
    expect(batch).toEqual({ status: 200, json: { firstId: 1, lastId: 3, epoch: 1, timeMs: expect.any(Number) } });
    expect(await produce(follower, 'dedup', ['b', 'c', 'd'], 'p1', 1)).toEqual({ status: 200, json: { firstId: 1, lastId: 3, epoch: 1, timeMs: batch.json.timeMs, duplicate: true } });
    expect(await produce(lead, 'dedup', ['b', 'c', 'd'], 'p1', 1)).toMatchObject({ status: 200, json: { firstId: 1, lastId: 3, duplicate: true } });
    // A gap: seq 5 when 4 is next. Through the follower the leader judges it the same.
    for (const url of [lead, follower]) {
      const gap = await produce(url, 'dedup', 'x', 'p1', 5);
      expect(gap.status).toBe(409);
      expect(gap.json.error).toMatchObject({ code: 'SEQUENCE_GAP', expectedSeq: 4, maybeApplied: false });
    }
    // Another producer is its own sequence, and may start anywhere.
    expect(await produce(follower, 'dedup', 'q', 'p2', 1000)).toMatchObject({ status: 200, json: { id: 4, epoch: 1 } });
    // Five more batches push seq 0 out of p1's window: stale, with nothing to answer.
    for (let seq = 4; seq < 9; seq++) expect((await produce(lead, 'dedup', `e${seq}`, 'p1', seq)).status).toBe(200);
    const stale = await produce(lead, 'dedup', 'a', 'p1', 0);
    expect(stale.status).toBe(409);
    expect(stale.json.error).toMatchObject({ code: 'SEQUENCE_STALE', maybeApplied: false });
    // Nothing was appended twice.
    expect(await values(lead, 'dedup')).toEqual(['a', 'b', 'c', 'd', 'q', 'e4', 'e5', 'e6', 'e7', 'e8']);
    expect(await metric(lead, /tern_producer_duplicates_total/)).toBe(3);
    expect(await metric(lead, /tern_producers/)).toBe(2);
    // The same append twice at once: the second is judged while the first is in flight (or just
    // committed) and waits for it: one id, one append.
    const [x, y] = await Promise.all([produce(lead, 'dedup', 'r', 'p3', 0), produce(follower, 'dedup', 'r', 'p3', 0)]);
    expect([x.status, y.status]).toEqual([200, 200]);
    expect(x.json.id).toBe(y.json.id);
    expect([x.json.duplicate, y.json.duplicate].filter(Boolean)).toEqual([true]);
    expect((await values(lead, 'dedup')).filter((v) => v === 'r')).toHaveLength(1);
    // A planned handoff: the new leader rebuilds the table from the marks it holds.
    const to = c.replicas.find((r) => r.id !== leader)!.id;
    const moved = await http(`${lead}/v1/logs/dedup/handoff`, { method: 'POST', contentType: 'application/json', body: JSON.stringify({ to }) });
    expect(moved.status, moved.body.toString()).toBe(200);
    const again = await produceOnceReady(c.replica(to).clientUrl, 'dedup', 'e8', 'p1', 8, 10_000);
    expect(again.json).toMatchObject({ id: 9, duplicate: true });
    expect(again.json.epoch).toBeGreaterThan(1);
    // Appends without a producer are untouched.
    expect((await http(`${follower}/v1/logs/dedup/entries`, { method: 'POST', contentType: 'application/octet-stream', body: 'plain' })).status).toBe(200);
  });

  it('answers bad producer headers 400 where they arrive', async () => {
    const c = await cluster();
    const { leader } = await createLog(c.replicas[0]!.clientUrl, 'bad');
    const follower = c.replicas.find((r) => r.id !== leader)!.clientUrl;
    for (const [id, seq] of [['p', undefined], [undefined, 1], ['a b', 1], ['x'.repeat(129), 1], ['p', -1], ['p', 1.5], ['p', 'one'], ['p', 2 ** 53]] as const) {
      const res = await produce(follower, 'bad', 'x', id, seq);
      expect(res.status, `${id} ${seq}`).toBe(400);
      expect(res.json.error.code).toBe('BAD_REQUEST');
    }
    expect((await statusOf(c, 'bad')).committedId).toBe(-1);
  });

  it('keeps deduplicating across a SIGKILL of the leader: the new leader answers a retry with the original ids', async () => {
    const c = await cluster();
    const { leader } = await createLog(c.replicas[0]!.clientUrl, 'failover');
    const lead = c.replica(leader).clientUrl;
    const ids: number[] = [];
    for (let seq = 0; seq < 6; seq++) {
      const res = await produce(lead, 'failover', `v${seq}`, 'p', seq);
      expect(res.status).toBe(200);
      ids.push(res.json.id);
    }
    await c.signal(leader, 'SIGKILL');
    const survivor = c.replicas.find((r) => r.id !== leader)!.clientUrl;
    // The last batch, as a producer that never got its answer would send it again.
    const retry = await produceOnceReady(survivor, 'failover', 'v5', 'p', 5, 20_000);
    expect(retry.json).toMatchObject({ id: ids[5], duplicate: true });
    expect(retry.json.epoch).toBeGreaterThan(1);
    expect((await produce(survivor, 'failover', 'v3', 'p', 3)).json).toMatchObject({ id: ids[3], duplicate: true });
    expect((await produce(survivor, 'failover', 'v7', 'p', 7)).json.error).toMatchObject({ code: 'SEQUENCE_GAP', expectedSeq: 6 });
    expect((await produce(survivor, 'failover', 'v6', 'p', 6)).json).toMatchObject({ id: 6 });
    expect(await values(survivor, 'failover')).toEqual(['v0', 'v1', 'v2', 'v3', 'v4', 'v5', 'v6']);
  });

  it('keeps deduplicating across a whole-cluster clean restart, from the snapshot in the flushed objects', async () => {
    const c = await cluster();
    const { leader } = await createLog(c.replicas[0]!.clientUrl, 'restart');
    const lead = c.replica(leader).clientUrl;
    for (let seq = 0; seq < 4; seq++) expect((await produce(lead, 'restart', [`a${seq}`, `b${seq}`], 'p', seq * 2)).status).toBe(200);
    expect((await produce(lead, 'restart', 'other', 'q', 7)).status).toBe(200);
    await eventually(async () => expect((await statusOf(c, 'restart')).flushedId).toBe(8), 15_000);

    await Promise.all(c.replicas.map((r) => c.signal(r.id, 'SIGTERM')));
    await Promise.all(c.replicas.map((r) => c.restart(r.id)));
    // Nothing is in memory any more: the table can only come from the snapshot.
    const retry = await produceOnceReady(c.replicas[1]!.clientUrl, 'restart', ['a3', 'b3'], 'p', 6, 20_000);
    expect(retry.json).toMatchObject({ firstId: 6, lastId: 7, duplicate: true });
    expect((await produce(c.replicas[2]!.clientUrl, 'restart', 'other', 'q', 7)).json).toMatchObject({ id: 8, duplicate: true });
    expect((await produce(c.replicas[0]!.clientUrl, 'restart', ['a4', 'b4'], 'p', 8)).json).toMatchObject({ firstId: 9, lastId: 10 });
    expect((await values(c.replicas[0]!.clientUrl, 'restart')).length).toBe(11);
  });

  it('does not hold a log whose snapshot object is corrupt: the new leader forgets the producers and takes appends', async () => {
    const c = await cluster();
    const { leader } = await createLog(c.replicas[0]!.clientUrl, 'rot');
    const lead = c.replica(leader).clientUrl;
    for (let seq = 0; seq < 3; seq++) expect((await produce(lead, 'rot', `v${seq}`, 'p', seq)).status).toBe(200);
    await eventually(async () => expect((await statusOf(c, 'rot')).flushedId).toBe(2), 15_000);
    // Every object of the log (the newest holds the snapshot) gets a flipped byte in its trailer's checksum.
    const dir = join(c.objectStoreDir, S3RVER_BUCKET, 'tern', 'rot');
    const files = readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('._S3rver_object'));
    expect(files.length).toBeGreaterThan(0);
    for (const f of files) {
      const bytes = readFileSync(join(dir, f));
      bytes[bytes.length - 6]! ^= 0x55;
      writeFileSync(join(dir, f), bytes);
    }
    await c.signal(leader, 'SIGKILL');
    const survivor = c.replicas.find((r) => r.id !== leader)!.clientUrl;
    // Forgotten, so the retry is a new producer's first append: appended again, as after expiry.
    const after = await produceOnceReady(survivor, 'rot', 'v2', 'p', 2, 20_000);
    expect(after.json).toMatchObject({ id: 3 });
    expect(after.json.duplicate).toBeUndefined();
    expect((await produce(survivor, 'rot', 'v3', 'p', 3)).json).toMatchObject({ id: 4 });
  });
});
