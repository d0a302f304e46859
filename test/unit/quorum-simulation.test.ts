/**
 * Property tests of the pure protocol: random interleavings of proposals,
 * ticks, message loss, duplication, reordering and follower restarts, then a
 * healing phase. fast-check prints the seed and path of any failure:
 * QSEED=<seed> QPATH=<path> npx vitest run test/unit/quorum-simulation.test.ts
 * replays it exactly.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { QuorumNet } from '../support/quorum-net.js';

type Step =
  | { op: 'propose'; count: number }
  | { op: 'pump' }
  | { op: 'deliver'; pick: number }
  | { op: 'drop'; pick: number }
  | { op: 'duplicate'; pick: number }
  | { op: 'tick' }
  | { op: 'restart'; who: 'r2' | 'r3' };

const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ op: fc.constant('propose' as const), count: fc.integer({ min: 1, max: 3 }) }) },
  { weight: 3, arbitrary: fc.constant({ op: 'pump' as const }) },
  { weight: 6, arbitrary: fc.record({ op: fc.constant('deliver' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('drop' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('duplicate' as const), pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.constant({ op: 'tick' as const }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('restart' as const), who: fc.constantFrom('r2' as const, 'r3' as const) }) },
);

describe('replication under random faults', () => {
  it('never acks an entry held by fewer than two replicas, never reuses an id, and converges after healing', () => {
    fc.assert(
      fc.property(fc.array(step, { maxLength: 150 }), (steps) => {
        const net = new QuorumNet({ ackTimeoutTicks: 1_000_000 });
        const proposed = new Map<number, { firstId: number; lastId: number; values: string[] }>();
        let token = 0;
        let nextId = 0;
        for (const s of steps) {
          switch (s.op) {
            case 'propose': {
              const values = Array.from({ length: s.count }, (_, i) => `t${token}.${i}`);
              const r = net.leader.propose(values.map((v) => Buffer.from(v)), token);
              if (r.ok) {
                // Ids are dense and increase in proposal order: never two entries with one id.
                expect(r.firstId).toBe(nextId);
                expect(r.lastId).toBe(nextId + s.count - 1);
                nextId += s.count;
                proposed.set(token, { firstId: r.firstId, lastId: r.lastId, values });
              }
              token++;
              break;
            }
            case 'pump':
              net.pump();
              break;
            case 'deliver':
              if (net.inFlight.length) net.deliver(s.pick % net.inFlight.length);
              break;
            case 'drop':
              if (net.inFlight.length) net.drop(s.pick % net.inFlight.length);
              break;
            case 'duplicate':
              if (net.inFlight.length) net.inFlight.push({ ...net.inFlight[s.pick % net.inFlight.length]! });
              break;
            case 'tick':
              net.leader.tick();
              break;
            case 'restart':
              // A restarted follower forgets its memory; its old acks must not have been the only copy.
              net.restartFollower(s.who);
              break;
          }
        }
        // Safety at ack time: every acked proposal was held by at least two replicas.
        for (const snap of net.ackSnapshots) expect(snap.holders).toBeGreaterThanOrEqual(2);

        // Healing: a perfect network and time. Everything proposed gets acked, replicas agree.
        net.settle(60);
        const leaderLog = net.contents(net.leaderReplica);
        expect(leaderLog).toEqual([...proposed.values()].flatMap((p) => p.values));
        expect(net.acked.map((a) => a.token).sort((a, b) => a - b)).toEqual([...proposed.keys()]);
        for (const a of net.acked) expect(a).toMatchObject({ firstId: proposed.get(a.token)!.firstId, lastId: proposed.get(a.token)!.lastId });
        for (const f of net.followers.values()) {
          expect(net.contents(f)).toEqual(leaderLog);
          expect(f.commitId).toBe(leaderLog.length - 1);
        }
        expect(net.failed).toEqual([]);
      }),
      { numRuns: 400, ...(process.env.QSEED ? { seed: Number(process.env.QSEED), path: process.env.QPATH, endOnFailure: true } : {}) },
    );
  });

  it('keeps what followers hold a gapless prefix of the leader, at every step', () => {
    fc.assert(
      fc.property(fc.array(step, { maxLength: 120 }), (steps) => {
        const net = new QuorumNet({ ackTimeoutTicks: 1_000_000 });
        let token = 0;
        for (const s of steps) {
          if (s.op === 'propose') net.leader.propose([Buffer.from(`v${token}`)], token++);
          else if (s.op === 'pump') net.pump();
          else if (s.op === 'deliver' && net.inFlight.length) net.deliver(s.pick % net.inFlight.length);
          else if (s.op === 'drop' && net.inFlight.length) net.drop(s.pick % net.inFlight.length);
          else if (s.op === 'tick') net.leader.tick();
          else if (s.op === 'restart') net.restartFollower(s.who);
          const leaderLog = net.contents(net.leaderReplica);
          for (const f of net.followers.values()) {
            const held = net.contents(f);
            expect(held).toEqual(leaderLog.slice(0, held.length));
            // The pair rule (log-replica.ts): a follower's commit point is what it and the leader hold.
            expect(f.commitId).toBeLessThanOrEqual(Math.min(f.buffer.lastId, net.leaderReplica.buffer.lastId));
          }
        }
      }),
      { numRuns: 400 },
    );
  });
});
