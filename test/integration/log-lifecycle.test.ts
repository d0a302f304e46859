import { Etcd3 } from 'etcd3';
import { describe, expect, it } from 'vitest';
import type { LocalCluster } from '../../src/cli/local-cluster.js';
import { keys } from '../../src/fencing/keys.js';
import { appendRaw, createLog, eventually, http, readAll, clusterPerTest, appendMany, logStatus } from '../support/cluster.js';

const FAST = ['--lease-ttl-seconds', '2', '--ack-timeout-ms', '1500', '--retransmit-ms', '200', '--heartbeat-ms', '100', '--backoff-ms', '100', '--flush-interval-ms', '200'];

const cluster = clusterPerTest(FAST);

const status = logStatus;

/** A counter of the replica's /metrics, summed over the series whose labels include `labels`. */
async function counter(url: string, name: string, labels: string): Promise<number> {
  const text = (await http(`${url}/metrics`)).body.toString();
  let sum = 0;
  for (const m of text.matchAll(new RegExp(`^${name}\\{([^}]*)\\} (\\d+)$`, 'gm'))) if (m[1]!.includes(labels)) sum += Number(m[2]);
  return sum;
}

/** The cluster's etcd keys under `prefix` (relative to the cluster's prefix), as the replicas see them. */
async function etcdKeys(c: LocalCluster, prefix: string): Promise<string[]> {
  const client = new Etcd3({ hosts: c.etcdEndpoint });
  try {
    return await client.namespace(keys.prefix('tern')).getAll().prefix(prefix).keys();
  } finally {
    client.close();
  }
}

describe('log lifecycle', () => {
  it("keeps a log created again right after a delete: the deleted log's late object sweep never touches the new log's objects", async () => {
    const c = await cluster();
    const via = c.replicas[0]!.clientUrl;
    await createLog(via, 'dl');
    await appendMany(via, 'dl', ['old-0', 'old-1', 'old-2']);
    await eventually(async () => expect((await status(via, 'dl')).flushedId).toBe(2));
    const del = await http(`${via}/v1/logs/dl`, { method: 'DELETE' });
    expect(del.status, del.body.toString()).toBe(200);
    await createLog(via, 'dl');
    const values = ['new-0', 'new-1', 'new-2', 'new-3', 'new-4'];
    await appendMany(via, 'dl', values);
    await eventually(async () => expect((await status(via, 'dl')).flushedId).toBe(4));
    // The replica that deleted the log sweeps its objects once more a while later (10 s).
    await eventually(async () => expect(await counter(via, 'tern_deleted_log_sweeps_total', 'sweep="late"')).toBe(1), 20_000, 200);
    // Every replica released the new entries after their flush: reads come from the new log's object.
    for (const r of c.replicas) expect((await readAll(r.clientUrl, 'dl')).map((e) => e.data.toString()), r.id).toEqual(values);
  });

  it('stays flushed through its head when truncated up to it, and a new leader after a SIGKILL flushes and appends from there', async () => {
    const c = await cluster();
    const { leader } = await createLog(c.replicas[0]!.clientUrl, 'head');
    const url = c.replica(leader).clientUrl;
    await appendMany(url, 'head', ['e0', 'e1', 'e2', 'e3', 'e4']);
    await eventually(async () => expect((await status(url, 'head')).flushedId).toBe(4));
    const cut = await http(`${url}/v1/logs/head/truncate`, { method: 'POST', contentType: 'application/json', body: JSON.stringify({ beforeId: 5 }) });
    expect(cut.status, cut.body.toString()).toBe(200);
    // The leader deletes the truncated object and forgets its manifest entry (a pass every 2 s).
    await eventually(async () => expect(await etcdKeys(c, keys.manifest('head'))).toEqual([]), 15_000, 200);
    for (const r of c.replicas) {
      await eventually(async () => expect(await status(r.clientUrl, 'head')).toMatchObject({ committedId: 4, flushedId: 4, flushLag: { entries: 0 } }));
    }

    await c.signal(leader, 'SIGKILL');
    const survivor = c.replicas.find((r) => r.id !== leader)!.clientUrl;
    await eventually(async () => expect((await appendRaw(survivor, 'head', 'n5', 5000)).status).toBe(200), 20_000, 200);
    await appendMany(survivor, 'head', ['n6', 'n7']);
    const newLeader = (await status(survivor, 'head')).leader;
    expect(newLeader).not.toBe(leader);
    await eventually(async () => expect((await status(survivor, 'head')).flushedId).toBe(7));
    const page = (await http(`${survivor}/v1/logs/head/entries?from=5`)).json();
    expect(page.entries.map((e: { id: number; data: string }) => [e.id, Buffer.from(e.data, 'base64').toString()])).toEqual([
      [5, 'n5'],
      [6, 'n6'],
      [7, 'n7'],
    ]);

    // Deleting the log takes its flushed-through mark with it: created again, nothing is flushed.
    expect(await etcdKeys(c, keys.flushedThrough('head'))).toEqual([keys.flushedThrough('head')]);
    const del = await http(`${survivor}/v1/logs/head`, { method: 'DELETE' });
    expect(del.status, del.body.toString()).toBe(200);
    expect(await etcdKeys(c, keys.flushedThrough('head'))).toEqual([]);
    expect((await createLog(survivor, 'head')).flushedId).toBe(-1);
  });
});
