import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalCluster } from '../../src/cli/local-cluster.js';
import { appendRaw, createLog, eventually, http, metricSeries, startTestCluster } from '../support/cluster.js';

let cluster: LocalCluster;
let stop: () => Promise<void>;

beforeAll(async () => {
  ({ cluster, stop } = await startTestCluster(['--flush-interval-ms', '100']));
});
afterAll(async () => {
  await stop?.();
});

/** Sum over the replicas of every series of `name` whose labels include all of `labels`. */
async function sumOver(name: string, labels: Record<string, string> = {}): Promise<number> {
  let sum = 0;
  for (const r of cluster.replicas) for (const s of await metricSeries(r.clientUrl, name, labels)) sum += s.value;
  return sum;
}

describe('metrics on a real cluster', () => {
  it('counts each append once wherever it was sent, and reports leadership, commit and flush points per log', async () => {
    const status = await createLog(cluster.replicas[0]!.clientUrl, 'metered');
    const appends = 30;
    for (let i = 0; i < appends; i++) {
      const res = await appendRaw(cluster.replicas[i % 3]!.clientUrl, 'metered', Buffer.alloc(100, i));
      expect(res.status).toBe(200);
    }
    const bad = await http(`${cluster.replicas[0]!.clientUrl}/v1/logs/metered/entries`, { method: 'POST', body: '{"entries": ["%%"]}', contentType: 'application/json' });
    expect(bad.status).toBe(400);

    expect(await sumOver('tern_appends_total', { log: 'metered', outcome: 'ok' })).toBe(appends);
    expect(await sumOver('tern_append_bytes_total', { log: 'metered', outcome: 'ok' })).toBe(appends * 100);
    expect(await sumOver('tern_appends_total', { log: 'metered', outcome: 'BAD_REQUEST' })).toBe(1);
    // Client-visible latency is observed once per acknowledged append, by the replica the client talked to.
    expect(await sumOver('tern_append_ack_seconds_count')).toBe(appends);
    expect(await sumOver('tern_log_leader', { log: 'metered' })).toBe(1);
    expect(await sumOver('tern_log_leader', { log: 'metered', replica: status.leader })).toBe(1);
    expect(await sumOver('tern_replication_bytes_total')).toBeGreaterThanOrEqual(2 * appends * 100);
    await eventually(async () => {
      expect(await sumOver('tern_flushed_id', { log: 'metered' })).toBe(3 * (appends - 1));
      expect(await sumOver('tern_flush_lag_entries', { log: 'metered' })).toBe(0);
    });
    expect(await sumOver('tern_flushed_bytes_total')).toBeGreaterThan(appends * 100);
    expect(await sumOver('tern_etcd_lease_up')).toBe(3);
    expect(await sumOver('tern_coordinator')).toBe(1);
  });
});
