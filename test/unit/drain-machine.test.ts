/**
 * The drain machine: a handoff, and one log of a controlled shutdown, event
 * by event.
 */
import { describe, expect, it } from 'vitest';
import { DrainMachine, type DrainSettings } from '../../src/control/drain.js';

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
