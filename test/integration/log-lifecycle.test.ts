import { afterEach, describe, expect, it } from 'vitest';
import type { LocalCluster } from '../../src/cli/local-cluster.js';
import { appendRaw, createLog, eventually, http, readAll, startTestCluster } from '../support/cluster.js';

const FAST = ['--lease-ttl-seconds', '2', '--ack-timeout-ms', '1500', '--retransmit-ms', '200', '--heartbeat-ms', '100', '--backoff-ms', '100', '--flush-interval-ms', '200'];

let stop: (() => Promise<void>) | undefined;
afterEach(async () => {
  await stop?.();
  stop = undefined;
});

async function cluster(): Promise<LocalCluster> {
  const started = await startTestCluster(FAST);
  stop = started.stop;
  return started.cluster;
}

const status = async (url: string, log: string) => (await http(`${url}/v1/logs/${log}`)).json();

async function appendMany(url: string, log: string, values: string[]): Promise<void> {
  for (const v of values) {
    const res = await appendRaw(url, log, v);
    expect(res.status, res.body.toString()).toBe(200);
  }
}

/** A counter of the replica's /metrics, summed over the series whose labels include `labels`. */
async function counter(url: string, name: string, labels: string): Promise<number> {
  const text = (await http(`${url}/metrics`)).body.toString();
  let sum = 0;
  for (const m of text.matchAll(new RegExp(`^${name}\\{([^}]*)\\} (\\d+)$`, 'gm'))) if (m[1]!.includes(labels)) sum += Number(m[2]);
  return sum;
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

});
