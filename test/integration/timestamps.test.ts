/**
 * Entry timestamps and seek by time on a real cluster (etcd, s3rver, three
 * replica processes): times that never go back, across handoff, SIGKILL
 * failover and a whole-cluster restart; an append's own time; seeks that land
 * on the right entry in memory, in objects and across an object boundary.
 */
import { describe, expect, it } from 'vitest';
import { FRAMES_CONTENT_TYPE, TIMED_FRAMES_CONTENT_TYPE, decodeFrames, decodeTimedFrames } from '../../src/frames.js';
import type { LocalCluster } from '../../src/cli/local-cluster.js';
import { clusterPerTest, createLog, eventually, http, logStatus } from '../support/cluster.js';

// Objects are cut at 10 entries; the interval only flushes a tail that waits (a read stops at its object's end, wherever that is).
const cluster = clusterPerTest(['--flush-max-entries', '10', '--flush-interval-ms', '1000']);

interface Appended {
  id?: number;
  firstId?: number;
  timeMs: number;
}

async function append(url: string, log: string, data: string, timeMs?: number): Promise<{ status: number; body: any }> {
  const headers: Record<string, string> = { 'content-type': 'application/octet-stream' };
  if (timeMs !== undefined) headers['tern-time-ms'] = String(timeMs);
  const res = await fetch(`${url}/v1/logs/${log}/entries`, { method: 'POST', headers, body: data });
  return { status: res.status, body: await res.json() };
}

async function appendOk(url: string, log: string, data: string, timeMs?: number): Promise<Appended> {
  const res = await append(url, log, data, timeMs);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body as Appended;
}

/** Every committed entry's time, in id order, as one replica serves them. */
async function timesOf(url: string, log: string): Promise<number[]> {
  const page = (await http(`${url}/v1/logs/${log}/entries?limit=10000`)).json() as { entries: { id: number; timeMs: number }[] };
  return page.entries.map((e) => e.timeMs);
}

function expectNonDecreasing(times: readonly number[]): void {
  for (let i = 1; i < times.length; i++) expect(times[i], `time of id ${i} after ${times[i - 1]}`).toBeGreaterThanOrEqual(times[i - 1]!);
}

const url = (c: LocalCluster, id: string) => c.replica(id).clientUrl;

describe('entry timestamps', () => {
  it('stamps appends with the leader\'s clock, takes an append\'s own time, refuses one behind the log, and returns times in every read format', async () => {
    const c = await cluster();
    const { leader } = await createLog(c.replicas[0]!.clientUrl, 'stamped');
    const follower = c.replicas.find((r) => r.id !== leader)!.clientUrl;
    const before = Date.now();
    const first = await appendOk(url(c, leader), 'stamped', 'a');
    expect(first.timeMs).toBeGreaterThanOrEqual(before - 1000);
    expect(first.timeMs).toBeLessThanOrEqual(Date.now() + 1000);
    // Forwarded by a follower, the own time travels with it.
    const own = first.timeMs + 60_000;
    expect((await appendOk(follower, 'stamped', 'b', own)).timeMs).toBe(own);
    // The leader's clock is now behind the log: its appends keep the log's last time.
    expect((await appendOk(follower, 'stamped', 'c')).timeMs).toBe(own);
    const behind = await append(follower, 'stamped', 'd', own - 1);
    expect(behind.status).toBe(409);
    expect(behind.body.error).toMatchObject({ code: 'TIME_BEHIND', maybeApplied: false });
    const future = await append(url(c, leader), 'stamped', 'e', Date.now() + 2 * 3_600_000);
    expect(future.status).toBe(400);
    for (const bad of ['-1', '1.5', 'soon']) {
      const res = await fetch(`${follower}/v1/logs/stamped/entries`, { method: 'POST', headers: { 'content-type': 'application/octet-stream', 'tern-time-ms': bad }, body: 'x' });
      expect(res.status, bad).toBe(400);
    }
    const expected = [first.timeMs, own, own];
    await eventually(async () => expect(await timesOf(follower, 'stamped')).toEqual(expected));
    const timed = await http(`${follower}/v1/logs/stamped/entries`, { accept: TIMED_FRAMES_CONTENT_TYPE });
    expect(timed.headers['content-type']).toBe(TIMED_FRAMES_CONTENT_TYPE);
    const decoded = decodeTimedFrames(timed.body);
    expect(decoded.times).toEqual(expected);
    expect(decoded.entries.map(String)).toEqual(['a', 'b', 'c']);
    // Readers that predate times get the frames they always got.
    expect(decodeFrames((await http(`${follower}/v1/logs/stamped/entries`, { accept: FRAMES_CONTENT_TYPE })).body).map(String)).toEqual(['a', 'b', 'c']);
  });

  it('never go back across a handoff, a SIGKILL failover and a whole-cluster restart, also when the log\'s time runs ahead of every clock', async () => {
    const c = await cluster();
    const log = 'monotonic';
    let { leader } = await createLog(c.replicas[0]!.clientUrl, log);
    // Ten minutes ahead of every replica's clock: only what the log records can keep the next leader above it.
    let ahead = Date.now() + 600_000;
    const moves: string[] = [];
    const check = async (step: string) => {
      const next = await eventually(() => appendOk(c.replicas[0]!.clientUrl, log, `after-${step}`), 20_000, 100);
      expect(next.timeMs, `first append after ${step}`).toBeGreaterThanOrEqual(ahead);
      moves.push(`${step}: ${next.timeMs - ahead} ms above`);
      ahead += 1000;
      await appendOk(c.replicas[0]!.clientUrl, log, `ahead-${step}`, ahead);
    };
    await appendOk(url(c, leader), log, 'first', ahead);

    const to = c.replicas.find((r) => r.id !== leader)!.id;
    const moved = await http(`${url(c, leader)}/v1/logs/${log}/handoff`, { method: 'POST', contentType: 'application/json', body: JSON.stringify({ to }) });
    expect(moved.status, moved.body.toString()).toBe(200);
    leader = to;
    await check('handoff');

    await c.signal(leader, 'SIGKILL');
    await check('SIGKILL');
    await c.restart(leader);
    // Flushed and released: the next leader must learn the time from etcd, not from memory.
    await eventually(async () => expect((await logStatus(c.replicas[0]!.clientUrl, log)).flushLag.entries).toBe(0), 15_000, 100);

    await Promise.all(c.replicas.map((r) => c.signal(r.id, 'SIGTERM')));
    await Promise.all(c.replicas.map((r) => c.restart(r.id)));
    await check('whole-cluster restart');
    console.log(`times after leadership moves: ${moves.join('; ')}`);
    for (const r of c.replicas) await eventually(async () => expectNonDecreasing(await timesOf(r.clientUrl, log)), 10_000, 100);
  });
});

describe('seek by time', () => {
  it('lands on the first entry at or after the time, in memory, in objects and across an object boundary, on every replica', async () => {
    const c = await cluster();
    const log = 'seek';
    await createLog(c.replicas[0]!.clientUrl, log);
    const base = Date.now() - 3_600_000;
    // Ids 0..34 at base + 10 * id: objects of 10 entries (0-9, 10-19, 20-29), then 30-34.
    for (let id = 0; id < 35; id++) await appendOk(c.replicas[id % 3]!.clientUrl, log, `e${id}`, base + 10 * id);
    await eventually(async () => expect((await logStatus(c.replicas[0]!.clientUrl, log)).flushedId).toBeGreaterThanOrEqual(29), 15_000, 100);
    // A follower learns the commit point up to a tick after the leader: a seek there answers only what it knows committed.
    await eventually(async () => {
      for (const r of c.replicas) expect((await logStatus(r.clientUrl, log)).committedId, r.id).toBe(34);
    });
    const cases = [
      { time: 0, id: 0 },
      { time: base, id: 0 },
      { time: base + 1, id: 1 },
      { time: base + 95, id: 10 }, // the last entry of an object is before it: the next object's first
      { time: base + 100, id: 10 },
      { time: base + 199, id: 20 },
      { time: base + 291, id: 30 }, // past the objects: memory (or a later object, once flushed)
      { time: base + 340, id: 34 },
    ];
    for (const r of c.replicas) {
      for (const { time, id } of cases) {
        const found = (await http(`${r.clientUrl}/v1/logs/${log}/offsets?time=${time}`)).json();
        expect(found, `${r.id} time ${time}`).toEqual({ log, time, id, timeMs: base + 10 * id });
        const page = (await http(`${r.clientUrl}/v1/logs/${log}/entries?fromTime=${time}&limit=2`)).json();
        expect(page.entries[0], `${r.id} fromTime ${time}`).toMatchObject({ id, timeMs: base + 10 * id });
      }
      expect((await http(`${r.clientUrl}/v1/logs/${log}/offsets?time=${base + 341}`)).json()).toEqual({ log, time: base + 341, id: 35, timeMs: null });
    }
    // After a truncation, a seek below the first retained entry answers that entry.
    await http(`${c.replicas[0]!.clientUrl}/v1/logs/${log}/truncate`, { method: 'POST', contentType: 'application/json', body: JSON.stringify({ beforeId: 15 }) });
    await eventually(async () => expect((await http(`${c.replicas[2]!.clientUrl}/v1/logs/${log}/offsets?time=${base}`)).json()).toMatchObject({ id: 15, timeMs: base + 150 }));
    expect((await http(`${c.replicas[1]!.clientUrl}/v1/logs/${log}/entries?from=3&fromTime=${base}`)).status).toBe(400);
    expect((await http(`${c.replicas[1]!.clientUrl}/v1/logs/${log}/offsets`)).status).toBe(400);
    expect((await http(`${c.replicas[1]!.clientUrl}/v1/logs/nope/offsets?time=1`)).status).toBe(404);
  });
});
