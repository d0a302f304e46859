/**
 * Quiescence (issue 19): an idle log is sealed in etcd by its leader, costs
 * no leader or state anywhere, wakes on the next append at any replica with
 * one etcd transaction, and survives a whole-cluster SIGKILL with no unsafe
 * override. Real etcd, s3rver and replica processes.
 */
import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import type { LocalCluster } from '../../src/cli/local-cluster.js';
import { appendRaw, clusterPerTest, createLog, eventually, http, logStatus, readAll, replicaLogLines } from '../support/cluster.js';

const cluster = clusterPerTest(['--quiesce-after-ms', '400', '--flush-interval-ms', '100']);

async function allQuiesced(c: LocalCluster, logs: readonly string[]): Promise<void> {
  for (const log of logs) {
    for (const r of c.replicas) {
      const s = await logStatus(r.clientUrl, log);
      expect(s, `${log} on ${r.id}`).toMatchObject({ quiesced: true, leader: null });
    }
  }
}

/** The sum of the samples whose line starts with `series` (a name and the first labels). */
async function metric(url: string, series: string): Promise<number> {
  const text = (await http(`${url}/metrics`)).body.toString();
  let sum = 0;
  for (const line of text.split('\n')) if (line.startsWith(series)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  return sum;
}

/** One raw entry from idempotent producer `id` at `seq`. */
async function produce(baseUrl: string, log: string, data: string, id: string, seq: number): Promise<{ status: number; json: any }> {
  const res = await request(`${baseUrl}/v1/logs/${log}/entries`, { method: 'POST', headers: { 'content-type': 'application/octet-stream', 'tern-producer-id': id, 'tern-producer-seq': String(seq) }, body: data });
  return { status: res.statusCode, json: await res.body.json() };
}

describe('quiescence', () => {
  it('seals an idle log, keeps it readable everywhere, and reopens it at a follower for the next append with one epoch raise', async () => {
    const c = await cluster();
    const log = 'sleepy';
    const { leader, epoch } = await createLog(c.replicas[0]!.clientUrl, log);
    for (const v of ['a', 'b', 'c']) expect((await appendRaw(c.replicas[0]!.clientUrl, log, v)).status).toBe(200);

    await eventually(() => allQuiesced(c, [log]), 10_000, 100);
    const sealed = await logStatus(c.replicas[0]!.clientUrl, log);
    expect(sealed).toMatchObject({ epoch, committedId: 2, flushedId: 2 });
    expect(sealed.segments.at(-1)).toMatchObject({ epoch, lastId: 2, closedClean: true, quiesced: true });
    for (const r of c.replicas) expect((await readAll(r.clientUrl, log)).map((e) => e.data.toString()), `read on ${r.id}`).toEqual(['a', 'b', 'c']);
    const leaderUrl = c.replica(leader).clientUrl;
    expect(await metric(leaderUrl, 'tern_quiescence_total{event="quiesced"')).toBe(1);
    // No leader, no state anywhere: no replica's gauges list the log any more (its leader's included).
    for (const r of c.replicas) {
      await eventually(async () => expect((await http(`${r.clientUrl}/metrics`)).body.toString(), r.id).not.toMatch(/tern_committed_id\{[^}]*log="sleepy"/), 5000);
    }

    const follower = c.replicas.find((r) => r.id !== leader)!;
    const woke = await appendRaw(follower.clientUrl, log, 'd');
    expect(woke.status, woke.body.toString()).toBe(200);
    expect(woke.json()).toMatchObject({ id: 3, epoch: epoch + 1 });
    const awake = await logStatus(follower.clientUrl, log);
    expect(awake).toMatchObject({ quiesced: false, leader: follower.id, epoch: epoch + 1 });
    expect(awake.segments.at(-1)).toMatchObject({ epoch: epoch + 1, firstId: 3, lastId: null });
    expect(await metric(follower.clientUrl, 'tern_quiescence_total{event="reopened"')).toBe(1);
    // Appends through any replica go on from there, and everything is read back in order.
    for (const [i, r] of c.replicas.entries()) expect((await appendRaw(r.clientUrl, log, `e${i}`)).status).toBe(200);
    for (const r of c.replicas) {
      await eventually(async () => expect((await readAll(r.clientUrl, log)).map((e) => e.data.toString())).toEqual(['a', 'b', 'c', 'd', 'e0', 'e1', 'e2']), 5000);
    }

    // Asleep and woken once more: the reopen forgets the segments before the quiesced one.
    await eventually(() => allQuiesced(c, [log]), 10_000, 100);
    expect((await appendRaw(c.replicas[2]!.clientUrl, log, 'f')).json()).toMatchObject({ id: 7, epoch: epoch + 2 });
    const again = await logStatus(c.replicas[2]!.clientUrl, log);
    expect(again.segments.map((seg: { epoch: number }) => seg.epoch)).toEqual([epoch + 1, epoch + 2]);
    expect((await readAll(c.replicas[0]!.clientUrl, log)).map((e) => e.data.toString())).toEqual(['a', 'b', 'c', 'd', 'e0', 'e1', 'e2', 'f']);
  });

  it('wakes a quiesced log hit at every replica at once: one reopen wins, every append is acknowledged once, ids stay dense', async () => {
    const c = await cluster();
    const log = 'stampede';
    const { epoch } = await createLog(c.replicas[0]!.clientUrl, log);
    await eventually(() => allQuiesced(c, [log]), 10_000, 100);
    const answers = await Promise.all(c.replicas.flatMap((r) => [0, 1, 2].map((i) => appendRaw(r.clientUrl, log, `${r.id}-${i}`))));
    for (const a of answers) expect(a.status, a.body.toString()).toBe(200);
    const ids = answers.map((a) => a.json().id as number).sort((x, y) => x - y);
    expect(ids).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8]);
    expect(new Set(answers.map((a) => a.json().epoch as number))).toEqual(new Set([epoch + 1]));
    let reopened = 0;
    for (const r of c.replicas) reopened += await metric(r.clientUrl, 'tern_quiescence_total{event="reopened"');
    expect(reopened, replicaLogLines(c, log)).toBe(1);
  });

  it('survives a whole-cluster SIGKILL: every quiesced log takes appends again with no unsafe override, and nothing acknowledged is lost', async () => {
    const c = await cluster();
    const logs = Array.from({ length: 24 }, (_, i) => `idle-${i}`);
    const acked = new Map<string, string[]>();
    for (const [i, log] of logs.entries()) {
      await createLog(c.replicas[i % 3]!.clientUrl, log);
      const values = [`${log}-0`, `${log}-1`];
      for (const v of values) expect((await appendRaw(c.replicas[(i + 1) % 3]!.clientUrl, log, v)).status).toBe(200);
      acked.set(log, values);
    }
    await eventually(() => allQuiesced(c, logs), 20_000, 200);
    // No state of a quiesced log is left on any replica, its last leader's included (whatever came first, etcd's answer to the seal or the watch).
    for (const r of c.replicas) {
      await eventually(async () => expect((await http(`${r.clientUrl}/metrics`)).body.toString().match(/tern_committed_id\{[^}]*log="idle-/g) ?? [], r.id).toEqual([]), 5000);
    }

    for (const r of c.replicas) r.process.kill('SIGKILL');
    await Promise.all(c.replicas.map((r) => new Promise((resolve) => (r.process.exitCode !== null || r.process.signalCode !== null ? resolve(undefined) : r.process.once('exit', resolve)))));
    const restartedAt = Date.now();
    await Promise.all(c.replicas.map((r) => c.restart(r.id, 'ready')));
    for (const [i, log] of logs.entries()) {
      const a = await appendRaw(c.replicas[i % 3]!.clientUrl, log, `${log}-after`);
      expect(a.status, `${log}: ${a.body.toString()}`).toBe(200);
      expect(a.json().id).toBe(2);
    }
    console.log(`whole-cluster SIGKILL with ${logs.length} quiesced logs: every one took an append within ${Date.now() - restartedAt} ms of the restart`);
    for (const log of logs) {
      expect((await readAll(c.replicas[2]!.clientUrl, log)).map((e) => e.data.toString())).toEqual([...acked.get(log)!, `${log}-after`]);
    }
  });

  it('keeps the idempotent producers across a sleep: a retry after the wake gets its original ids, a log with none wakes without reading them', async () => {
    const c = await cluster();
    await createLog(c.replicas[0]!.clientUrl, 'deduped');
    await createLog(c.replicas[0]!.clientUrl, 'plain');
    const first = await eventually(async () => {
      const a = await produce(c.replicas[0]!.clientUrl, 'deduped', 'once', 'p1', 0);
      expect(a.status, JSON.stringify(a.json)).toBe(200);
      return a.json;
    });
    expect((await appendRaw(c.replicas[0]!.clientUrl, 'plain', 'x')).status).toBe(200);
    await eventually(() => allQuiesced(c, ['deduped', 'plain']), 10_000, 100);
    const seals = await Promise.all(['deduped', 'plain'].map(async (log) => (await logStatus(c.replicas[1]!.clientUrl, log)).segments.at(-1)));
    expect(seals.map((seg) => seg.quiesced)).toEqual([true, true]);

    // The retry wakes the log on another replica, which loads the table from the newest object's snapshot.
    const retry = await eventually(async () => {
      const a = await produce(c.replicas[2]!.clientUrl, 'deduped', 'once', 'p1', 0);
      expect(a.status, JSON.stringify(a.json)).toBe(200);
      return a.json;
    });
    expect(retry).toMatchObject({ id: first.id, duplicate: true });
    expect((await produce(c.replicas[2]!.clientUrl, 'deduped', 'twice', 'p1', 1)).json).toMatchObject({ id: first.id + 1 });
    // A log sealed with no producer wakes straight into producer appends: its table starts empty at the seal.
    expect((await produce(c.replicas[2]!.clientUrl, 'plain', 'y', 'p2', 0)).json).toMatchObject({ id: 1 });
    expect((await readAll(c.replicas[1]!.clientUrl, 'deduped')).map((e) => e.data.toString())).toEqual(['once', 'twice']);
  });
});
