/**
 * The takeover machine, step by step: what it asks for (claim, fence, fetch,
 * lead, seal) after each event, and how it fails. Pure: no etcd, no peers.
 */
import { describe, expect, it } from 'vitest';
import { TakeoverMachine, type LogView, type TakeoverEffect, type TakeoverSettings } from '../../src/control/takeover.js';
import { LogReplica } from '../../src/quorum/log-replica.js';
import type { FenceAnswer, SegmentView } from '../../src/quorum/recovery.js';

const settings: TakeoverSettings = { self: 'a', incarnation: 'a1', undecidedRetryTicks: 5, fenceTimeoutTicks: 10, holdTicks: 20 };
const live = { a: 'a1', b: 'b1', c: 'c1' };
const open4: SegmentView = { epoch: 4, firstId: 0, lastId: null, replicas: live };

function view(over: Partial<LogView> = {}): LogView {
  return { replicas: ['a', 'b', 'c'], epoch: 5, leader: { id: 'a', epoch: 5 }, segments: [open4], flushedId: -1, live, ...over };
}

function memory(lastId: number, epoch = 4): LogReplica {
  const replica = new LogReplica('log', { bytes: 0 });
  if (lastId >= 0) replica.adopt({ firstId: 0, epoch, entries: Array.from({ length: lastId + 1 }, (_, i) => Buffer.from(`e${i}`)) });
  return replica;
}

function answer(replica: string, incarnation: string, lastId: number, epoch = 4): FenceAnswer {
  return { replica, incarnation, startId: 0, lastId, runs: lastId >= 0 ? [{ firstId: 0, epoch }] : [] };
}

const kinds = (effects: TakeoverEffect[]) => effects.map((e) => e.kind);

/** A machine that has claimed epoch 5 and read the view: it is fencing b and c in round 1. */
function fencing(replica: LogReplica, over: Partial<LogView> = {}, unsafe = false): TakeoverMachine {
  const m = new TakeoverMachine(settings, replica, { expectedEpoch: 4, unsafe });
  expect(m.effects()).toEqual([{ kind: 'claim', expectedEpoch: 4 }]);
  m.step({ kind: 'claimed', epoch: 5 });
  // Read from etcd itself after the claim: the watched view may lag what the previous leader wrote.
  expect(m.effects()).toEqual([{ kind: 'stepDown' }, { kind: 'read', fresh: true }]);
  m.step({ kind: 'read', view: view(over) });
  return m;
}

describe('TakeoverMachine', () => {
  it('fences, fetches the longest counted tail, leads until it commits, then seals at it', () => {
    const replica = memory(4);
    const m = fencing(replica);
    expect(m.effects()).toEqual([
      { kind: 'fence', to: 'b', epoch: 5, round: 1 },
      { kind: 'fence', to: 'c', epoch: 5, round: 1 },
    ]);
    m.step({ kind: 'fenceAnswer', round: 1, answer: answer('b', 'b1', 6) });
    // a and b count: the highest of them (6) is safe without waiting for c.
    expect(m.effects()).toEqual([{ kind: 'fetch', from: 'b', fromId: 5, toId: 6 }]);
    m.step({ kind: 'fetched', runs: [{ firstId: 5, epoch: 4, entries: [Buffer.from('e5'), Buffer.from('e6')] }] });
    expect(m.effects()).toEqual([{ kind: 'lead', epoch: 5, peers: ['b', 'c'] }]);
    expect(replica.buffer.lastId).toBe(6);
    m.step({ kind: 'leaderProgress', deposed: false });
    expect(m.effects()).toEqual([]);
    replica.commitId = 6;
    m.step({ kind: 'leaderProgress', deposed: false });
    expect(m.effects()).toEqual([{ kind: 'read', fresh: false }]);
    m.step({ kind: 'read', view: view({ live: { a: 'a1', b: 'b1' } }) });
    expect(m.effects()).toEqual([
      { kind: 'seal', epoch: 5, seals: [{ ...open4, lastId: 6 }], open: { epoch: 5, firstId: 7, lastId: null, replicas: { a: 'a1', b: 'b1' } } },
    ]);
    m.step({ kind: 'sealed', ok: true });
    expect(m.effects()).toEqual([{ kind: 'done', epoch: 5, recoveredId: 6, sealed: [{ ...open4, lastId: 6 }] }]);
    expect(m.isOver).toBe(true);
  });

  it('discards its own tail past the end the counted answers decide', () => {
    const replica = memory(9, 3);
    // Ids 0..9 of epoch 3, but the open segment is epoch 4 from id 5: ids 5..9 are invalid here.
    const m = fencing(replica, { segments: [{ epoch: 3, firstId: 0, lastId: 4, replicas: live }, { ...open4, firstId: 5 }] });
    m.effects();
    m.step({ kind: 'fenceAnswer', round: 1, answer: { replica: 'b', incarnation: 'b1', startId: 0, lastId: 4, runs: [{ firstId: 0, epoch: 3 }] } });
    expect(kinds(m.effects())).toEqual(['lead']);
    expect(replica.buffer.lastId).toBe(4);
  });

  it('does not count a restarted replica: it blocks, says why, and fences again after the retry ticks', () => {
    const m = fencing(memory(2));
    m.effects();
    m.step({ kind: 'fenceAnswer', round: 1, answer: answer('b', 'b2', -1) });
    m.step({ kind: 'fenceFailed', round: 1, from: 'c' });
    const [blocked] = m.effects();
    expect(blocked).toMatchObject({ kind: 'blocked' });
    expect(m.blockedBy).toContain('b restarted');
    for (let i = 0; i < 4; i++) m.step({ kind: 'tick' });
    expect(m.effects()).toEqual([]);
    m.step({ kind: 'tick' });
    expect(m.effects()).toEqual([{ kind: 'read', fresh: false }]);
    m.step({ kind: 'read', view: view() });
    expect(m.effects()).toEqual([
      { kind: 'fence', to: 'b', epoch: 5, round: 2 },
      { kind: 'fence', to: 'c', epoch: 5, round: 2 },
    ]);
    // A late answer of round 1 is ignored; round 2's counts.
    m.step({ kind: 'fenceAnswer', round: 1, answer: answer('c', 'c1', 2) });
    expect(m.effects()).toEqual([]);
    m.step({ kind: 'fenceAnswer', round: 2, answer: answer('c', 'c1', 2) });
    expect(kinds(m.effects())).toEqual(['lead']);
  });

  it('gives up when the epoch moved on while it waited to decide', () => {
    const m = fencing(memory(2));
    m.effects();
    m.step({ kind: 'fenceFailed', round: 1, from: 'b' });
    m.step({ kind: 'fenceFailed', round: 1, from: 'c' });
    m.effects();
    for (let i = 0; i < 5; i++) m.step({ kind: 'tick' });
    m.effects();
    m.step({ kind: 'read', view: view({ epoch: 6, leader: { id: 'b', epoch: 6 } }) });
    expect(m.effects()).toEqual([{ kind: 'stepDown' }, { kind: 'release', epoch: 5 }, { kind: 'failed', reason: 'epoch 5 moved on during recovery' }]);
  });

  it('times a silent peer out after the fence timeout', () => {
    const m = fencing(memory(2));
    m.effects();
    m.step({ kind: 'fenceAnswer', round: 1, answer: answer('b', 'b2', -1) });
    for (let i = 0; i < 9; i++) m.step({ kind: 'tick' });
    expect(m.effects()).toEqual([]);
    m.step({ kind: 'tick' });
    expect(kinds(m.effects())).toEqual(['blocked']);
  });

  it('unsafe: waits for every answer, then recovers from what it has, with a warning', () => {
    const m = fencing(memory(2), {}, true);
    m.effects();
    m.step({ kind: 'fenceAnswer', round: 1, answer: answer('b', 'b2', 3) });
    expect(m.effects()).toEqual([]);
    m.step({ kind: 'fenceFailed', round: 1, from: 'c' });
    expect(m.effects()).toEqual([{ kind: 'fetch', from: 'b', fromId: 3, toId: 3 }]);
  });

  it('an operator override turns a blocked recovery unsafe while it fences', () => {
    const m = fencing(memory(2));
    m.effects();
    m.step({ kind: 'fenceAnswer', round: 1, answer: answer('b', 'b2', -1) });
    m.step({ kind: 'unsafe' });
    expect(m.effects()).toEqual([]);
    m.step({ kind: 'fenceFailed', round: 1, from: 'c' });
    expect(kinds(m.effects())).toEqual(['lead']);
  });

  it('recovers a segment closed clean without fencing', () => {
    const closed: SegmentView = { ...open4, lastId: 7, closedClean: true };
    const m = fencing(memory(-1), { segments: [closed], flushedId: 7 });
    // Object storage holds everything through 7: committed at once, so it goes straight on to seal.
    expect(m.effects()).toEqual([{ kind: 'lead', epoch: 5, peers: ['b', 'c'] }, { kind: 'read', fresh: false }]);
  });

  it('fails a closed-clean recovery whose objects etcd does not show', () => {
    const closed: SegmentView = { ...open4, lastId: 7, closedClean: true };
    const m = fencing(memory(-1), { segments: [closed], flushedId: 5 });
    expect(kinds(m.effects())).toEqual(['stepDown', 'release', 'failed']);
  });

  it('a refused claim fails without releasing anything', () => {
    const m = new TakeoverMachine(settings, memory(-1), { expectedEpoch: 4, replacing: 'key', unsafe: false });
    expect(m.effects()).toEqual([{ kind: 'claim', expectedEpoch: 4, replacing: 'key' }]);
    m.step({ kind: 'claimed', epoch: undefined });
    expect(kinds(m.effects())).toEqual(['failed']);
  });

  it('a claim whose answer was lost gives back the key it may have written', () => {
    const m = new TakeoverMachine(settings, memory(-1), { expectedEpoch: 4, unsafe: false });
    m.effects();
    m.step({ kind: 'ioFailed', reason: 'etcd answer lost' });
    expect(m.effects()).toEqual([{ kind: 'release', epoch: 5 }, { kind: 'failed', reason: 'etcd answer lost' }]);
  });

  it('fails, stepping down and releasing the key, when no quorum takes the tail in time or the leader is deposed', () => {
    for (const cause of ['deadline', 'deposed'] as const) {
      const replica = memory(2);
      const m = fencing(replica);
      m.effects();
      m.step({ kind: 'fenceAnswer', round: 1, answer: answer('b', 'b1', 2) });
      expect(kinds(m.effects())).toEqual(['lead']);
      if (cause === 'deposed') m.step({ kind: 'leaderProgress', deposed: true });
      else for (let i = 0; i <= settings.holdTicks; i++) m.step({ kind: 'tick' });
      expect(m.effects()).toEqual([{ kind: 'stepDown' }, { kind: 'release', epoch: 5 }, { kind: 'failed', reason: 'no quorum took the recovered tail up to 2' }]);
    }
  });

  it('a seal refused by etcd (epoch lost) fails the takeover', () => {
    const replica = memory(-1);
    const m = fencing(replica, { segments: [] });
    expect(kinds(m.effects())).toEqual(['lead', 'read']);
    m.step({ kind: 'read', view: view({ segments: [] }) });
    expect(m.effects()).toEqual([{ kind: 'seal', epoch: 5, seals: [], open: { epoch: 5, firstId: 0, lastId: null, replicas: live } }]);
    m.step({ kind: 'sealed', ok: false });
    expect(kinds(m.effects())).toEqual(['stepDown', 'release', 'failed']);
  });
});
