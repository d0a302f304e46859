/**
 * Regression (found by jepsen-lite, pause-leader): a leader cut off from its
 * peers holds a tail no quorum ever acknowledged; a new leader recovers
 * without it, writes other entries at those ids and flushes them. When the old
 * leader hears etcd again it knows those ids are flushed, and must serve them
 * from object storage, never its own discarded tail from memory.
 */
import { describe, expect, it } from 'vitest';
import { REPLICA_IDS } from '../../src/cli/local-cluster.js';
import { peerLink, startProxiedCluster } from '../jepsen-lite/cluster.js';
import { appendRaw, createLog, eventually, http, readAll } from '../support/cluster.js';

describe('a deposed leader with a discarded tail', () => {
  it('serves the ids another leader flushed from object storage, not its own tail', async () => {
    const pc = await startProxiedCluster({ replicaArgs: ['--lease-ttl-seconds', '2', '--ack-timeout-ms', '1000', '--flush-interval-ms', '100', '--log-level', 'warn'] });
    try {
      const url = (id: string) => pc.cluster.replica(id).clientUrl;
      const { leader } = await createLog(url('r1'), 'stale');
      for (let i = 0; i < 3; i++) expect((await appendRaw(url(leader), 'stale', `ok-${i}`)).status).toBe(200);
      const others = REPLICA_IDS.filter((r) => r !== leader);
      for (const o of others) for (const l of [peerLink(leader, o), peerLink(o, leader)]) pc.links.peer.get(l)!.setFault({ kind: 'partition' });
      // Id 3 on the old leader only: never acknowledged.
      const lost = await appendRaw(url(leader), 'stale', 'discarded', 10_000);
      expect(lost.status).toBe(503);
      pc.links.etcd.get(leader)!.setFault({ kind: 'partition' });

      const via = url(others[0]!);
      await eventually(async () => expect((await appendRaw(via, 'stale', 'kept')).status).toBe(200), 30_000, 200);
      await eventually(async () => expect((await http(`${via}/v1/logs/stale`)).json().flushedId).toBeGreaterThanOrEqual(3), 20_000, 100);

      // The old leader hears etcd (the manifest) again, but still not its peers.
      pc.links.etcd.get(leader)!.heal();
      await eventually(async () => expect((await http(`${url(leader)}/v1/logs/stale`)).json().flushedId).toBeGreaterThanOrEqual(3), 20_000, 100);
      const atThree = (await http(`${url(leader)}/v1/logs/stale/entries?from=3&limit=1`)).json() as { entries: { id: number; data: string }[] };
      expect(atThree.entries.map((e) => Buffer.from(e.data, 'base64').toString())).toEqual(['kept']);
      expect((await readAll(url(leader), 'stale')).map((e) => e.data.toString()).slice(0, 4)).toEqual(['ok-0', 'ok-1', 'ok-2', 'kept']);
    } finally {
      await pc.stop();
    }
  }, 90_000);
});
