/**
 * tern/client against a real local cluster (etcd, s3rver, three replica
 * processes): log commands, batching producer, read paging, truncation,
 * handoff, leader caching (seen in the replicas' own append counters), times
 * (own times, TIME_BEHIND, reads, tails and offsets by time), and a leader
 * SIGKILLed while a producer appends.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient, LogNotFoundError, TernServerError, TimeBehindError, type Entry, type TernClient } from '../../src/client/index.js';
import type { LocalCluster } from '../../src/cli/local-cluster.js';
import { createLogWithLeader } from '../support/client.js';
import { clusterPerTest, eventually, http, readAll, startTestCluster } from '../support/cluster.js';

/** The `tern_appends_total{outcome="ok"}` of `log` a replica counted (appends clients sent to it). */
async function appendsCountedBy(url: string, log: string): Promise<number> {
  const text = (await http(`${url}/metrics`)).body.toString();
  const line = text.split('\n').find((l) => l.startsWith('tern_appends_total{') && l.includes(`log="${log}"`) && l.includes('outcome="ok"'));
  return line ? Number(line.split(' ').pop()) : 0;
}

/** The appends a replica answered 200 to its own clients, forwarded or not (`tern_append_ack_seconds_count`). */
async function acksAnsweredBy(url: string): Promise<number> {
  const text = (await http(`${url}/metrics`)).body.toString();
  const line = text.split('\n').find((l) => l.startsWith('tern_append_ack_seconds_count'));
  return line ? Number(line.split(' ').pop()) : 0;
}

describe('tern/client on a real cluster', () => {
  let cluster: LocalCluster;
  let stop: () => Promise<void>;
  let client: TernClient;
  beforeAll(async () => {
    ({ cluster, stop } = await startTestCluster());
    client = createClient(cluster.replicas.map((r) => r.clientUrl));
  });
  afterAll(async () => {
    await client?.close();
    await stop?.();
  });

  it('creates (idempotently), lists, appends in batches, reads in pages, reports status', async () => {
    const created = await client.createLog('orders');
    expect(created.created).toBe(true);
    expect((await client.createLog('orders')).created).toBe(false);
    expect(await client.listLogs()).toContain('orders');

    const producer = client.producer('orders');
    const values = Array.from({ length: 250 }, (_, i) => `order-${i}`);
    const ids = await Promise.all(values.map((v) => producer.append(v)));
    expect(ids).toEqual(values.map((_, i) => i));
    // Concurrent appends went as a few batches, not one request each.
    expect(producer.stats.batches).toBeLessThan(20);

    const pages = [];
    for await (const page of client.pages('orders', { from: 0, pageSize: 100 })) pages.push(page);
    expect(pages.map((p) => p.entries.length)).toEqual([100, 100, 50]);
    expect(pages.flatMap((p) => p.entries.map((e) => `${e.id}:${e.data}`))).toEqual(values.map((v, i) => `${i}:${v}`));
    const some = [];
    for await (const e of client.entries('orders', { from: 240, limit: 5 })) some.push(e.id);
    expect(some).toEqual([240, 241, 242, 243, 244]);

    const status = await eventually(async () => {
      const s = await client.status('orders');
      expect(s.committedId).toBe(249);
      return s;
    });
    expect(cluster.replicas.map((r) => r.id)).toContain(status.leader);
  });

  it('sends a producer straight to the leader it learned, which counts every append', async () => {
    const leader = cluster.replica(await createLogWithLeader(client, 'cached'));
    const fresh = createClient(cluster.replicas.map((r) => r.clientUrl));
    try {
      const producer = fresh.producer('cached', { lingerMs: 0 });
      for (let i = 0; i < 20; i++) await producer.append(`c${i}`);
    } finally {
      await fresh.close();
    }
    expect(await appendsCountedBy(leader.clientUrl, 'cached')).toBe(20);
    for (const r of cluster.replicas) if (r !== leader) expect(await appendsCountedBy(r.clientUrl, 'cached')).toBe(0);
  });

  it('truncates, hands off, and follows the new leader', async () => {
    await client.createLog('moving');
    const producer = client.producer('moving');
    await Promise.all(Array.from({ length: 10 }, (_, i) => producer.append(`m${i}`)));
    const truncated = await client.truncate('moving', 4);
    expect(truncated.firstId).toBe(4);
    const err = await client.read('moving', { from: 0 }).catch((e) => e);
    expect(err).toBeInstanceOf(TernServerError);
    expect([err.code, err.status]).toEqual(['TRUNCATED', 410]);
    expect((await client.read('moving', { from: 4 })).entries[0]?.data.toString()).toBe('m4');

    const before = (await client.status('moving')).leader!;
    const target = cluster.replicas.map((r) => r.id).find((id) => id !== before)!;
    const after = await client.handoff('moving', target);
    expect(after.leader).toBe(target);
    expect(after.epoch).toBeGreaterThan(truncated.epoch);
    expect(await producer.append('after handoff')).toBe(10);
  });

  it('follows a leader that moved behind its back from the Tern-Leader header: one forwarded append, then straight there', async () => {
    const first = await createLogWithLeader(client, 'moved');
    const producer = client.producer('moved', { lingerMs: 0 });
    await producer.append('before');
    // Another client moves the leader: this one's cache still names the old one, which now forwards.
    const other = createClient(cluster.replicas.map((r) => r.clientUrl));
    const target = cluster.replicas.map((r) => r.id).find((id) => id !== first)!;
    try {
      expect((await other.handoff('moved', target)).leader).toBe(target);
    } finally {
      await other.close();
    }
    const answeredBefore = await Promise.all(cluster.replicas.map((r) => acksAnsweredBy(r.clientUrl)));
    for (let i = 0; i < 10; i++) await producer.append(`after-${i}`);
    const answered = (await Promise.all(cluster.replicas.map((r) => acksAnsweredBy(r.clientUrl)))).map((n, i) => n - answeredBefore[i]!);
    const byId = Object.fromEntries(cluster.replicas.map((r, i) => [r.id, answered[i]]));
    expect(byId[first]).toBe(1);
    expect(byId[target]).toBe(9);
  });

  it('gives entries their times: own times, TIME_BEHIND not applied, reads, offsets and a tail from a time', async () => {
    await createLogWithLeader(client, 'timed');
    const producer = client.producer('timed', { lingerMs: 5 });
    const t0 = Date.now();
    const sent = await Promise.all([producer.send('a', { timeMs: t0 }), producer.send('b', { timeMs: t0 }), producer.send('c', { timeMs: t0 + 1000 }), producer.send('d', { timeMs: t0 + 2000 })]);
    expect(sent).toEqual([{ id: 0, timeMs: t0 }, { id: 1, timeMs: t0 }, { id: 2, timeMs: t0 + 1000 }, { id: 3, timeMs: t0 + 2000 }]);
    const all = (await client.read('timed')).entries;
    expect(all.map((e) => `${e.id}@${e.timeMs - t0}:${e.data}`)).toEqual(['0@0:a', '1@0:b', '2@1000:c', '3@2000:d']);
    // The times the client reads from timed frames are the server's JSON times (on every replica, once it knows the commit).
    for (const r of cluster.replicas) {
      await eventually(async () => {
        const json = (await http(`${r.clientUrl}/v1/logs/timed/entries`)).json() as { entries: { id: number; timeMs: number }[] };
        expect(json.entries.map((e) => e.timeMs)).toEqual(all.map((e) => e.timeMs));
      });
    }

    const late = await producer.append('late', { timeMs: t0 + 1999 }).catch((e) => e);
    expect(late).toBeInstanceOf(TimeBehindError);
    expect([late.status, late.maybeApplied]).toEqual([409, false]);
    expect(late.message).toContain(String(t0 + 2000));

    const fromTime = [];
    for await (const e of client.entries('timed', { fromTime: t0 + 500, pageSize: 1 })) fromTime.push(e.id);
    expect(fromTime).toEqual([2, 3]);
    expect(await client.offsetForTime('timed', t0 + 1000)).toEqual({ log: 'timed', time: t0 + 1000, id: 2, timeMs: t0 + 1000 });
    expect(await client.offsetForTime('timed', t0 + 5000)).toEqual({ log: 'timed', time: t0 + 5000, id: 4, timeMs: null });

    // A tail from a time past every entry starts at the next id and carries what commits.
    const ac = new AbortController();
    const tailed: Entry[] = [];
    const tailing = (async () => {
      for await (const e of client.tail('timed', { fromTime: t0 + 3000, signal: ac.signal })) tailed.push(e);
    })();
    const e = await eventually(async () => {
      const appended = await producer.send('e', { timeMs: t0 + 3000 });
      expect(tailed.length).toBeGreaterThan(0);
      return appended;
    });
    ac.abort();
    await tailing;
    expect(e.id).toBeGreaterThanOrEqual(4);
    // Nothing below the time, nothing skipped from the first id at or after it.
    expect(tailed[0]).toMatchObject({ id: 4, timeMs: t0 + 3000 });
    expect(tailed.map((x) => x.id)).toEqual(tailed.map((_, i) => 4 + i));
  });

  it('gives typed errors: LogNotFoundError with the server code and status', async () => {
    const err = await client.status('no-such-log').catch((e) => e);
    expect(err).toBeInstanceOf(LogNotFoundError);
    expect([err.code, err.status]).toEqual(['LOG_NOT_FOUND', 404]);
    const appendErr = await client.producer('no-such-log', { lingerMs: 0 }).append('x').catch((e) => e);
    expect(appendErr).toBeInstanceOf(LogNotFoundError);
    expect(appendErr.maybeApplied).not.toBe(true);
    await expect(client.deleteLog('no-such-log')).rejects.toBeInstanceOf(LogNotFoundError);
  });
});

describe('tern/client through a crash', () => {
  const startCluster = clusterPerTest();

  it('keeps appending through a SIGKILLed leader: every append answered, each value at the id it got', async () => {
    const cluster = await startCluster();
    const client = createClient(cluster.replicas.map((r) => r.clientUrl), { deadlineMs: 30_000 });
    try {
      const leaderId = await createLogWithLeader(client, 'crash');
      const producer = client.producer('crash');
      const results: Promise<number>[] = [];
      let killed = false;
      for (let i = 0; i < 400; i++) {
        results.push(producer.append(`v${i}`));
        if (i % 20 === 19) await new Promise((r) => setTimeout(r, 5));
        if (i === 150) {
          await results[i - 1];
          await cluster.signal(leaderId, 'SIGKILL');
          killed = true;
        }
      }
      expect(killed).toBe(true);
      const ids = await Promise.all(results);
      expect(new Set(ids).size).toBe(ids.length);
      const survivor = cluster.replicas.find((r) => r.id !== leaderId)!;
      const log = await eventually(async () => {
        const entries = await readAll(survivor.clientUrl, 'crash');
        expect(entries.length).toBeGreaterThanOrEqual(400);
        return entries;
      }, 20_000);
      ids.forEach((id, i) => expect(log[id]?.data.toString()).toBe(`v${i}`));
      const status = await client.status('crash');
      expect(status.leader).not.toBe(leaderId);
    } finally {
      await client.close();
    }
  });
});
