import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeFrames, encodeFrames, FRAMES_CONTENT_TYPE } from '../../src/frames.js';
import type { LocalCluster } from '../../src/cli/local-cluster.js';
import { appendRaw, createLog, eventually, http, readAll, startTestCluster } from '../support/cluster.js';

let cluster: LocalCluster;
let stop: () => Promise<void>;
const url = (i: number) => cluster.replicas[i]!.clientUrl;

/** Tail reads the replica at `replicaUrl` holds right now (its tern_tail_waiters gauge). */
async function tailWaiters(replicaUrl: string): Promise<number> {
  const text = (await http(`${replicaUrl}/metrics`)).body.toString('utf8');
  const m = /^tern_tail_waiters(?:\{[^}]*\})? (\S+)$/m.exec(text);
  if (!m) throw new Error(`no tern_tail_waiters on ${replicaUrl}/metrics`);
  return Number(m[1]);
}

/** Held answers the replica at `replicaUrl` gave (its tern_forwarded_appends_total{answer="held"}). */
async function heldAnswers(replicaUrl: string): Promise<number> {
  const text = (await http(`${replicaUrl}/metrics`)).body.toString('utf8');
  const m = /^tern_forwarded_appends_total\{[^}]*answer="held"[^}]*\} (\S+)$/m.exec(text);
  if (!m) throw new Error(`no held series of tern_forwarded_appends_total on ${replicaUrl}/metrics`);
  return Number(m[1]);
}

beforeAll(async () => {
  ({ cluster, stop } = await startTestCluster());
});
afterAll(async () => {
  await stop?.();
});

describe('appends and reads on a real three-replica cluster', () => {
  it('spreads the leadership of new logs over the replicas and creates idempotently', async () => {
    const leaders = [];
    for (const name of ['spread-a', 'spread-b', 'spread-c']) leaders.push((await createLog(url(0), name)).leader);
    expect(new Set(leaders).size).toBe(3);
    const again = await http(`${url(1)}/v1/logs/spread-a`, { method: 'PUT' });
    expect(again.status).toBe(200);
    expect(again.json()).toMatchObject({ log: 'spread-a', leader: leaders[0], epoch: 1, committedId: -1, flushedId: -1, firstId: -1 });
    const list = (await http(`${url(2)}/v1/logs`)).json();
    expect(list.logs).toEqual(expect.arrayContaining(['spread-a', 'spread-b', 'spread-c']));
    expect(list.next).toBeUndefined();
  });

  it('answers an append alike whether the direct path takes it or leaves it to fastify (query, chunked body), on the leader and on a follower', async () => {
    const { leader } = await createLog(url(0), 'paths');
    const answers: { status: number; type: string | undefined; leader: unknown; body: unknown }[] = [];
    const send = async (replicaUrl: string, query: string, body: Buffer | Readable, contentType: string) => {
      const res = await request(`${replicaUrl}/v1/logs/paths/entries${query}`, { method: 'POST', headers: { 'content-type': contentType }, body });
      answers.push({ status: res.statusCode, type: res.headers['content-type'] as string | undefined, leader: res.headers['tern-leader'], body: await res.body.json() });
    };
    for (let i = 0; i < 3; i++) {
      await send(url(i), '', Buffer.from(`direct-${i}`), 'application/octet-stream');
      await send(url(i), '?via=fastify', Buffer.from(`query-${i}`), 'application/octet-stream');
      await send(url(i), '', Readable.from([Buffer.from('chunked-'), Buffer.from(String(i))]), 'application/octet-stream');
    }
    expect(answers.map((a) => a.status)).toEqual(Array(9).fill(200));
    expect(new Set(answers.map((a) => a.type))).toEqual(new Set(['application/json; charset=utf-8']));
    expect(answers.map((a) => a.leader)).toEqual(Array(9).fill(leader));
    expect(answers.map((a) => (a.body as { id: number }).id)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8]);
    const read = await eventually(async () => {
      const entries = await readAll(url(1), 'paths');
      expect(entries).toHaveLength(9);
      return entries;
    });
    expect(read.map((e) => e.data.toString())).toEqual(['direct-0', 'query-0', 'chunked-0', 'direct-1', 'query-1', 'chunked-1', 'direct-2', 'query-2', 'chunked-2']);

    // A bad batch: the same error from both paths, and nothing appended.
    const bad = Buffer.from([0, 0, 0, 9, 1]);
    const errors = [];
    for (const query of ['', '?via=fastify']) {
      const res = await request(`${url(0)}/v1/logs/paths/entries${query}`, { method: 'POST', headers: { 'content-type': FRAMES_CONTENT_TYPE }, body: bad });
      errors.push({ status: res.statusCode, type: res.headers['content-type'], code: ((await res.body.json()) as { error: { code: string } }).error.code });
    }
    expect(errors).toEqual([
      { status: 400, type: 'application/json; charset=utf-8', code: 'BAD_REQUEST' },
      { status: 400, type: 'application/json; charset=utf-8', code: 'BAD_REQUEST' },
    ]);
    expect((await http(`${url(0)}/v1/logs/paths`)).json().committedId).toBe(8);
  });

  it('lists logs a page at a time: names after `after`, at most `limit`, and `next` while more follow', async () => {
    for (const name of ['page-c', 'page-a', 'page-b']) await createLog(url(0), name);
    const all = (await http(`${url(1)}/v1/logs`)).json().logs as string[];
    expect(all).toEqual([...all].sort());
    const paged: string[] = [];
    let pages = 0;
    for (let after: string | undefined; ; pages++) {
      const page = (await http(`${url(1)}/v1/logs?limit=2${after === undefined ? '' : `&after=${after}`}`)).json();
      expect(page.logs.length).toBeLessThanOrEqual(2);
      paged.push(...page.logs);
      if (page.next === undefined) break;
      expect(page.next).toBe(page.logs.at(-1));
      after = page.next;
    }
    expect(paged).toEqual(all);
    expect(pages).toBeGreaterThanOrEqual(Math.ceil(all.length / 2) - 1);
    expect((await http(`${url(1)}/v1/logs?after=page-a&limit=2`)).json().logs).toEqual(['page-b', 'page-c']);
    expect((await http(`${url(1)}/v1/logs?limit=0`)).status).toBe(400);
    expect((await http(`${url(1)}/v1/logs?limit=10001`)).status).toBe(400);
  });

  it('gives concurrent appends through all three replicas dense ids, and every replica reads the same bytes in the same order', async () => {
    await createLog(url(0), 'concurrent');
    const clients = 12;
    const perClient = 40;
    const acked = new Map<number, Buffer>();
    await Promise.all(
      Array.from({ length: clients }, async (_, c) => {
        for (let i = 0; i < perClient; i++) {
          const data = Buffer.concat([Buffer.from(`c${c}-${i}-`), randomBytes(1 + ((c * 31 + i) % 300))]);
          const res = await appendRaw(url((c + i) % 3), 'concurrent', data);
          expect(res.status, res.body.toString()).toBe(200);
          const { id, epoch } = res.json();
          expect(epoch).toBe(1);
          expect(acked.has(id)).toBe(false);
          acked.set(id, data);
        }
      }),
    );
    expect([...acked.keys()].sort((a, b) => a - b)).toEqual(Array.from({ length: clients * perClient }, (_, i) => i));
    for (let r = 0; r < 3; r++) {
      const entries = await eventually(async () => {
        const all = await readAll(url(r), 'concurrent');
        expect(all.length).toBe(clients * perClient);
        return all;
      });
      entries.forEach((e, i) => {
        expect(e.id).toBe(i);
        expect(e.data.equals(acked.get(i)!)).toBe(true);
      });
    }
  });

  it('answers each append a follower forwards in one batch on its own: ids, batches and errors side by side', async () => {
    const { leader } = await createLog(url(0), 'forwarded');
    const follower = cluster.replicas.find((r) => r.id !== leader)!.clientUrl;
    // Sent together, so the follower forwards them in the same event-loop turn (one request to the leader).
    const singles = Array.from({ length: 30 }, (_, i) => Buffer.from(`single-${i}`));
    const batch = [Buffer.from('b0'), Buffer.alloc(0), randomBytes(3000)];
    const [answers, batchAnswer, missing, tooLarge] = await Promise.all([
      Promise.all(singles.map((d) => appendRaw(follower, 'forwarded', d))),
      http(`${follower}/v1/logs/forwarded/entries`, { method: 'POST', contentType: FRAMES_CONTENT_TYPE, body: Buffer.concat(encodeFrames(batch)) }),
      appendRaw(follower, 'no-such-log', 'x'),
      http(`${follower}/v1/logs/forwarded/entries`, { method: 'POST', contentType: 'application/json', body: JSON.stringify({ entries: ['', 'not base64!'] }) }),
    ]);
    expect(missing.status).toBe(404);
    expect(missing.json().error.code).toBe('LOG_NOT_FOUND');
    expect(tooLarge.status).toBe(400);
    expect(batchAnswer.status, batchAnswer.body.toString()).toBe(200);
    const { firstId, lastId } = batchAnswer.json();
    expect(lastId - firstId).toBe(2);
    const byId = new Map<number, Buffer>();
    batch.forEach((d, i) => byId.set(firstId + i, d));
    for (const [i, res] of answers.entries()) {
      expect(res.status, res.body.toString()).toBe(200);
      expect(res.headers['content-type']).toMatch(/^application\/json/);
      expect(byId.has(res.json().id)).toBe(false);
      byId.set(res.json().id, singles[i]!);
    }
    expect([...byId.keys()].sort((a, b) => a - b)).toEqual(Array.from({ length: 33 }, (_, i) => i));
    const read = await eventually(async () => {
      const all = await readAll(url(0), 'forwarded');
      expect(all.length).toBe(33);
      return all;
    });
    for (const e of read) expect(e.data.equals(byId.get(e.id)!)).toBe(true);
  });

  it('a follower answers an append it forwarded once it holds the entry itself (a held answer), so a read there sees it at once', async () => {
    const { leader } = await createLog(url(0), 'held');
    const follower = cluster.replicas.find((r) => r.id !== leader)!.clientUrl;
    const heldBefore = await heldAnswers(follower);
    const appends = 20;
    for (let i = 0; i < appends; i++) {
      const res = await appendRaw(follower, 'held', `held-${i}`);
      expect(res.status, res.body.toString()).toBe(200);
      const { id } = res.json() as { id: number };
      // No wait: the follower answered because it committed the entry (it and the leader hold it).
      const read = await http(`${follower}/v1/logs/held/entries?from=${id}&limit=1`);
      expect(read.json().entries.map((e: { id: number; data: string }) => [e.id, Buffer.from(e.data, 'base64').toString()])).toEqual([[id, `held-${i}`]]);
    }
    // The first append may find the leader still probing the follower: then it is answered at commit.
    expect(await heldAnswers(follower)).toBeGreaterThanOrEqual(heldBefore + appends - 1);
  });

  it('appends JSON and binary batches atomically with consecutive ids, binary-safe and empty entries included', async () => {
    await createLog(url(1), 'batches');
    const json = await http(`${url(2)}/v1/logs/batches/entries`, {
      method: 'POST',
      contentType: 'application/json',
      body: JSON.stringify({ entries: [Buffer.from([0, 255, 10]).toString('base64'), '', Buffer.from('x').toString('base64')] }),
    });
    expect(json.status, json.body.toString()).toBe(200);
    expect(json.json()).toMatchObject({ firstId: 0, lastId: 2, epoch: 1 });
    const frames = [Buffer.alloc(0), randomBytes(5000), Buffer.from('\r\n\0')];
    const bin = await http(`${url(0)}/v1/logs/batches/entries`, { method: 'POST', contentType: FRAMES_CONTENT_TYPE, body: Buffer.concat(encodeFrames(frames)) });
    expect(bin.status, bin.body.toString()).toBe(200);
    expect(bin.json()).toMatchObject({ firstId: 3, lastId: 5 });
    const empty = await appendRaw(url(1), 'batches', Buffer.alloc(0));
    expect(empty.json()).toMatchObject({ id: 6 });

    const read = await eventually(async () => {
      const res = await http(`${url(2)}/v1/logs/batches/entries?from=1&limit=10`, { accept: 'application/octet-stream' });
      expect(res.headers['tern-committed-id']).toBe('6');
      return res;
    });
    expect(read.headers['tern-from-id']).toBe('1');
    expect(read.headers['tern-next-id']).toBe('7');
    const got = decodeFrames(read.body);
    expect(got.map((b) => b.toString('hex'))).toEqual([Buffer.alloc(0), Buffer.from('x'), ...frames, Buffer.alloc(0)].map((b) => b.toString('hex')));
  });

  it('holds a tail read until an entry is committed, and times out empty otherwise', async () => {
    await createLog(url(0), 'tail');
    const started = Date.now();
    const idle = await http(`${url(1)}/v1/logs/tail/entries?from=0&waitMs=300`);
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    expect(idle.json()).toEqual({ entries: [], nextId: 0, committedId: -1 });

    for (let r = 0; r < 3; r++) {
      const waiting = http(`${url(r)}/v1/logs/tail/entries?from=${r}&waitMs=10000`);
      // The read must be held before the append, or it would find the entry without waiting.
      await eventually(async () => expect(await tailWaiters(url(r))).toBe(1));
      const appended = await appendRaw(url(2), 'tail', `tail-${r}`);
      expect(appended.json().id).toBe(r);
      const page = (await waiting).json();
      expect(page.entries).toEqual([{ id: r, timeMs: expect.any(Number), data: Buffer.from(`tail-${r}`).toString('base64') }]);
      expect(page.nextId).toBe(r + 1);
    }
  });

  it('never returns entries beyond the commit point and caps reads by limit', async () => {
    await createLog(url(2), 'limits');
    for (let i = 0; i < 20; i++) expect((await appendRaw(url(0), 'limits', `e${i}`)).status).toBe(200);
    const page = (await http(`${url(0)}/v1/logs/limits/entries?from=5&limit=4`)).json();
    expect(page.entries.map((e: { id: number }) => e.id)).toEqual([5, 6, 7, 8]);
    expect(page.nextId).toBe(9);
    const past = (await http(`${url(0)}/v1/logs/limits/entries?from=500`)).json();
    expect(past).toMatchObject({ entries: [], nextId: 500 });
    expect(past.committedId).toBeLessThanOrEqual(19);
  });

  it('serves health, readiness and its OpenAPI description on every replica', async () => {
    for (let r = 0; r < 3; r++) {
      expect((await http(`${url(r)}/healthz`)).status).toBe(200);
      expect((await http(`${url(r)}/readyz`)).json()).toMatchObject({ status: 'ready', id: cluster.replicas[r]!.id });
      const api = (await http(`${url(r)}/openapi.json`)).json();
      expect(api.openapi).toMatch(/^3\./);
      expect(Object.keys(api.paths)).toEqual(expect.arrayContaining(['/v1/logs', '/v1/logs/{log}', '/v1/logs/{log}/entries']));
    }
  });
});
