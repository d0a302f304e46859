/**
 * Streaming tails (GET /v1/logs/{log}/entries?follow=true) against a real
 * cluster: three replica processes, etcd and s3rver. One cluster serves every
 * test (each its own log); it is stopped, and its temp dir removed, whatever
 * the outcome.
 */
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalCluster } from '../../src/cli/local-cluster.js';
import { BLOCKED_TIMEOUT_MS, KEEP_ALIVE_MS } from '../../src/replica/tail-stream.js';
import { appendMany, createLog, eventually, http, logStatus, startTestCluster } from '../support/cluster.js';
import { openTail, type OpenTail } from '../support/tail-stream.js';

const FAST = ['--lease-ttl-seconds', '2', '--ack-timeout-ms', '1500', '--retransmit-ms', '200', '--heartbeat-ms', '100', '--backoff-ms', '100', '--flush-interval-ms', '200'];

let c: LocalCluster;
let stopCluster: (() => Promise<void>) | undefined;
const tails: OpenTail[] = [];

beforeAll(async () => {
  const started = await startTestCluster(FAST);
  c = started.cluster;
  stopCluster = started.stop;
}, 60_000);

afterAll(async () => {
  for (const t of tails) t.close();
  await stopCluster?.();
});

/** The log's leader and one follower (client URLs), once it has a leader. */
async function leaderAndFollower(log: string): Promise<{ leader: string; follower: string }> {
  await createLog(c.replicas[0]!.clientUrl, log);
  const leaderId = await eventually(async () => {
    const { leader } = await logStatus(c.replicas[0]!.clientUrl, log);
    expect(leader).toBeTruthy();
    return leader as string;
  });
  const follower = c.replicas.find((r) => r.id !== leaderId)!;
  return { leader: c.replica(leaderId).clientUrl, follower: follower.clientUrl };
}

async function tail(url: string, log: string, from: number): Promise<OpenTail> {
  const t = await openTail(url, log, from);
  tails.push(t);
  expect(t.status, t.errorBody).toBe(200);
  return t;
}

/** The gauge's value on the replica at `url`. */
async function gauge(url: string, name: string): Promise<number> {
  const text = (await http(`${url}/metrics`)).body.toString();
  const m = text.match(new RegExp(`^${name}\\{[^}]*\\} (\\d+)$`, 'm'));
  return m ? Number(m[1]) : NaN;
}

function expectDense(t: OpenTail, values: readonly Buffer[], from = 0): void {
  expect(t.entries.map((e) => e.id)).toEqual(values.map((_, i) => from + i));
  t.entries.forEach((e, i) => expect(e.data.equals(values[i]!), `id ${e.id}`).toBe(true));
}

describe('streaming tail (follow=true)', () => {
  it('streams entries appended after it opened, in order with no gaps, on the leader and on a follower', async () => {
    const { leader, follower } = await leaderAndFollower('live');
    const streamsBefore = await gauge(follower, 'tern_tail_streams');
    const onLeader = await tail(leader, 'live', 0);
    const onFollower = await tail(follower, 'live', 0);
    await eventually(async () => expect(await gauge(follower, 'tern_tail_streams')).toBe(streamsBefore + 1));
    const values = Array.from({ length: 120 }, (_, i) => randomBytes(1 + ((i * 37) % 3000)));
    // Sequential appends, then concurrent ones (batched into shared rounds by the leader).
    await appendMany(leader, 'live', values.slice(0, 60));
    await Promise.all([appendMany(leader, 'live', values.slice(60, 90)), appendMany(follower, 'live', values.slice(90))]);
    await eventually(async () => expect(onLeader.entries.length).toBe(values.length));
    await eventually(async () => expect(onFollower.entries.length).toBe(values.length));
    // The sequential part in its order; the concurrent part in the leader's order, the same on both streams.
    expectDense(onLeader, [...values.slice(0, 60), ...onLeader.entries.slice(60).map((e) => e.data)]);
    expectDense(onFollower, onLeader.entries.map((e) => e.data));
    const hex = (b: Buffer) => b.toString('hex');
    expect(onLeader.entries.map((e) => hex(e.data)).sort()).toEqual(values.map(hex).sort());
  });

  it('streams a log from 0 whose older entries are flushed to object storage, then the new ones', async () => {
    const { leader, follower } = await leaderAndFollower('flushed');
    const old = Array.from({ length: 300 }, (_, i) => randomBytes(200 + (i % 500)));
    await appendMany(leader, 'flushed', old);
    await eventually(async () => expect((await logStatus(follower, 'flushed')).flushedId).toBe(old.length - 1));
    const fromStoreBefore = await readsFromStore(follower);
    const t = await tail(follower, 'flushed', 0);
    await eventually(async () => expect(t.entries.length).toBe(old.length));
    expect(await readsFromStore(follower)).toBeGreaterThan(fromStoreBefore);
    const fresh = Array.from({ length: 20 }, () => randomBytes(100));
    await appendMany(leader, 'flushed', fresh);
    await eventually(async () => expect(t.entries.length).toBe(old.length + fresh.length));
    expectDense(t, [...old, ...fresh]);
    // From the middle, on the leader.
    const mid = await tail(leader, 'flushed', 150);
    await eventually(async () => expect(mid.entries.length).toBe(old.length + fresh.length - 150));
    expectDense(mid, [...old, ...fresh].slice(150), 150);
  });

  it('survives idle time with keep-alive frames, then carries the next entry', async () => {
    const { leader, follower } = await leaderAndFollower('idle');
    const onLeader = await tail(leader, 'idle', 0);
    const onFollower = await tail(follower, 'idle', 0);
    await eventually(async () => {
      expect(onLeader.keepAlives).toBeGreaterThanOrEqual(2);
      expect(onFollower.keepAlives).toBeGreaterThanOrEqual(2);
    }, 4 * KEEP_ALIVE_MS);
    await appendMany(leader, 'idle', ['after the silence']);
    await eventually(async () => expect(onFollower.entries.map((e) => e.data.toString())).toEqual(['after the silence']));
    await eventually(async () => expect(onLeader.entries.map((e) => e.data.toString())).toEqual(['after the silence']));
  }, 30_000);

  it('ends cleanly on every replica when the log is deleted', async () => {
    const { leader, follower } = await leaderAndFollower('gone');
    await appendMany(leader, 'gone', ['a', 'b']);
    const streamsBefore = await gauge(follower, 'tern_tail_streams');
    const onLeader = await tail(leader, 'gone', 0);
    const onFollower = await tail(follower, 'gone', 1);
    await eventually(async () => expect(onFollower.entries.length).toBe(1));
    const del = await http(`${leader}/v1/logs/gone`, { method: 'DELETE' });
    expect(del.status, del.body.toString()).toBe(200);
    expect(await onLeader.ended).toBe('deleted');
    expect(await onFollower.ended).toBe('deleted');
    expect(onLeader.entries.map((e) => e.data.toString())).toEqual(['a', 'b']);
    await eventually(async () => expect(await gauge(follower, 'tern_tail_streams')).toBe(streamsBefore));
  });

  it('cuts off a reader that stops reading once 1 MiB waits unread for 10 s', async () => {
    const { leader } = await leaderAndFollower('slow');
    const streamsBefore = await gauge(leader, 'tern_tail_streams');
    // A raw connection that sends the request and then reads nothing: the kernel's buffers fill, then the stream's.
    const { hostname, host, port } = new URL(leader);
    const socket = connect({ host: hostname, port: Number(port) });
    let closedAt: number | undefined;
    socket.on('close', () => (closedAt = Date.now()));
    socket.on('error', () => undefined);
    socket.write(`GET /v1/logs/slow/entries?from=0&follow=true HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
    socket.pause();
    await eventually(async () => expect(await gauge(leader, 'tern_tail_streams')).toBe(streamsBefore + 1));
    const openedAt = Date.now();
    const mib = Buffer.alloc(1024 * 1024, 1);
    await appendMany(leader, 'slow', Array.from({ length: 24 }, () => mib));
    await eventually(async () => expect(await gauge(leader, 'tern_tail_streams')).toBe(streamsBefore), 30_000, 200);
    // Not before the 10 s a blocked stream is given (it blocked after it opened).
    expect(Date.now() - openedAt).toBeGreaterThanOrEqual(BLOCKED_TIMEOUT_MS);
    // Its connection was closed: reading again, the reader finds the end behind what was buffered.
    socket.resume();
    await eventually(async () => expect(closedAt).toBeDefined());
    socket.destroy();
  }, 60_000);

  it('streams newline-delimited JSON for Accept: application/json', async () => {
    const { leader } = await leaderAndFollower('ndjson');
    await appendMany(leader, 'ndjson', ['x', 'y']);
    const res = await fetch(`${leader}/v1/logs/ndjson/entries?from=0&follow=true`, { headers: { accept: 'application/json' } });
    expect(res.headers.get('content-type')).toBe('application/x-ndjson');
    const reader = res.body!.getReader();
    let text = '';
    while (text.split('\n').length < 3) text += Buffer.from((await reader.read()).value!).toString();
    await reader.cancel();
    expect(text.split('\n').slice(0, 2).map((l) => JSON.parse(l))).toEqual([
      { id: 0, timeMs: expect.any(Number), data: Buffer.from('x').toString('base64') },
      { id: 1, timeMs: expect.any(Number), data: Buffer.from('y').toString('base64') },
    ]);
  });

  it('answers bad parameters with the documented 400, an unknown log with 404, truncated ids with 410', async () => {
    const { leader } = await leaderAndFollower('params');
    const base = `${leader}/v1/logs/params/entries`;
    for (const q of ['from=-1&follow=true', 'from=x&follow=true', 'follow=maybe', 'follow=true&limit=5', 'follow=true&waitMs=100']) {
      const res = await http(`${base}?${q}`, { timeoutMs: 5000 });
      expect(res.status, q).toBe(400);
      expect(res.json().error.code, q).toBe('BAD_REQUEST');
    }
    const unknown = await http(`${leader}/v1/logs/nope/entries?follow=true`);
    expect(unknown.status).toBe(404);
    expect(unknown.json().error.code).toBe('LOG_NOT_FOUND');
    await appendMany(leader, 'params', ['0', '1', '2']);
    const cut = await http(`${leader}/v1/logs/params/truncate`, { method: 'POST', body: JSON.stringify({ beforeId: 2 }), contentType: 'application/json' });
    expect(cut.status, cut.body.toString()).toBe(200);
    const truncated = await http(`${base}?from=0&follow=true`);
    expect(truncated.status).toBe(410);
    expect(truncated.json().error.code).toBe('TRUNCATED');
  });

  // Last: it stops a replica of the shared cluster.
  it('ends with tern-end: stopping when its replica stops (SIGTERM), and resumes from the next id on another replica', async () => {
    const { leader, follower } = await leaderAndFollower('stopping');
    await appendMany(leader, 'stopping', ['0', '1']);
    const t = await tail(follower, 'stopping', 0);
    await eventually(async () => expect(t.entries.length).toBe(2));
    const id = c.replicas.find((r) => r.clientUrl === follower)!.id;
    await c.signal(id, 'SIGTERM');
    expect(await t.ended).toBe('stopping');
    await appendMany(leader, 'stopping', ['2']);
    const resumed = await tail(leader, 'stopping', 2);
    await eventually(async () => expect(resumed.entries.map((e) => [e.id, e.data.toString()])).toEqual([[2, '2']]));
  });
});

/** Reads this replica served from object storage so far. */
async function readsFromStore(url: string): Promise<number> {
  const text = (await http(`${url}/metrics`)).body.toString();
  const m = text.match(/^tern_reads_total\{[^}]*source="object_store"[^}]*\} (\d+)$/m);
  return m ? Number(m[1]) : 0;
}
