import { afterEach, describe, expect, it } from 'vitest';
import type { LocalCluster } from '../../src/cli/local-cluster.js';
import { appendRaw, createLog, eventually, readAll, startTestCluster } from '../support/cluster.js';

// Short protocol timeouts keep the "two replicas down" case quick; the defaults are a few seconds.
const FAST = ['--ack-timeout-ms', '1000', '--retransmit-ms', '200', '--heartbeat-ms', '100', '--backoff-ms', '100'];

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
});
