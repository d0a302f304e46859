/**
 * The pure placement rules: who leads a leaderless log, who a stopping
 * leader hands a log to, when a restarted replica counts again.
 */
import { describe, expect, it } from 'vitest';
import { caughtUpReplicas, handoffTargets, leaderCandidates, leaderlessAssignments, leadershipCounts, type PlacedLog, type PlacementView, type Rejoining } from '../../src/control/placement.js';

const log = (name: string, over: Partial<PlacedLog> = {}): PlacedLog => ({ name, replicas: ['a', 'b', 'c'], epoch: 2, leader: undefined, segments: [{ epoch: 2, firstId: 0, lastId: null, replicas: { a: 'a1', b: 'b1', c: 'c1' } }], createdAtMs: 0, ...over });

function viewOf(live: Record<string, string>, blocked: string[] = []): PlacementView {
  return { mayLead: (id) => live[id] !== undefined && !blocked.includes(id), incarnationOf: (id) => live[id] };
}

describe('placement', () => {
  const all = { a: 'a1', b: 'b1', c: 'c1' };

  it('orders candidates by fewest leaderships, then id, and skips those that may not lead', () => {
    const logs = [log('x', { leader: 'a' }), log('y', { leader: 'a' }), log('z', { leader: 'b' })];
    expect(leaderCandidates(log('w'), viewOf(all), leadershipCounts(logs))).toEqual(['c', 'b', 'a']);
    expect(leaderCandidates(log('w'), viewOf(all, ['c']), leadershipCounts(logs))).toEqual(['b', 'a']);
  });

  it('spreads a pass of orphaned logs over the replicas, skipping led, assigning and newly created logs', () => {
    const logs = [log('l1'), log('l2'), log('l3'), log('led', { leader: 'a' }), log('busy'), log('new', { segments: [], createdAtMs: 9_000 })];
    const out = leaderlessAssignments(logs, viewOf(all), { nowMs: 10_000, creationGraceMs: 5_000, assigning: new Set(['busy']) });
    expect(out).toEqual([
      { log: 'l1', candidate: 'b', expectedEpoch: 2 },
      { log: 'l2', candidate: 'c', expectedEpoch: 2 },
      { log: 'l3', candidate: 'a', expectedEpoch: 2 },
    ]);
  });

  it('hands off only to replicas the open segment of this epoch counts, rotated by spread', () => {
    const l = log('x', { leader: 'a' });
    expect(handoffTargets(l, 'a', 2, viewOf(all), new Map(), 0)).toEqual(['b', 'c']);
    expect(handoffTargets(l, 'a', 2, viewOf(all), new Map(), 1)).toEqual(['c', 'b']);
    // c restarted (new incarnation): its memory cannot recover the segment.
    expect(handoffTargets(l, 'a', 2, viewOf({ ...all, c: 'c2' }), new Map(), 1)).toEqual(['b']);
    expect(handoffTargets(l, 'a', 3, viewOf(all), new Map(), 0)).toEqual([]);
  });

  it('counts a restarted replica again only once it holds what the leader held when it came back', () => {
    const open = { epoch: 2, firstId: 0, lastId: null, replicas: { a: 'a1', b: 'b1', c: 'c1' } };
    const rejoining = new Map<string, Rejoining>();
    let match = 5;
    const live = { a: 'a1', b: 'b1', c: 'c2' };
    expect(caughtUpReplicas(open, 'a', live, 20, () => match, rejoining)).toEqual({});
    expect(rejoining.get('c')).toEqual({ incarnation: 'c2', throughId: 20 });
    expect(caughtUpReplicas(open, 'a', live, 30, () => match, rejoining)).toEqual({});
    match = 20;
    expect(caughtUpReplicas(open, 'a', live, 30, () => match, rejoining)).toEqual({ c: 'c2' });
    expect(rejoining.size).toBe(0);
  });
});
