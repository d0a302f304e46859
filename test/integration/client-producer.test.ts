/**
 * The idempotent producer end to end; needs the server side of the
 * idempotent producer (Tern-Producer-Id / Tern-Producer-Seq, duplicate: true),
 * so it is kept apart from client.test.ts: a retry the server already applied
 * gets the original ids, and a leader SIGKILLed while a producer appends
 * leaves every value in the log exactly once.
 */
import { describe, expect, it } from 'vitest';
import { createClient } from '../../src/client/index.js';
import { createLogWithLeader } from '../support/client.js';
import { clusterPerTest, readAll } from '../support/cluster.js';

describe('idempotent producer on a real cluster', () => {
  const startCluster = clusterPerTest();

  it('a producer restarted with the same id and sequence gets the original ids back, nothing appended twice', async () => {
    const cluster = await startCluster();
    const client = createClient(cluster.replicas.map((r) => r.clientUrl));
    try {
      await client.createLog('dedup');
      const first = client.producer('dedup', { producerId: 'orders-writer.1' });
      const values = Array.from({ length: 30 }, (_, i) => `v${i}`);
      const ids = await Promise.all(values.map((v) => first.append(v)));
      await first.close();
      // The same producer, as after a crash of the writer before it saw the answers: same id, same seqs.
      const again = client.producer('dedup', { producerId: 'orders-writer.1', startSeq: 0, lingerMs: 0 });
      const idsAgain = [];
      for (const v of values) idsAgain.push(await again.append(v));
      expect(idsAgain).toEqual(ids);
      expect(again.stats.duplicates).toBe(values.length);
      expect(await again.append('new')).toBe(30);
      expect((await readAll(cluster.replicas[0]!.clientUrl, 'dedup')).length).toBe(31);
      // A sequence that skips ahead is refused, not applied.
      const gap = await client.producer('dedup', { producerId: 'orders-writer.1', startSeq: 100, lingerMs: 0 }).append('skips').catch((e) => e);
      expect(gap.code).toBe('SEQUENCE_GAP');
      expect(gap.maybeApplied).toBe(false);
    } finally {
      await client.close();
    }
  });

  it('through a SIGKILLed leader, every value appended by the producer is in the log exactly once', async () => {
    const cluster = await startCluster();
    const client = createClient(cluster.replicas.map((r) => r.clientUrl), { deadlineMs: 60_000, requestTimeoutMs: 3_000 });
    try {
      const leaderId = await createLogWithLeader(client, 'once');
      const producer = client.producer('once');
      const results: Promise<number>[] = [];
      for (let i = 0; i < 600; i++) {
        results.push(producer.append(`v${i}`));
        if (i % 10 === 9) await new Promise((r) => setTimeout(r, 2));
        if (i === 200) await cluster.signal(leaderId, 'SIGKILL');
      }
      const ids = await Promise.all(results);
      const survivor = cluster.replicas.find((r) => r.id !== leaderId)!;
      const log = await readAll(survivor.clientUrl, 'once');
      const values = log.map((e) => e.data.toString());
      expect(new Set(values).size, 'no value twice').toBe(values.length);
      expect(values.length).toBe(600);
      ids.forEach((id, i) => expect(values[id]).toBe(`v${i}`));
    } finally {
      await client.close();
    }
  });
});
