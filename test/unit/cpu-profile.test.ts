import { describe, expect, it } from 'vitest';
import { UNATTRIBUTED, componentShares, flameTree, frameLabel, selfTimes, type CpuProfile } from '../../bench/lib/cpu-profile.js';
import { flameSvg } from '../../bench/lib/flame-svg.js';

const DIST = 'file:///work/tern/dist';

/**
 * A profile of six samples, each lasting until the next (the last until endTime):
 *   t=100 idle (100 µs), t=200 writev under sendAppend (200), t=400 writev (100),
 *   t=500 the client handler itself (100), t=600 GC (300), t=900 a Node.js internal (100).
 */
function profile(): CpuProfile {
  const frame = (functionName: string, url = '', lineNumber = -1) => ({ functionName, url, lineNumber });
  return {
    nodes: [
      { id: 1, callFrame: frame('(root)'), children: [2, 3, 4, 7] },
      { id: 2, callFrame: frame('(idle)') },
      { id: 3, callFrame: frame('(garbage collector)') },
      { id: 4, callFrame: frame('handler', `${DIST}/src/http/client-api.js`, 41), children: [5] },
      { id: 5, callFrame: frame('sendAppend', `${DIST}/src/peer/transport.js`, 9), children: [6] },
      { id: 6, callFrame: frame('writev') },
      { id: 7, callFrame: frame('listOnTimeout', 'node:internal/timers', 500) },
    ],
    startTime: 0,
    endTime: 1000,
    samples: [2, 6, 6, 4, 3, 7],
    timeDeltas: [100, 100, 200, 100, 100, 300],
  };
}

const shareMap = (shares: { name: string; us: number }[]) => Object.fromEntries(shares.map((s) => [s.name, s.us]));

describe('CPU profile components', () => {
  it('charges native leaves to the Tern code that called them, pseudo-frames to themselves', () => {
    const shares = componentShares(profile());
    expect(shareMap(shares)).toEqual({
      '(idle)': 100,
      'replication sends': 300,
      'client API handlers': 100,
      '(garbage collector)': 300,
      [UNATTRIBUTED]: 100,
    });
    expect(shares.reduce((a, s) => a + s.pct, 0)).toBeCloseTo(100, 6);
    expect(shares[0]!.us).toBeGreaterThanOrEqual(shares[shares.length - 1]!.us);
  });

  it('counts only the measured window, splitting samples that straddle its ends', () => {
    // [350, 650): 50 µs of the first writev sample, 100 of the second, the handler's 100, 50 of GC.
    const shares = componentShares(profile(), { fromUs: 350, toUs: 650 });
    expect(shareMap(shares)).toEqual({ 'replication sends': 150, 'client API handlers': 100, '(garbage collector)': 50 });
    expect(shares.find((s) => s.name === 'client API handlers')!.pct).toBeCloseTo(100 / 3, 6);
  });

  it('ranks functions by self time', () => {
    const top = selfTimes(profile());
    expect(top.slice(0, 2).map((s) => [s.name, s.us])).toEqual([
      ['writev', 300],
      ['(garbage collector)', 300],
    ]);
    expect(top.map((s) => s.name)).toContain('handler src/http/client-api.js:42');
  });

  it('labels frames by function and short path, lines counted from 1', () => {
    expect(frameLabel({ functionName: '', url: 'file:///p/node_modules/undici/lib/core/util.js', lineNumber: 9 })).toBe('(anonymous) undici/lib/core/util.js:10');
    expect(frameLabel({ functionName: 'writev', url: '', lineNumber: -1 })).toBe('writev');
  });
});

describe('flame tree and graph', () => {
  it('merges stacks into inclusive times, biggest child first', () => {
    const root = flameTree(profile());
    expect(root.us).toBe(900);
    expect(root.children.map((c) => [c.label, c.us])).toEqual([
      ['handler src/http/client-api.js:42', 400],
      ['(garbage collector)', 300],
      ['(idle)', 100],
      ['listOnTimeout node:internal/timers:501', 100],
    ]);
    const send = root.children[0]!.children[0]!;
    expect([send.label, send.us, send.children.map((c) => [c.label, c.us])]).toEqual(['sendAppend src/peer/transport.js:10', 300, [['writev', 300]]]);
  });

  it('draws a box per visible node, widths proportional to time, names escaped', () => {
    const root = flameTree(profile());
    const svg = flameSvg('leader <r1>', 'a & b', root);
    expect(svg).toContain('leader &lt;r1&gt;');
    expect(svg).toContain('a &amp; b');
    // all, handler, sendAppend, writev, GC, idle, listOnTimeout
    expect(svg.match(/<rect x=/g)).toHaveLength(7);
    expect(svg).toMatch(/<title>handler src\/http\/client-api.js:42: 0\.4 ms, 44\.4%<\/title><rect x="0\.00" y="75" width="533\.33"/);
    expect(svg.match(/<g>/g)!.length).toBe(svg.match(/<\/g>/g)!.length);
  });

  it('leaves out boxes too narrow to see', () => {
    const root = { label: 'all', us: 1_000_000, children: [{ label: 'big', us: 999_999, children: [] }, { label: 'tiny', us: 1, children: [] }] };
    const svg = flameSvg('t', 's', root);
    expect(svg).toContain('big');
    expect(svg).not.toContain('tiny');
  });
});
