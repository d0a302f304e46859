/**
 * The streaming tail end to end; needs the server's
 * `GET /v1/logs/{log}/entries?from=ID&follow=true`, so it is kept apart from
 * client.test.ts: entries appear as they commit, on every replica; a tail
 * survives its replica's SIGKILL by resuming elsewhere from the last id + 1;
 * `tern tail` prints new entries.
 */
import { describe, expect, it } from 'vitest';
import { createClient, type Entry, type TernClient } from '../../src/client/index.js';
import { clusterPerTest, eventually, logStatus } from '../support/cluster.js';
import { spawnTern } from '../support/tern-cli.js';
import { stopChild } from '../../src/cli/processes.js';

/** Collects a tail's entries in the background until `stop`. */
function collect(client: TernClient, log: string, from: number): { entries: Entry[]; stop(): void; done: Promise<void> } {
  const ac = new AbortController();
  const entries: Entry[] = [];
  const done = (async () => {
    for await (const e of client.tail(log, { from, signal: ac.signal })) entries.push(e);
  })();
  return { entries, stop: () => ac.abort(), done };
}

describe('streaming tail on a real cluster', () => {
  const startCluster = clusterPerTest();

  it('delivers old and new entries in order, on a client per replica', async () => {
    const cluster = await startCluster();
    const writer = createClient(cluster.replicas.map((r) => r.clientUrl));
    const readers = cluster.replicas.map((r) => createClient([r.clientUrl]));
    try {
      await writer.createLog('live');
      const producer = writer.producer('live');
      await Promise.all(['a', 'b'].map((v) => producer.append(v)));
      const tails = readers.map((c) => collect(c, 'live', 0));
      for (let i = 0; i < 20; i++) await producer.append(`n${i}`);
      const expected = ['a', 'b', ...Array.from({ length: 20 }, (_, i) => `n${i}`)];
      for (const t of tails) {
        await eventually(async () => expect(t.entries.map((e) => e.data.toString())).toEqual(expected));
        expect(t.entries.map((e) => e.id)).toEqual(expected.map((_, i) => i));
        t.stop();
        await t.done;
      }
    } finally {
      await Promise.all([writer.close(), ...readers.map((c) => c.close())]);
    }
  });

  it('resumes from the last id + 1 on another replica when its replica is SIGKILLed', async () => {
    const cluster = await startCluster();
    const client = createClient(cluster.replicas.map((r) => r.clientUrl), { deadlineMs: 60_000 });
    try {
      await client.createLog('resume');
      const producer = client.producer('resume');
      const tail = collect(client, 'resume', 0);
      for (let i = 0; i < 50; i++) await producer.append(`v${i}`);
      await eventually(async () => expect(tail.entries.length).toBe(50));
      // Kill every replica in turn but one: whichever the tail reads from dies at some point.
      const leader = (await client.status('resume')).leader!;
      const victim = cluster.replicas.find((r) => r.id !== leader)!;
      await cluster.signal(victim.id, 'SIGKILL');
      for (let i = 50; i < 100; i++) await producer.append(`v${i}`);
      // Back and caught up before the next kill: one replica down at a time, as the promise says.
      await cluster.restart(victim.id, 'ready');
      await cluster.signal(leader, 'SIGKILL');
      for (let i = 100; i < 150; i++) await producer.append(`v${i}`);
      await eventually(async () => expect(tail.entries.length).toBe(150), 30_000);
      expect(tail.entries.map((e) => `${e.id}:${e.data}`)).toEqual(Array.from({ length: 150 }, (_, i) => `${i}:v${i}`));
      tail.stop();
      await tail.done;
    } finally {
      await client.close();
    }
  });

  it('tern tail prints entries appended after it started', async () => {
    const cluster = await startCluster();
    const urls = cluster.replicas.map((r) => r.clientUrl).join(',');
    const client = createClient(cluster.replicas.map((r) => r.clientUrl));
    try {
      await client.createLog('cli');
      await client.producer('cli', { lingerMs: 0 }).append('before');
      // Every replica knows 'before' is committed, so the end tern tail starts from is past it wherever it asks.
      for (const r of cluster.replicas) await eventually(async () => expect((await logStatus(r.clientUrl, 'cli')).committedId).toBe(0));
      const child = spawnTern(['tail', 'cli', '--json', '--cluster', urls]);
      let out = '';
      child.stdout.on('data', (d) => (out += d));
      try {
        // Wait until it follows (its default start is the end of the log), then append.
        const producer = client.producer('cli', { lingerMs: 0 });
        await eventually(async () => {
          await producer.append('after');
          expect(out).toContain('"text":"after"');
        }, 20_000, 500);
        expect(out).not.toContain('"text":"before"');
      } finally {
        child.kill('SIGINT');
        await stopChild(child, 'SIGKILL', 5_000);
      }
      expect(child.exitCode === 130 || child.signalCode !== null).toBe(true);
    } finally {
      await client.close();
    }
  });
});
