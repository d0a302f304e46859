import { describe, expect, it } from 'vitest';
import type { LocalCluster } from '../../src/cli/local-cluster.js';
import { ENTRY_OVERHEAD_BYTES } from '../../src/quorum/entry-buffer.js';
import { appendRaw, createLog, eventually, readAll, clusterPerTest } from '../support/cluster.js';

// Short protocol timeouts keep the "two replicas down" case quick; the defaults are a few seconds.
const FAST = ['--ack-timeout-ms', '1000', '--retransmit-ms', '200', '--heartbeat-ms', '100', '--backoff-ms', '100'];

const cluster = clusterPerTest(FAST);

/** The replicas of `log` other than its leader. */
function followersOf(c: LocalCluster, leader: string): string[] {
  return c.replicas.map((r) => r.id).filter((id) => id !== leader);
}

describe('replica failures', () => {
  it('keeps acknowledging with one follower SIGKILLed, and the restarted follower catches up without gaps', async () => {
    const c = await cluster();
    const { leader } = await createLog(c.replicas[0]!.clientUrl, 'survive');
    const leaderUrl = c.replica(leader).clientUrl;
    const [victim, other] = followersOf(c, leader);
    const appended: string[] = [];
    const append = async (n: number, via: string[]) => {
      for (let i = 0; i < n; i++) {
        const value = `v${appended.length}`;
        const res = await appendRaw(via[i % via.length]!, 'survive', value);
        expect(res.status, res.body.toString()).toBe(200);
        expect(res.json().id).toBe(appended.length);
        appended.push(value);
      }
    };
    await append(50, [leaderUrl]);
    await c.signal(victim!, 'SIGKILL');
    // Through the leader and through the surviving follower (forwarded), with one replica dead.
    await append(100, [leaderUrl, c.replica(other!).clientUrl]);
    await c.restart(victim!);
    await append(20, [c.replica(victim!).clientUrl]);
    for (const r of c.replicas) {
      await eventually(async () => {
        const entries = await readAll(r.clientUrl, 'survive');
        expect(entries.map((e) => e.data.toString())).toEqual(appended);
        expect(entries.map((e) => e.id)).toEqual(appended.map((_, i) => i));
      });
    }
  });

  it('never reports success with two replicas down: 503 with Retry-After within the ack timeout', async () => {
    const c = await cluster();
    const { leader } = await createLog(c.replicas[0]!.clientUrl, 'doomed');
    const leaderUrl = c.replica(leader).clientUrl;
    expect((await appendRaw(leaderUrl, 'doomed', 'before')).status).toBe(200);
    for (const id of followersOf(c, leader)) await c.signal(id, 'SIGKILL');

    const started = Date.now();
    const answers = await Promise.all(Array.from({ length: 5 }, (_, i) => appendRaw(leaderUrl, 'doomed', `during-${i}`)));
    const elapsed = Date.now() - started;
    for (const res of answers) {
      expect(res.status).toBe(503);
      expect(res.headers['retry-after']).toBeDefined();
      expect(['ACK_TIMEOUT', 'NO_QUORUM']).toContain(res.json().error.code);
    }
    expect(elapsed).toBeLessThan(5_000);
    // Once the leader has seen both followers silent for the ack timeout, it refuses at once, before assigning ids.
    const refused = await eventually(async () => {
      const res = await appendRaw(leaderUrl, 'doomed', 'refused');
      expect(res.json().error.code).toBe('NO_QUORUM');
      return res;
    });
    expect(refused.json().error.maybeApplied).toBe(false);
    // Nothing past the first entry is ever readable as committed.
    expect((await readAll(leaderUrl, 'doomed')).map((e) => e.data.toString())).toEqual(['before']);
  });

  it('catches up a follower that was paused (SIGSTOP) while appends went on', async () => {
    const c = await cluster();
    const { leader } = await createLog(c.replicas[0]!.clientUrl, 'paused');
    const leaderUrl = c.replica(leader).clientUrl;
    const [sleeper] = followersOf(c, leader);
    await c.signal(sleeper!, 'SIGSTOP');
    const values = Array.from({ length: 60 }, (_, i) => `p${i}`);
    try {
      for (const [i, v] of values.entries()) {
        const res = await appendRaw(leaderUrl, 'paused', v);
        expect(res.status, res.body.toString()).toBe(200);
        expect(res.json().id).toBe(i);
      }
    } finally {
      await c.signal(sleeper!, 'SIGCONT');
    }
    await eventually(async () => {
      expect((await readAll(c.replica(sleeper!).clientUrl, 'paused')).map((e) => e.data.toString())).toEqual(values);
    });
  });

  it('refuses appends with 503 BUFFER_FULL once the memory bound is reached, and keeps serving reads', async () => {
    // Without an object store nothing is ever released, so the bound is reached and stays.
    const maxBufferBytes = 64 * 1024;
    const c = await cluster(['--max-buffer-bytes', String(maxBufferBytes)], { objectStore: false });
    const { leader } = await createLog(c.replicas[0]!.clientUrl, 'bounded');
    const leaderUrl = c.replica(leader).clientUrl;
    const entry = Buffer.alloc(4096, 1);
    let accepted = 0;
    let refused;
    for (let i = 0; i < 40 && !refused; i++) {
      const res = await appendRaw(leaderUrl, 'bounded', entry);
      if (res.status === 200) accepted++;
      else refused = res;
    }
    // Each entry counts its bytes and the per-entry overhead against the bound.
    expect(accepted).toBe(Math.floor(maxBufferBytes / (entry.length + ENTRY_OVERHEAD_BYTES)));
    expect(refused?.status).toBe(503);
    expect(refused?.headers['retry-after']).toBeDefined();
    expect(refused?.json().error).toMatchObject({ code: 'BUFFER_FULL' });
    const entries = await readAll(leaderUrl, 'bounded');
    expect(entries.length).toBe(accepted);
  });
});
