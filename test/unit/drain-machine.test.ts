/**
 * The drain machine (handoff and one log of a controlled shutdown) and the
 * pure placement rules: who leads a leaderless log, who a stopping leader
 * hands a log to, when a restarted replica counts again.
 */
import { describe, expect, it } from 'vitest';
import { DrainMachine, type DrainSettings } from '../../src/control/drain.js';
import { caughtUpReplicas, handoffTargets, leaderCandidates, leaderlessAssignments, leadershipCounts, type PlacedLog, type PlacementView, type Rejoining } from '../../src/control/placement.js';

const drainSettings = (over: Partial<DrainSettings> = {}): DrainSettings => ({ epoch: 3, targets: ['b', 'c'], closeWhenRefused: true, roundsTimeoutTicks: 4, ...over });
const busy = { pending: 2, deposed: false, commitId: 9 };
const idle = { pending: 0, deposed: false, commitId: 10 };

describe('DrainMachine', () => {
  it('waits for the rounds in flight, then offers the log to the first target', () => {
    const m = new DrainMachine(drainSettings(), busy, 10);
    expect(m.effects()).toEqual([]);
    m.step({ kind: 'leader', leader: idle });
    expect(m.effects()).toEqual([{ kind: 'handoff', to: 'b', expectedEpoch: 3 }]);
    m.step({ kind: 'handoffAnswer', to: 'b', ok: true });
    expect(m.effects()).toEqual([{ kind: 'done', outcome: { kind: 'handedOff', to: 'b' } }]);
  });

  it('stops waiting for rounds after the timeout', () => {
    const m = new DrainMachine(drainSettings(), busy, 10);
    for (let i = 0; i < 3; i++) m.step({ kind: 'tick' });
    expect(m.effects()).toEqual([]);
    m.step({ kind: 'tick' });
    expect(m.effects()).toEqual([{ kind: 'handoff', to: 'b', expectedEpoch: 3 }]);
  });

  it('tries the next target after a refusal, and closes clean once object storage holds the commit point', () => {
    const m = new DrainMachine(drainSettings(), idle, 8);
    m.effects();
    m.step({ kind: 'handoffAnswer', to: 'c', ok: true }); // not the one asked: ignored
    expect(m.effects()).toEqual([]);
    m.step({ kind: 'handoffAnswer', to: 'b', ok: false, reason: 'busy' });
    expect(m.effects()).toEqual([{ kind: 'handoff', to: 'c', expectedEpoch: 3 }]);
    m.step({ kind: 'handoffAnswer', to: 'c', ok: false });
    expect(m.effects()).toEqual([]);
    m.step({ kind: 'flushed', flushedId: 9 });
    expect(m.effects()).toEqual([]);
    m.step({ kind: 'flushed', flushedId: 10 });
    expect(m.effects()).toEqual([{ kind: 'closeClean', epoch: 3, lastId: 10 }]);
    m.step({ kind: 'closed', ok: true });
    expect(m.effects()).toEqual([{ kind: 'stepDown' }, { kind: 'done', outcome: { kind: 'closedClean', lastId: 10 } }]);
  });

  it('a handoff that is refused leaves the log led, saying why', () => {
    const m = new DrainMachine(drainSettings({ targets: ['b'], closeWhenRefused: false }), idle, 0);
    m.effects();
    m.step({ kind: 'handoffAnswer', to: 'b', ok: false, reason: 'not live' });
    expect(m.effects()).toEqual([{ kind: 'done', outcome: { kind: 'refused', reason: 'handoff to b failed: not live' } }]);
  });

  it('a leader fenced meanwhile reports the log lost, or unfinished while flushing', () => {
    const lost = new DrainMachine(drainSettings(), { ...busy, deposed: true }, 0);
    expect(lost.effects()).toEqual([{ kind: 'done', outcome: { kind: 'lost' } }]);
    const flushing = new DrainMachine(drainSettings({ targets: [] }), idle, 0);
    expect(flushing.effects()).toEqual([]);
    flushing.step({ kind: 'leader', leader: { ...idle, deposed: true } });
    expect(flushing.effects()).toEqual([{ kind: 'done', outcome: { kind: 'unfinished', reason: 'fenced at epoch 3 while flushing' } }]);
  });

  it('a close refused by etcd is unfinished, and the leader is not stepped down by the machine', () => {
    const m = new DrainMachine(drainSettings({ targets: [] }), idle, 10);
    expect(m.effects()).toEqual([{ kind: 'closeClean', epoch: 3, lastId: 10 }]);
    m.step({ kind: 'closed', ok: false, reason: 'lost epoch 3 before closing' });
    expect(m.effects()).toEqual([{ kind: 'done', outcome: { kind: 'unfinished', reason: 'lost epoch 3 before closing' } }]);
  });
});

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
