/**
 * Retention policies and named readers on a real cluster (etcd, s3rver, three
 * replica processes): the leader applies a policy by entries and by size under
 * load, never past what is flushed (also while the object store is down) nor
 * past a reader that holds retention; readers live in etcd, so every replica
 * lists them and they outlive their log's leader.
 */
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import { describe, expect, it } from 'vitest';
import type { LocalCluster } from '../../src/cli/local-cluster.js';
import { keys } from '../../src/fencing/keys.js';
import { appendRaw, clusterPerTest, createLog, eventually, http, logStatus, metricSeries, storedObjects, storedObjectsDir, type HttpAnswer } from '../support/cluster.js';

// Objects of at most 10 entries, cut every 200 ms: many objects for the policies to act on.
const FAST = ['--lease-ttl-seconds', '2', '--ack-timeout-ms', '1500', '--retransmit-ms', '200', '--heartbeat-ms', '100', '--backoff-ms', '100', '--flush-interval-ms', '200', '--flush-max-entries', '10'];
/** Concurrent appenders of the load. */
const APPENDERS = 4;
/** The collector runs every 2 s (flusher.ts GC_EVERY_MS); a policy shows within a few passes. */
const PASSES_MS = 15_000;

const cluster = clusterPerTest(FAST);
const status = logStatus;

function json(url: string, method: string, body: unknown): Promise<HttpAnswer> {
  return http(url, { method, contentType: 'application/json', body: JSON.stringify(body) });
}

/**
 * Appends `count` entries of `size` bytes from APPENDERS concurrent clients,
 * stamped `timeMs` when given (Tern-Time-Ms); answers each acknowledged entry's value by id.
 */
async function load(url: string, log: string, count: number, size = 100, timeMs?: number): Promise<Map<number, string>> {
  const headers: Record<string, string> = timeMs === undefined ? {} : { 'tern-time-ms': String(timeMs) };
  const acked = new Map<number, string>();
  let next = 0;
  await Promise.all(
    Array.from({ length: APPENDERS }, async () => {
      for (let n = next++; n < count; n = next++) {
        const value = `${log}-${n}-`.padEnd(size, 'x');
        const res = await http(`${url}/v1/logs/${log}/entries`, { method: 'POST', body: value, contentType: 'application/octet-stream', headers });
        expect(res.status, res.body.toString()).toBe(200);
        acked.set(res.json().id as number, value);
      }
    }),
  );
  return acked;
}

/** Every entry from `from` to the end as one replica serves it, by id. */
async function readFrom(url: string, log: string, from: number): Promise<Map<number, string>> {
  const out = new Map<number, string>();
  for (;;) {
    const res = await http(`${url}/v1/logs/${log}/entries?from=${from}&limit=1000`);
    expect(res.status, res.body.toString()).toBe(200);
    const page = res.json() as { entries: { id: number; data: string }[]; nextId: number };
    if (page.entries.length === 0) return out;
    for (const e of page.entries) out.set(e.id, Buffer.from(e.data, 'base64').toString());
    from = page.nextId;
  }
}

/** The objects of a log in the store: ids from their keys (<firstId>-<lastId>-e<epoch>), size on s3rver's disk. */
function objectsOf(c: LocalCluster, log: string): { firstId: number; lastId: number; bytes: number }[] {
  return storedObjects(c, log)
    .map((file) => {
      const m = /(\d{16})-(\d{16})-e\d+\.tern/.exec(file)!;
      return { firstId: Number(m[1]), lastId: Number(m[2]), bytes: statSync(join(storedObjectsDir(c, log), file)).size };
    })
    .sort((a, b) => a.firstId - b.firstId);
}

/** Every id of `acked` from `from` on reads back with its value on every replica. */
async function expectRetained(c: LocalCluster, log: string, from: number, acked: Map<number, string>): Promise<void> {
  const expected = [...acked].filter(([id]) => id >= from).sort((a, b) => a[0] - b[0]);
  for (const r of c.replicas) {
    const below = await http(`${r.clientUrl}/v1/logs/${log}/entries?from=${from - 1}`);
    expect(below.json().error?.code, r.id).toBe('TRUNCATED');
    expect([...(await readFrom(r.clientUrl, log, from))], r.id).toEqual(expected);
  }
}

describe('retention policies', () => {
  it('keeps the last maxEntries under load, and while the object store is down truncates no further than what is flushed', async () => {
    const c = await cluster();
    const created = await json(`${c.replicas[0]!.clientUrl}/v1/logs/ent`, 'PUT', { retention: { maxEntries: 50 } });
    expect(created.status, created.body.toString()).toBe(201);
    expect(created.json().retention).toEqual({ maxEntries: 50 });
    const url = c.replica(created.json().leader).clientUrl;

    const acked = await load(url, 'ent', 300);
    await eventually(async () => expect(await status(url, 'ent')).toMatchObject({ committedId: 299, flushedId: 299, firstId: 250 }), PASSES_MS, 200);
    await expectRetained(c, 'ent', 250, acked);
    // The collector deletes every object holding only ids below 250.
    await eventually(async () => expect(objectsOf(c, 'ent')[0]!.lastId).toBeGreaterThanOrEqual(250), PASSES_MS, 200);

    await c.stopObjectStore();
    for (const [id, v] of await load(url, 'ent', 200)) acked.set(id, v);
    // The policy asks for 450, but 300..499 are only in memory: the point stops at the flush point.
    await eventually(async () => expect(await status(url, 'ent')).toMatchObject({ committedId: 499, flushedId: 299, firstId: 300 }), PASSES_MS, 200);
    await expectRetained(c, 'ent', 300, acked);
    expect((await status(url, 'ent')).firstId).toBe(300);

    await c.startObjectStore();
    await eventually(async () => expect(await status(url, 'ent')).toMatchObject({ flushedId: 499, firstId: 450 }), 30_000, 200);
    await expectRetained(c, 'ent', 450, acked);
  });

  it('keeps at most maxBytes of objects under load, dropping whole oldest objects, never past the flush point', async () => {
    const c = await cluster();
    const { leader } = await createLog(c.replicas[0]!.clientUrl, 'size');
    const url = c.replica(leader).clientUrl;
    // Objects of 10 entries of 1000 bytes are about 10 KB: 35,000 bytes keep three of them.
    const maxBytes = 35_000;
    const set = await json(`${url}/v1/logs/size`, 'PUT', { retention: { maxBytes } });
    expect(set.status, set.body.toString()).toBe(200);
    expect(set.json().retention).toEqual({ maxBytes });

    // Rounds of load until the policy has acted while appends go on, then one more.
    let loading = true;
    const seen: { firstId: number; flushedId: number }[] = [];
    const watching = (async () => {
      while (loading) seen.push(await status(url, 'size'));
    })();
    const acked = new Map<number, string>();
    for (let round = 0; round < 2 || (!seen.some((s) => s.firstId > 0) && round < 30); round++) {
      for (const [id, v] of await load(url, 'size', 100, 1000)) acked.set(id, v);
    }
    loading = false;
    await watching;
    expect(seen.some((s) => s.firstId > 0)).toBe(true);
    for (const s of seen) expect(s.firstId).toBeLessThanOrEqual(s.flushedId + 1);
    const lastId = acked.size - 1;

    const settled = await eventually(async () => {
      const s = await status(url, 'size');
      expect(s.flushedId).toBe(lastId);
      const kept = objectsOf(c, 'size');
      const bytes = kept.reduce((sum, o) => sum + o.bytes, 0);
      expect(bytes).toBeLessThanOrEqual(maxBytes);
      // Only whole objects go, and only while what is left is over the limit.
      expect(kept[0]!.firstId).toBe(s.firstId);
      expect(bytes + Math.max(...kept.map((o) => o.bytes))).toBeGreaterThan(maxBytes);
      return s;
    }, PASSES_MS, 200);
    await expectRetained(c, 'size', settled.firstId, acked);
  });

  it("drops whole objects whose entries are older than maxAgeMs (the appends' own times: an hour old, then now)", async () => {
    const c = await cluster();
    const created = await json(`${c.replicas[0]!.clientUrl}/v1/logs/aged`, 'PUT', { retention: { maxAgeMs: 600_000 } });
    expect(created.status, created.body.toString()).toBe(201);
    const url = c.replica(created.json().leader).clientUrl;
    const acked = await load(url, 'aged', 40, 100, Date.now() - 3_600_000);
    // Flushed before the young entries come, so no object holds both.
    await eventually(async () => expect((await status(url, 'aged')).flushedId).toBe(39), PASSES_MS, 200);
    for (const [id, v] of await load(url, 'aged', 40, 100, Date.now())) acked.set(id, v);
    await eventually(async () => expect(await status(url, 'aged')).toMatchObject({ flushedId: 79, firstId: 40 }), PASSES_MS, 200);
    await eventually(async () => expect(objectsOf(c, 'aged')[0]!.firstId).toBe(40), PASSES_MS, 200);
    await expectRetained(c, 'aged', 40, acked);
  });
});

describe('named readers', () => {
  it('a reader holding retention stops the policy and explicit truncation; deleting it releases them', async () => {
    const c = await cluster();
    const startedAt = Date.now();
    const { leader } = await createLog(c.replicas[0]!.clientUrl, 'held');
    const url = c.replica(leader).clientUrl;
    const follower = c.replicas.find((r) => r.id !== leader)!.clientUrl;
    const acked = await load(url, 'held', 100);
    await eventually(async () => expect((await status(url, 'held')).flushedId).toBe(99), PASSES_MS, 200);

    // Committed through a follower; a reader that holds nothing is passed.
    const slow = await json(`${follower}/v1/logs/held/readers/slow`, 'PUT', { nextId: 20, holdsRetention: true });
    expect(slow.status, slow.body.toString()).toBe(200);
    expect(slow.json()).toMatchObject({ name: 'slow', nextId: 20, holdsRetention: true });
    expect((await json(`${follower}/v1/logs/held/readers/free`, 'PUT', { nextId: 5 })).json()).toMatchObject({ nextId: 5, holdsRetention: false });
    expect((await json(`${url}/v1/logs/held`, 'PUT', { retention: { maxEntries: 10 } })).status).toBe(200);

    await eventually(async () => expect((await status(url, 'held')).firstId).toBe(20), PASSES_MS, 200);
    for (const r of c.replicas) {
      await eventually(async () =>
        expect(await status(r.clientUrl, 'held')).toMatchObject({
          firstId: 20,
          retention: { maxEntries: 10 },
          readers: [
            { name: 'free', nextId: 5, holdsRetention: false, lagEntries: 95 },
            { name: 'slow', nextId: 20, holdsRetention: true, lagEntries: 80 },
          ],
          // The policy would keep 90..99: the reader holds back 20..89.
          retentionHeldBy: { reader: 'slow', nextId: 20, entries: 70 },
        }),
      );
    }
    await expectRetained(c, 'held', 20, acked);
    const refused = await json(`${follower}/v1/logs/held/truncate`, 'POST', { beforeId: 21 });
    expect(refused.status).toBe(409);
    expect(refused.json().error.code).toBe('HELD_BY_READER');
    expect(refused.json().error.message).toContain('slow');
    // The log's leader exports the readers' lag.
    expect(await metricSeries(url, 'tern_reader_lag_entries', { log: 'held', reader: 'slow' })).toMatchObject([{ value: 80 }]);
    // Entry 20 is in an object: its age is the object's first time, at most the test's age.
    const [lagSeconds] = await metricSeries(url, 'tern_reader_lag_seconds', { log: 'held', reader: 'slow' });
    expect(lagSeconds!.value).toBeGreaterThan(0);
    expect(lagSeconds!.value).toBeLessThan((Date.now() - startedAt) / 1000);
    expect(await metricSeries(url, 'tern_reader_lag_seconds', { log: 'held', reader: 'free' })).toHaveLength(1);
    expect(await metricSeries(follower, 'tern_reader_lag_entries', { log: 'held' })).toEqual([]);

    // Moving the reader lets the policy follow it; deleting it releases the rest.
    expect((await json(`${url}/v1/logs/held/readers/slow`, 'PUT', { nextId: 60, holdsRetention: true })).status).toBe(200);
    await eventually(async () => expect((await status(url, 'held')).firstId).toBe(60), PASSES_MS, 200);
    const deleted = await http(`${follower}/v1/logs/held/readers/slow`, { method: 'DELETE' });
    expect(deleted.status, deleted.body.toString()).toBe(200);
    await eventually(async () => expect(await status(url, 'held')).toMatchObject({ firstId: 90, readers: [{ name: 'free' }] }), PASSES_MS, 200);
    expect((await status(url, 'held')).retentionHeldBy).toBeUndefined();
    await expectRetained(c, 'held', 90, acked);
    expect(await metricSeries(url, 'tern_reader_lag_entries', { log: 'held', reader: 'slow' })).toEqual([]);
  });

  it('readers survive leader changes (a handoff, a SIGKILL): every replica lists them and the new leader honours and exports them', async () => {
    const c = await cluster();
    const { leader } = await createLog(c.replicas[0]!.clientUrl, 'moves');
    const url = c.replica(leader).clientUrl;
    await load(url, 'moves', 40);
    await eventually(async () => expect((await status(url, 'moves')).flushedId).toBe(39), PASSES_MS, 200);
    expect((await json(`${url}/v1/logs/moves/readers/keep`, 'PUT', { nextId: 15, holdsRetention: true })).status).toBe(200);
    expect((await json(`${url}/v1/logs/moves`, 'PUT', { retention: { maxEntries: 5 } })).status).toBe(200);
    await eventually(async () => expect((await status(url, 'moves')).firstId).toBe(15), PASSES_MS, 200);

    const target = c.replicas.find((r) => r.id !== leader)!;
    const moved = await json(`${url}/v1/logs/moves/handoff`, 'POST', { to: target.id });
    expect(moved.status, moved.body.toString()).toBe(200);
    await c.signal(target.id, 'SIGKILL');
    const survivor = c.replicas.find((r) => r.id !== target.id)!.clientUrl;
    await eventually(async () => expect((await appendRaw(survivor, 'moves', 'after', 5000)).status).toBe(200), 20_000, 200);
    const newLeader = (await status(survivor, 'moves')).leader as string;
    expect(newLeader).not.toBe(target.id);

    for (const r of c.replicas.filter((r) => r.id !== target.id)) {
      await eventually(async () => expect((await http(`${r.clientUrl}/v1/logs/moves/readers`)).json().readers, r.id).toMatchObject([{ name: 'keep', nextId: 15, holdsRetention: true, lagEntries: 26 }]));
    }
    // The new leader holds the point at the reader, and exports its lag.
    await eventually(async () => expect(await metricSeries(c.replica(newLeader).clientUrl, 'tern_reader_lag_entries', { log: 'moves', reader: 'keep' })).toMatchObject([{ value: 26 }]));
    await eventually(async () => expect((await status(survivor, 'moves')).flushedId).toBe(40), PASSES_MS, 200);
    expect((await status(survivor, 'moves')).firstId).toBe(15);
    expect((await http(`${survivor}/v1/logs/moves/readers/keep`, { method: 'DELETE' })).status).toBe(200);
    await eventually(async () => expect((await status(survivor, 'moves')).firstId).toBe(36), PASSES_MS, 200);
  });

  it("exports a quiesced log's readers from one replica (the coordinator): the log has no leader, its readers may still be stuck", async () => {
    const c = await cluster(['--quiesce-after-ms', '1000']);
    const { leader } = await createLog(c.replicas[0]!.clientUrl, 'sleepy');
    const url = c.replica(leader).clientUrl;
    await load(url, 'sleepy', 5);
    expect((await json(`${url}/v1/logs/sleepy/readers/behind`, 'PUT', { nextId: 2 })).status).toBe(200);
    await eventually(async () => expect(await status(url, 'sleepy')).toMatchObject({ quiesced: true, leader: null }), PASSES_MS, 200);
    await eventually(async () => {
      const series = [];
      for (const r of c.replicas) series.push(...(await metricSeries(r.clientUrl, 'tern_reader_lag_entries', { log: 'sleepy', reader: 'behind' })));
      expect(series.map((s) => s.value)).toEqual([3]);
    });
  });

  it('answers bad input with the documented 400, 404 and 409, and goes with its log', async () => {
    const c = await cluster();
    const via = c.replicas[0]!.clientUrl;
    const create = (body: unknown) => json(`${via}/v1/logs/bad`, 'PUT', body);
    for (const body of [
      { retention: { maxBytes: 0 } },
      { retention: { maxEntries: 1.5 } },
      { retention: { maxAgeMs: -1 } },
      { retention: { maxEntries: '10' } },
      { retention: { maxAge: 1000 } },
      { retention: 5 },
      { retention: [] },
      { retentions: {} },
    ]) {
      const res = await create(body);
      expect([res.status, res.json().error?.code], JSON.stringify(body)).toEqual([400, 'BAD_REQUEST']);
    }
    expect((await http(`${via}/v1/logs/bad`)).status).toBe(404);
    expect((await http(`${via}/v1/logs/bad`, { method: 'PUT', contentType: 'application/json', body: '{"retention": ' })).status).toBe(400);

    // No body: created without a policy; a body without `retention` changes nothing; {} clears it.
    expect((await http(`${via}/v1/logs/bad`, { method: 'PUT' })).json()).toMatchObject({ retention: {}, readers: [] });
    expect((await create({ retention: { maxEntries: 7, maxBytes: 1 << 20, maxAgeMs: 60_000 } })).json().retention).toEqual({ maxEntries: 7, maxBytes: 1 << 20, maxAgeMs: 60_000 });
    expect((await create({})).json().retention).toEqual({ maxEntries: 7, maxBytes: 1 << 20, maxAgeMs: 60_000 });
    expect((await http(`${via}/v1/logs/bad`, { method: 'PUT' })).json().retention).toEqual({ maxEntries: 7, maxBytes: 1 << 20, maxAgeMs: 60_000 });
    expect((await create({ retention: {} })).json().retention).toEqual({});
    for (const r of c.replicas) await eventually(async () => expect((await status(r.clientUrl, 'bad')).retention).toEqual({}));

    const reader = (name: string, body: unknown, log = 'bad') => json(`${via}/v1/logs/${log}/readers/${name}`, 'PUT', body);
    const code = async (res: Promise<HttpAnswer>) => {
      const r = await res;
      return [r.status, r.json().error?.code];
    };
    // Nothing is committed: the next id to be committed, 0, is the furthest a reader may be.
    expect(await code(reader('r', { nextId: 1 }))).toEqual([400, 'BAD_REQUEST']);
    expect(await code(reader('r', { nextId: -1 }))).toEqual([400, 'BAD_REQUEST']);
    expect(await code(reader('r', {}))).toEqual([400, 'BAD_REQUEST']);
    expect(await code(reader('r', { nextId: 0, holdsRetention: 'yes' }))).toEqual([400, 'BAD_REQUEST']);
    expect(await code(reader('r', { nextId: 0, hold: true }))).toEqual([400, 'BAD_REQUEST']);
    expect(await code(reader('no*name', { nextId: 0 }))).toEqual([400, 'BAD_REQUEST']);
    expect(await code(reader('r', { nextId: 0 }, 'nope'))).toEqual([404, 'LOG_NOT_FOUND']);
    expect(await code(http(`${via}/v1/logs/bad/readers/ghost`))).toEqual([404, 'READER_NOT_FOUND']);
    expect(await code(http(`${via}/v1/logs/bad/readers/ghost`, { method: 'DELETE' }))).toEqual([404, 'READER_NOT_FOUND']);
    expect(await code(http(`${via}/v1/logs/nope/readers`))).toEqual([404, 'LOG_NOT_FOUND']);

    expect((await reader('r', { nextId: 0, holdsRetention: true })).status).toBe(200);
    await appendRaw(via, 'bad', 'one');
    expect(await code(json(`${via}/v1/logs/bad/truncate`, 'POST', { beforeId: 1 }))).toEqual([409, 'HELD_BY_READER']);
    expect((await http(`${via}/v1/logs/bad/readers/r`)).json()).toMatchObject({ name: 'r', nextId: 0, holdsRetention: true, lagEntries: 1 });

    // Deleting the log deletes its readers: created again, it has none.
    expect((await http(`${via}/v1/logs/bad`, { method: 'DELETE' })).status).toBe(200);
    const etcd = new Etcd3({ hosts: c.etcdEndpoint });
    try {
      expect(await etcd.namespace(keys.prefix('tern')).getAll().prefix(keys.readers('bad')).keys()).toEqual([]);
    } finally {
      etcd.close();
    }
    await createLog(via, 'bad');
    for (const r of c.replicas) await eventually(async () => expect((await status(r.clientUrl, 'bad')).readers).toEqual([]));
  });
});
