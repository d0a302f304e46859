/**
 * Retention policies and named readers through tern/client and the `tern`
 * CLI on a real cluster (etcd, s3rver, three replica processes): a policy set
 * at creation and changed later, a holding reader that stops it and, deleted,
 * releases it, HELD_BY_READER, the typed 404s, and the commands' output and
 * exit codes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient, LogNotFoundError, ReaderNotFoundError, TernServerError, type TernClient } from '../../src/client/index.js';
import type { LocalCluster } from '../../src/cli/local-cluster.js';
import { eventually, startTestCluster } from '../support/cluster.js';
import { tern } from '../support/tern-cli.js';

/** The leader applies a policy in its flusher's pass (every 2 s) once entries are flushed: a few passes. */
const PASSES_MS = 15_000;

describe('retention and named readers through the client and the CLI', () => {
  let cluster: LocalCluster;
  let stop: () => Promise<void>;
  let client: TernClient;
  let urls: string;
  beforeAll(async () => {
    ({ cluster, stop } = await startTestCluster(['--flush-interval-ms', '200']));
    urls = cluster.replicas.map((r) => r.clientUrl).join(',');
    client = createClient(cluster.replicas.map((r) => r.clientUrl));
  });
  afterAll(async () => {
    await client?.close();
    await stop?.();
  });

  it('applies a policy set at creation up to a holding reader, and past it once the reader moves and is deleted', async () => {
    const created = await client.createLog('kept', { retention: { maxEntries: 5 } });
    expect([created.created, created.retention]).toEqual([true, { maxEntries: 5 }]);
    // Committed before any entry, the holding reader holds them all.
    expect(await client.commitReader('kept', 'holder', 0, { holdsRetention: true })).toMatchObject({ name: 'holder', nextId: 0, holdsRetention: true });
    const producer = client.producer('kept');
    await Promise.all(Array.from({ length: 20 }, (_, i) => producer.append(`k${i}`)));
    const held = await eventually(async () => {
      const s = await client.status('kept');
      expect(s.retentionHeldBy).toEqual({ reader: 'holder', nextId: 0, entries: 15 });
      return s;
    }, PASSES_MS);
    expect(held.firstId).toBe(0);
    expect(held.readers).toEqual([expect.objectContaining({ name: 'holder', nextId: 0, holdsRetention: true, lagEntries: 20 })]);

    await client.commitReader('kept', 'holder', 12, { holdsRetention: true });
    await eventually(async () => expect((await client.status('kept')).firstId).toBe(12), PASSES_MS);
    const refused = await client.truncate('kept', 13).catch((e) => e);
    expect(refused).toBeInstanceOf(TernServerError);
    expect([refused.code, refused.status]).toEqual(['HELD_BY_READER', 409]);
    expect(refused.message).toContain('holder');

    expect((await client.readers('kept')).map((r) => [r.name, r.nextId, r.lagEntries])).toEqual([['holder', 12, 8]]);
    expect(await client.deleteReader('kept', 'holder')).toEqual({ log: 'kept', reader: 'holder', deleted: true });
    await eventually(async () => expect((await client.status('kept')).firstId).toBe(15), PASSES_MS);
    await expect(client.reader('kept', 'holder')).rejects.toBeInstanceOf(ReaderNotFoundError);
    expect((await client.read('kept', { from: 15 })).entries.map((e) => String(e.data))).toEqual(['k15', 'k16', 'k17', 'k18', 'k19']);
  });

  it('changes and clears an existing log\'s policy, and never creates a log to do so', async () => {
    await client.createLog('changed');
    expect((await client.setRetention('changed', { maxAgeMs: 3_600_000, maxBytes: 1 << 30 })).retention).toEqual({ maxAgeMs: 3_600_000, maxBytes: 1 << 30 });
    expect((await client.status('changed')).retention).toEqual({ maxAgeMs: 3_600_000, maxBytes: 1 << 30 });
    expect((await client.setRetention('changed', {})).retention).toEqual({});
    await expect(client.setRetention('never-made', { maxEntries: 1 })).rejects.toBeInstanceOf(LogNotFoundError);
    expect(await client.listLogs()).not.toContain('never-made');
  });

  it('tern log create/retention and tern reader commit/get/list/delete, with exit 3 for what does not exist', async () => {
    const created = await tern(['log', 'create', 'cli-kept', '--max-age', '7d', '--max-bytes', '10GiB', '--max-entries', '1000', '--cluster', urls]);
    expect(created.code, created.stderr).toBe(0);
    expect(created.stdout).toMatch(/^created: cli-kept .*, retention max age 7d, max bytes 10GiB, max entries 1000\n$/);
    expect((await client.status('cli-kept')).retention).toEqual({ maxAgeMs: 7 * 86_400_000, maxBytes: 10 * 2 ** 30, maxEntries: 1000 });
    const changed = await tern(['log', 'retention', 'cli-kept', '--max-entries', '50', '--cluster', urls]);
    expect(changed.stdout).toBe('retention of cli-kept: max entries 50\n');
    expect((await client.status('cli-kept')).retention).toEqual({ maxEntries: 50 });
    expect((await tern(['log', 'retention', 'cli-kept', '--none', '--cluster', urls])).stdout).toBe('retention of cli-kept: none\n');
    expect((await client.status('cli-kept')).retention).toEqual({});
    const missing = await tern(['log', 'retention', 'cli-missing', '--max-entries', '1', '--cluster', urls]);
    expect(missing.code, missing.stderr).toBe(3);

    await tern(['append', 'cli-kept', '--cluster', urls], 'a\nb\nc\n');
    const committed = await tern(['reader', 'commit', 'cli-kept', 'billing', '2', '--holds-retention', '--cluster', urls]);
    expect(committed.code, committed.stderr).toBe(0);
    expect(committed.stdout).toBe('committed: reader billing of cli-kept at next id 2, holding retention\n');
    await tern(['reader', 'commit', 'cli-kept', 'audit', '3', '--cluster', urls]);
    const got = await tern(['reader', 'get', 'cli-kept', 'billing', '--json', '--cluster', urls]);
    expect(JSON.parse(got.stdout)).toMatchObject({ name: 'billing', nextId: 2, holdsRetention: true, lagEntries: 1 });
    const list = await tern(['reader', 'list', 'cli-kept', '--cluster', urls]);
    expect(list.stdout).toMatch(/^NAME\s+NEXT ID\s+HOLDS\s+LAG\s+UPDATED\naudit\s+3\s+no\s+0\s+\S+Z\nbilling\s+2\s+yes\s+1\s+\S+Z\n$/);
    expect((await tern(['reader', 'delete', 'cli-kept', 'billing', '--cluster', urls])).stdout).toBe('deleted: reader billing of cli-kept\n');
    const gone = await tern(['reader', 'get', 'cli-kept', 'billing', '--cluster', urls]);
    expect(gone.code).toBe(3);
    expect(gone.stderr).toMatch(/READER_NOT_FOUND/);
    const status = await tern(['log', 'status', 'cli-kept', '--cluster', urls]);
    expect(status.stdout).toMatch(/^retention\s+none$/m);
    expect(status.stdout).toMatch(/^readers:\n\s+NAME.*\n\s+audit\s+3\s+no\s+0\s/m);
  });
});
