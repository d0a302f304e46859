/**
 * The failure detector (src/replica/failure-detector.ts) as a pure state
 * machine: when it probes a silent leader, what a probe's answer proves, and
 * which follower claims a log whose leader is dead or gone.
 */
import { describe, expect, it } from 'vitest';
import { FailureDetector, type DetectorConfig, type LeaderSeen } from '../../src/control/failure-detector.js';

const config: DetectorConfig = { self: 'r2', suspectTicks: 4, probeIntervalTicks: 2, orphanTicks: 10, fallbackTicks: 3 };
const r1: LeaderSeen = { id: 'r1', epoch: 3, incarnation: 'r1-a' };
/** Every replica computes the same order: r2 first here, so r2 claims at once and r3 later. */
const candidates = () => ['r1', 'r2', 'r3'];

function detector(over: Partial<DetectorConfig> = {}): FailureDetector {
  const d = new FailureDetector({ ...config, ...over });
  d.observe('log', r1, 3);
  return d;
}

function ticks(d: FailureDetector, n: number): void {
  for (let i = 0; i < n; i++) d.tick();
}

describe('heard since a mark (a draining follower asks whether its leader stays)', () => {
  it('is true only after a message from the log\'s own leader at its epoch or later, past the mark', () => {
    const d = detector();
    ticks(d, 2);
    const mark = d.nowTick;
    expect(d.heardSince('log', mark)).toBe(false);
    d.heard('log', 'r1', 3);
    expect(d.heardSince('log', mark)).toBe(false);
    d.tick();
    d.heard('log', 'r3', 3);
    d.heard('log', 'r1', 2);
    expect(d.heardSince('log', mark)).toBe(false);
    d.heard('log', 'r1', 3);
    expect(d.heardSince('log', mark)).toBe(true);
    expect(d.heardSince('other', mark)).toBe(false);
  });
});

describe('probing a silent leader', () => {
  it('probes once the leader has been silent for suspectTicks, not before', () => {
    const d = detector();
    ticks(d, 3);
    expect(d.ready(candidates).probes).toEqual([]);
    d.tick();
    expect(d.ready(candidates).probes).toEqual([{ replica: 'r1', incarnation: 'r1-a' }]);
  });

  it('a message from the leader resets the silence', () => {
    const d = detector();
    ticks(d, 3);
    d.heard('log', 'r1', 3);
    ticks(d, 3);
    expect(d.ready(candidates).probes).toEqual([]);
    d.tick();
    expect(d.ready(candidates).probes).toHaveLength(1);
  });

  it('a message from another replica (or an older epoch) does not', () => {
    const d = detector();
    ticks(d, 3);
    d.heard('log', 'r3', 4);
    d.heard('log', 'r1', 2);
    d.tick();
    expect(d.ready(candidates).probes).toHaveLength(1);
  });

  it('keeps one probe per replica in flight, for all the logs it leads', () => {
    const d = detector();
    d.observe('other', r1, 3);
    ticks(d, 4);
    expect(d.ready(candidates).probes).toHaveLength(1);
    ticks(d, 5);
    expect(d.ready(candidates).probes).toEqual([]); // still unanswered
  });

  it('probes a still-silent leader that answered again probeIntervalTicks after the last probe', () => {
    const d = detector();
    ticks(d, 4);
    d.ready(candidates);
    d.probed('r1', 'r1-a', { kind: 'answered', id: 'r1', incarnation: 'r1-a' });
    d.tick();
    expect(d.ready(candidates).probes).toEqual([]);
    d.tick();
    expect(d.ready(candidates).probes).toHaveLength(1);
  });

  it('probes every followed leader at once after a peer connection closed', () => {
    const d = detector();
    d.tick();
    expect(d.ready(candidates).probes).toEqual([]);
    d.connectionClosed();
    expect(d.ready(candidates).probes).toEqual([{ replica: 'r1', incarnation: 'r1-a' }]);
  });
});

describe('what a probe proves', () => {
  const cases = [
    { outcome: { kind: 'refused' } as const, dead: true, why: 'a refused connection: nothing listens there' },
    { outcome: { kind: 'answered', id: 'r1', incarnation: 'r1-b' } as const, dead: true, why: 'another incarnation: it restarted and forgot' },
    { outcome: { kind: 'answered', id: 'r1', incarnation: null } as const, dead: true, why: 'no incarnation yet: a new process still starting' },
    { outcome: { kind: 'answered', id: 'r9', incarnation: 'r1-a' } as const, dead: true, why: 'another replica on that port' },
    { outcome: { kind: 'answered', id: 'r1', incarnation: 'r1-a' } as const, dead: false, why: 'the same incarnation: alive (paused, busy or cut off from us only)' },
    { outcome: { kind: 'failed' } as const, dead: false, why: 'a timeout or reset: proves nothing' },
  ];
  for (const { outcome, dead, why } of cases) {
    it(`${dead ? 'dead' : 'not dead'} on ${why}`, () => {
      const d = detector();
      ticks(d, 4);
      d.ready(candidates);
      d.probed('r1', 'r1-a', outcome);
      expect(d.isDead('r1', 'r1-a')).toBe(dead);
      expect(d.isDead('r1', 'r1-b')).toBe(false); // a restarted r1 is not
      expect(d.ready(candidates).claims).toEqual(dead ? [{ log: 'log', expectedEpoch: 3, replacing: r1, firstChoice: 'r2' }] : []);
    });
  }

  it('ignores the answer to a probe of an incarnation it no longer asks about', () => {
    const d = detector();
    ticks(d, 4);
    d.ready(candidates);
    d.probed('r1', 'r1-old', { kind: 'refused' });
    expect(d.isDead('r1', 'r1-old')).toBe(false);
    expect(d.isDead('r1', 'r1-a')).toBe(false);
  });
});

describe('who claims a log whose leader is dead', () => {
  const killed = (over: Partial<DetectorConfig> = {}) => {
    const d = detector(over);
    ticks(d, 4);
    d.ready(candidates);
    d.probed('r1', 'r1-a', { kind: 'refused' });
    return d;
  };

  it('the first candidate other than the dead leader claims at once, replacing exactly its key', () => {
    expect(killed().ready(candidates).claims).toEqual([{ log: 'log', expectedEpoch: 3, replacing: r1, firstChoice: 'r2' }]);
  });

  it('another candidate claims fallbackTicks later, in case the first cannot', () => {
    const d = killed({ self: 'r3' });
    expect(d.ready(candidates).claims).toEqual([]);
    ticks(d, 2);
    expect(d.ready(candidates).claims).toEqual([]);
    d.tick();
    expect(d.ready(candidates).claims).toEqual([{ log: 'log', expectedEpoch: 3, replacing: r1, firstChoice: 'r2' }]);
  });

  it('a replica that is no candidate (known dead, or gave the log up for lost quorum) never claims', () => {
    const d = killed();
    ticks(d, 20);
    expect(d.ready(() => ['r1', 'r3']).claims).toEqual([]);
  });

  it('claims again every fallbackTicks while the dead leader still holds the key, and stops once another leader does', () => {
    const d = killed();
    expect(d.ready(candidates).claims).toHaveLength(1);
    ticks(d, 2);
    expect(d.ready(candidates).claims).toHaveLength(0);
    d.tick();
    expect(d.ready(candidates).claims).toHaveLength(1);
    d.observe('log', { id: 'r3', epoch: 4, incarnation: 'r3-a' }, 4);
    ticks(d, 3);
    expect(d.ready(candidates).claims).toEqual([]);
  });

  it('forgets a log it no longer follows (it leads it now, or the log is gone)', () => {
    const d = killed();
    d.forget('log');
    expect(d.ready(candidates)).toEqual({ probes: [], claims: [] });
  });
});

describe('a log without a leader key', () => {
  it('is claimed once orphanTicks have passed (the coordinator normally assigns it before), the first candidate first', () => {
    const d = new FailureDetector(config);
    d.observe('log', undefined, 5);
    ticks(d, 9);
    expect(d.ready(candidates).claims).toEqual([]);
    d.tick();
    // r1 comes first and nothing says it is unresponsive: r2 gives it fallbackTicks.
    expect(d.ready(candidates).claims).toEqual([]);
    ticks(d, 3);
    expect(d.ready(candidates).claims).toEqual([{ log: 'log', expectedEpoch: 5, replacing: undefined, firstChoice: 'r1' }]);
  });

  it('skips a candidate that did not answer its last probe (a cut-off leader that gave the log up)', () => {
    const d = new FailureDetector(config);
    d.observe('log', r1, 3);
    ticks(d, 4);
    d.ready(candidates);
    d.probed('r1', 'r1-a', { kind: 'failed' });
    expect(d.ready(candidates).claims).toEqual([]); // not dead: no claim over its key
    d.observe('log', undefined, 3); // it stepped down and released the key
    ticks(d, 10);
    expect(d.ready(candidates).claims).toEqual([{ log: 'log', expectedEpoch: 3, replacing: undefined, firstChoice: 'r2' }]);
  });
});
