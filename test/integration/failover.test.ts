import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import type { LocalCluster } from '../../src/cli/local-cluster.js';
import { appendRaw, createLog, eventually, http, readAll, replicaLogLines, clusterPerTest } from '../support/cluster.js';
import { checkLog, load } from '../support/load.js';

// A 2 s lease makes leader loss visible in about 2 s; the defaults are 5 s.
const FAST = ['--lease-ttl-seconds', '2', '--ack-timeout-ms', '1500', '--retransmit-ms', '200', '--heartbeat-ms', '100', '--backoff-ms', '100'];

// Appends acknowledged by a leader before it is crashed, and by its successor before load stops.
const ACKED_BEFORE_CRASH = 20;

const cluster = clusterPerTest(FAST);
const clusterAtDefaults = clusterPerTest();

async function leaderOf(c: LocalCluster, log: string, via = 0): Promise<string> {
  return (await http(`${c.replicas[via]!.clientUrl}/v1/logs/${log}`)).json().leader;
}


describe('leadership moves without losing an acknowledged append', () => {
  it('recovers every acknowledged append after the leader is SIGKILLed under load, and appends resume on a new leader', async () => {
    const c = await cluster();
    await createLog(c.replicas[0]!.clientUrl, 'crash');
    const oldLeader = await leaderOf(c, 'crash');
    const traffic = load(c, 'crash', 8);
    // The crash must hit a leader under load, holding acknowledged appends it has to recover.
    await eventually(async () => expect(traffic.acked.size).toBeGreaterThanOrEqual(ACKED_BEFORE_CRASH), 15_000);
    const killedAt = Date.now();
    await c.signal(oldLeader, 'SIGKILL');
    const survivor = c.replicas.findIndex((r) => r.id !== oldLeader);
    await eventually(async () => expect(await leaderOf(c, 'crash', survivor)).not.toBe(oldLeader), 15_000);
    // Load goes on until the new leader has acknowledged appends of its own.
    await eventually(async () => expect(traffic.ackTimes.filter((t) => t.epoch > 1).length).toBeGreaterThanOrEqual(ACKED_BEFORE_CRASH), 15_000);
    await traffic.stop();
    const firstAfter = traffic.ackTimes.find((t) => t.epoch > 1);
    expect(firstAfter, 'appends resumed on the new leader').toBeDefined();
    console.log(`leader SIGKILL -> first ack by the new leader: ${firstAfter!.at - killedAt} ms; ${traffic.acked.size} acked, ${traffic.failed.length} failed or unknown`);
    await c.restart(oldLeader);
    await checkLog(c, 'crash', traffic.acked);
    const status = (await http(`${c.replicas[survivor]!.clientUrl}/v1/logs/crash`)).json();
    expect(status.epoch).toBeGreaterThanOrEqual(2);
    expect(status.segments[0]).toMatchObject({ epoch: 1, sealed: true });
  });

  it('takes over from a SIGKILLed leader without waiting for its lease: first ack well within the default 5 s TTL', async () => {
    // Default settings: the dead leader's key and member key live on for up to 5 s.
    const c = await clusterAtDefaults();
    const { leader: dead } = await createLog(c.replicas[0]!.clientUrl, 'fast');
    expect((await appendRaw(c.replica(dead).clientUrl, 'fast', 'before')).status).toBe(200);
    const survivors = c.replicas.filter((r) => r.id !== dead);
    const killedAt = Date.now();
    await c.signal(dead, 'SIGKILL');
    let via = 0;
    const acked = await eventually(async () => {
      const res = await appendRaw(survivors[via++ % 2]!.clientUrl, 'fast', 'after', 1000);
      expect(res.status, res.body.toString()).toBe(200);
      return { at: Date.now(), ...res.json() };
    }, 10_000, 10);
    const elapsed = acked.at - killedAt;
    console.log(`default settings: leader SIGKILL -> first ack by the new leader: ${elapsed} ms`);
    expect(acked.epoch).toBeGreaterThan(1);
    expect(elapsed).toBeLessThan(3000);
    const status = (await http(`${survivors[0]!.clientUrl}/v1/logs/fast`)).json();
    expect(status.leader).not.toBe(dead);
    expect((await readAll(survivors[0]!.clientUrl, 'fast')).map((e) => e.data.toString())).toEqual(['before', 'after']);
  });

  it('hands leadership back and forth under load without losing, duplicating or reordering anything', async () => {
    const c = await cluster();
    await createLog(c.replicas[0]!.clientUrl, 'moves');
    const traffic = load(c, 'moves', 6);
    const pauses: number[] = [];
    // Each leader takes appends before it hands off: wait for an acknowledgement in its epoch.
    const ackedIn = (epoch: number) => eventually(async () => expect(traffic.ackTimes.some((t) => t.epoch === epoch), `an append acknowledged in epoch ${epoch}`).toBe(true), 10_000);
    let epoch = (await http(`${c.replicas[0]!.clientUrl}/v1/logs/moves`)).json().epoch as number;
    for (let i = 0; i < 6; i++) {
      await ackedIn(epoch);
      const from = await leaderOf(c, 'moves');
      const to = c.replicas.map((r) => r.id).find((id) => id !== from)!;
      const started = Date.now();
      const res = await http(`${c.replicas[i % 3]!.clientUrl}/v1/logs/moves/handoff`, { method: 'POST', contentType: 'application/json', body: JSON.stringify({ to }) });
      expect(res.status, res.body.toString()).toBe(200);
      expect(res.json().leader).toBe(to);
      pauses.push(Date.now() - started);
      epoch = res.json().epoch;
    }
    await ackedIn(epoch);
    await traffic.stop();
    console.log(`handoff pauses under load (ms): ${pauses.join(', ')}; ${traffic.acked.size} acked, ${traffic.failed.length} failed`);
    expect(traffic.acked.size).toBeGreaterThan(50);
    await checkLog(c, 'moves', traffic.acked);
  });

  it('keeps an entry held only by the old leader and a follower that then restarted empty (amnesia)', async () => {
    const c = await cluster();
    const { leader: a } = await createLog(c.replicas[0]!.clientUrl, 'amnesia');
    const [b, cc] = c.replicas.map((r) => r.id).filter((id) => id !== a);
    await c.signal(cc!, 'SIGSTOP'); // C misses the entry: only A and B hold it
    const res = await appendRaw(c.replica(a).clientUrl, 'amnesia', 'precious');
    expect(res.status).toBe(200);
    await c.signal(b!, 'SIGKILL'); // B forgets it
    await c.signal(cc!, 'SIGCONT');
    await c.restart(b!);
    // C's lease may have lapsed while it was stopped: the handoff waits until it is live again.
    await eventually(async () => {
      const moved = await http(`${c.replica(a).clientUrl}/v1/logs/amnesia/handoff`, { method: 'POST', contentType: 'application/json', body: JSON.stringify({ to: cc }) });
      expect(moved.status, moved.body.toString()).toBe(200);
      expect(moved.json().leader).toBe(cc);
    }, 15_000, 200);
    for (const r of c.replicas) {
      await eventually(async () => expect((await readAll(r.clientUrl, 'amnesia')).map((e) => e.data.toString())).toEqual(['precious']));
    }
  });

  it('counts a restarted follower again once caught up, so a later leader crash still recovers', async () => {
    const c = await cluster();
    const { leader } = await createLog(c.replicas[0]!.clientUrl, 'rejoin');
    const [b] = c.replicas.map((r) => r.id).filter((id) => id !== leader);
    const leaderUrl = c.replica(leader).clientUrl;
    const values: string[] = [];
    const append = async (v: string) => {
      const res = await appendRaw(leaderUrl, 'rejoin', v);
      expect(res.status, res.body.toString()).toBe(200);
      values.push(v);
    };
    for (let i = 0; i < 10; i++) await append(`before-${i}`);
    await c.signal(b!, 'SIGKILL');
    await c.restart(b!);
    for (let i = 0; i < 10; i++) await append(`after-${i}`);
    // The leader catches b up and records its new incarnation in the open segment (a pass every 300 ms).
    const { incarnation } = (await http(`${c.replica(b!).clientUrl}/healthz`)).json();
    await eventually(async () => {
      const open = (await http(`${leaderUrl}/v1/logs/rejoin`)).json().segments.at(-1);
      expect(open.replicas[b!]).toBe(incarnation);
    }, 10_000, 100);
    await c.signal(leader, 'SIGKILL');
    const via = c.replica(b!).clientUrl;
    try {
      await eventually(async () => expect((await appendRaw(via, 'rejoin', 'new-epoch')).status).toBe(200), 30_000, 200);
    } catch (err) {
      console.log(replicaLogLines(c, 'rejoin'));
      throw err;
    }
    values.push('new-epoch');
    await eventually(async () => expect((await readAll(via, 'rejoin')).map((e) => e.data.toString())).toEqual(values));
  });

  it('stays unavailable when the leader is dead and both others restarted empty, until the unsafe override', async () => {
    const c = await cluster();
    const { leader } = await createLog(c.replicas[0]!.clientUrl, 'lost');
    const others = c.replicas.map((r) => r.id).filter((id) => id !== leader);
    expect((await appendRaw(c.replica(leader).clientUrl, 'lost', 'acked')).status).toBe(200);
    await c.signal(leader, 'SIGKILL');
    for (const id of others) {
      await c.signal(id, 'SIGKILL');
      await c.restart(id);
    }
    const via = c.replica(others[0]!).clientUrl;
    // Not synchronisation: the point is that nothing decides over a stretch longer than the 2 s lease
    // plus a coordinator pass (lease expiry, assignment, fencing): there is no state that says "still
    // nothing", so the test lets that time pass and then checks the log is still refused.
    await sleep(3000);
    const refused = await appendRaw(via, 'lost', 'refused');
    expect(refused.status).toBe(503);
    expect(refused.headers['retry-after']).toBeDefined();
    expect(['NOT_READY', 'NO_QUORUM']).toContain(refused.json().error.code);

    const forced = await http(`${via}/v1/logs/lost/recover`, { method: 'POST', contentType: 'application/json', body: JSON.stringify({ acceptDataLoss: true }) });
    expect(forced.status, forced.body.toString()).toBe(200);
    expect(forced.json().warning).toMatch(/lost/);
    await eventually(async () => expect((await appendRaw(via, 'lost', 'after')).status).toBe(200), 10_000);
  });

  it('lets a paused (SIGSTOP) leader acknowledge nothing after a newer epoch fenced it', async () => {
    const c = await cluster();
    const { leader: stale } = await createLog(c.replicas[0]!.clientUrl, 'paused');
    const staleUrl = c.replica(stale).clientUrl;
    const other = c.replicas.find((r) => r.id !== stale)!;
    expect((await appendRaw(staleUrl, 'paused', 'before')).status).toBe(200);
    // One fault at a time: every replica must count for the log before the leader is paused. A
    // replica the new segment missed (its registration not yet seen by the creator) is recorded
    // only once caught up; pausing the leader before that left one counted answer, and the new
    // leader waited for a second one for good (the bare 503 one CI run saw ten seconds on).
    for (const r of c.replicas) await eventually(async () => expect((await http(`${r.clientUrl}/readyz`)).status).toBe(200), 10_000);
    await c.signal(stale, 'SIGSTOP');
    // These wait in the paused leader's socket; it sees them only after it is fenced.
    const late = Array.from({ length: 5 }, (_, i) => appendRaw(staleUrl, 'paused', `late-${i}`, 20_000).catch(() => undefined));
    // A new leader, not merely the stale one's key gone (that reads as null).
    await eventually(async () => expect([stale, null]).not.toContain(await leaderOf(c, 'paused', c.replicas.indexOf(other))), 15_000);
    // The new leader takes appends once it has recovered (503 NOT_READY until then).
    await eventually(async () => {
      const res = await appendRaw(other.clientUrl, 'paused', 'new-leader');
      expect(res.status, res.body.toString()).toBe(200);
    }, 10_000);
    await c.signal(stale, 'SIGCONT');
    const answers = await Promise.all(late);
    const entries = await eventually(async () => {
      const all = (await readAll(other.clientUrl, 'paused')).map((e) => e.data.toString());
      expect(all).toContain('new-leader');
      return all;
    });
    for (const [i, res] of answers.entries()) {
      if (res?.status === 200) expect(entries[res.json().id]).toBe(`late-${i}`);
      else if (res) expect([409, 503]).toContain(res.status);
    }
    // Once awake it takes no new appends as leader of the old epoch: they go to the new leader or fail.
    const after = await appendRaw(staleUrl, 'paused', 'after-wake');
    if (after.status === 200) expect(after.json().epoch).toBeGreaterThan(1);
    for (const r of c.replicas) {
      await eventually(async () => expect((await readAll(r.clientUrl, 'paused')).map((e) => e.data.toString()).slice(0, entries.length)).toEqual(entries));
    }
  });
});
