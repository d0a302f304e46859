import { describe, it, expect } from 'vitest';
import { check, type AppendOp, type FinalState, type Op, type ReadOp, type SeekOp } from './checker.js';
import { renderReport, summarizeByNemesis, type FaultWindow, type RunMeta } from './report.js';

const append = (value: string, outcome: AppendOp['outcome'], invokeMs: number, completeMs: number, id?: number, log = 'a'): AppendOp => ({
  type: 'append',
  process: 'c1',
  log,
  replica: 'r1',
  value,
  invokeMs,
  completeMs,
  outcome,
  ...(id === undefined ? {} : { id }),
});

const read = (invokeMs: number, entries: [number, string][]): ReadOp => ({
  type: 'read',
  process: 'reader',
  log: 'a',
  replica: 'r2',
  invokeMs,
  completeMs: invokeMs + 10,
  outcome: 'ok',
  tail: true,
  entries: entries.map(([id, value]) => ({ id, value })),
});

const finalOf = (values: string[]): FinalState => {
  const entries = values.map((value, id) => ({ id, value, timeMs: 0 }));
  return { a: { firstId: 0, replicas: { r1: entries, r2: entries, r3: entries } } };
};

const faults: FaultWindow[] = [
  { nemesis: 'partition', detail: 'r1 | r2 r3', startMs: 1000, endMs: 2000 },
  { nemesis: 'kill', detail: 'SIGKILL r3', startMs: 3000, endMs: 3500 },
];

// ok completions at 110, 520, 2100, 2610, 3700, 4010: gaps 410, 1580 (overlaps
// the partition), 510, 1090 (overlaps the kill), 310.
const history: Op[] = [
  append('v1', 'ok', 100, 110, 0),
  append('v2', 'ok', 500, 520, 1),
  append('v3', 'fail', 1100, 1200),
  append('v4', 'info', 1500, 2500),
  append('v5', 'ok', 1900, 2100, 2),
  append('v6', 'ok', 2600, 2610, 4),
  read(2700, [[0, 'v1'], [1, 'v2'], [2, 'v5'], [3, 'v4'], [4, 'v6']]),
  append('v7', 'fail', 3100, 3200),
  append('v8', 'ok', 3400, 3700, 5),
  append('v9', 'ok', 4000, 4010, 6),
];
const cleanFinal = finalOf(['v1', 'v2', 'v5', 'v4', 'v6', 'v8', 'v9']);

const meta: RunMeta = { seed: 42, nemeses: ['partition', 'kill'], timeS: 5, startedAt: '2024-01-01T00:00:00.000Z', logs: ['a'], command: 'jepsen-lite --seed 42' };

const svgs = (html: string): string[] => html.match(/<svg[\s\S]*?<\/svg>/g) ?? [];

describe('jepsen-lite report: summarizeByNemesis', () => {
  it('counts append outcomes invoked in each nemesis window, and the rest under none', () => {
    const rows = summarizeByNemesis(history, faults);
    expect(rows).toEqual([
      { nemesis: 'partition', windows: 1, ok: 1, fail: 1, info: 1, longestUnavailableMs: 1580 },
      { nemesis: 'kill', windows: 1, ok: 1, fail: 1, info: 0, longestUnavailableMs: 1090 },
      { nemesis: 'none', windows: 0, ok: 4, fail: 0, info: 0, longestUnavailableMs: 510 },
    ]);
    expect(check(history, cleanFinal).logs.a!.longestUnavailableMs).toBe(1580);
  });

  it('groups several windows of one nemesis and treats windows as half-open', () => {
    const twice: FaultWindow[] = [
      { nemesis: 'pause', detail: 'r1', startMs: 0, endMs: 500 },
      { nemesis: 'pause', detail: 'r2', startMs: 2600, endMs: 3000 },
    ];
    // v2 is invoked exactly at the first window's end: outside it.
    const [pause, none] = summarizeByNemesis(history, twice);
    expect(pause).toMatchObject({ nemesis: 'pause', windows: 2, ok: 2, fail: 0, info: 0 });
    // Gaps overlapping [0,500) or [2600,3000): 410 (110..520) and 1090 (2610..3700).
    expect(pause!.longestUnavailableMs).toBe(1090);
    expect(none).toMatchObject({ nemesis: 'none', ok: 4, fail: 2, info: 1, longestUnavailableMs: 1580 });
  });

  it('measures unavailability per log, so a busy second log does not hide a stalled one', () => {
    const busy = Array.from({ length: 40 }, (_, i) => append(`b${i}`, 'ok', i * 100, i * 100 + 5, i, 'b'));
    const rows = summarizeByNemesis([...history, ...busy], faults);
    expect(rows[0]).toMatchObject({ nemesis: 'partition', longestUnavailableMs: 1580 });
  });
});

describe('jepsen-lite report: renderReport', () => {
  const clean = renderReport({ meta, history, verdict: check(history, cleanFinal), faults });

  it('shows VALID for a clean run, with the tables', () => {
    expect(check(history, cleanFinal).valid).toBe(true);
    expect(clean).toMatch(/^<!doctype html>/);
    expect(clean).toContain('VALID');
    expect(clean).not.toContain('INVALID');
    for (const text of ['seed', '2024-01-01T00:00:00.000Z', 'jepsen-lite --seed 42', 'final entries', 'p99', 'longest unavailable', 'Per nemesis', '1580 ms']) {
      expect(clean).toContain(text);
    }
  });

  it('shows INVALID and the anomaly detail for a run that lost an acknowledged append', () => {
    const lossy = finalOf(['v1', 'v2', 'v5', 'v4', 'v6']);
    const verdict = check(history, lossy);
    expect(verdict.valid).toBe(false);
    expect(verdict.logs.a!.anomalies.map((a) => a.kind)).toContain('lost');
    const html = renderReport({ meta, history, verdict, faults });
    expect(html).toContain('INVALID');
    expect(html).toContain('&#34;v8&#34; acknowledged at id 5, final read has nothing there');
    expect(html).toMatch(/<h4>lost \(2\)<\/h4>/);
    // The involved op is listed with its fields.
    expect(html).toMatch(/<td>append<\/td><td class="good">ok<\/td><td>c1<\/td><td>a<\/td><td>r1<\/td><td>v8<\/td><td>5<\/td><td>3400<\/td><td>3700<\/td><td>300<\/td>/);
  });

  it('counts seeks per log, and lists a bad seek with the time asked and its answer', () => {
    // The final log's times: ids 0-6 at 10, 20, ..., 70. A seek of 25 must land on id 2 (time 30); this one says id 3.
    const timedFinal: FinalState = { a: { firstId: 0, replicas: Object.fromEntries(Object.entries(cleanFinal.a!.replicas).map(([r, es]) => [r, es.map((e) => ({ ...e, timeMs: (e.id + 1) * 10 }))])) } };
    const seek: SeekOp = { type: 'seek', process: 'a/seek', log: 'a', replica: 'r3', invokeMs: 4100, completeMs: 4102, outcome: 'ok', time: 25, id: 3, timeMs: 40 };
    const verdict = check([...history, seek], timedFinal);
    expect(verdict.logs.a!.anomalies.map((a) => a.kind)).toEqual(['bad-seek']);
    const html = renderReport({ meta, history: [...history, seek], verdict, faults });
    expect(html).toMatch(/<h4>bad-seek \(1\)<\/h4>/);
    expect(html).toContain('offsets?time=25 on r3 answered id 3 (time 40); the final log&#39;s first entry at or after 25 is id 2 (time 30)');
    expect(html).toContain('<td>seek</td><td class="good">ok</td><td>a/seek</td><td>a</td><td>r3</td><td>time 25 → id 3 (time 40)</td><td>3</td>');
    expect(html).toContain('1 (0 none yet)');
  });

  it('shows INVALID and the problems when a liveness check failed, even with a valid verdict', () => {
    const html = renderReport({ meta, history, verdict: check(history, cleanFinal), faults, liveness: ['a has no leader 30 s after healing <r1>'] });
    expect(html).toContain('INVALID');
    expect(html).toContain('1 liveness failure(s)');
    expect(html).toContain('a has no leader 30 s after healing &#60;r1&#62;');
    const fine = renderReport({ meta, history, verdict: check(history, cleanFinal), faults, liveness: [] });
    expect(fine).not.toContain('INVALID');
    expect(fine).toContain('No liveness problems.');
  });

  it('draws three SVG plots, each with one labelled shaded rect per fault window', () => {
    const plots = svgs(clean);
    expect(plots).toHaveLength(3);
    for (const plot of plots) {
      const rects = plot.match(/<rect class="fault"[^>]*>/g) ?? [];
      expect(rects).toHaveLength(faults.length);
      expect(rects[0]).toContain('data-nemesis="partition"');
      expect(rects[0]).toContain('fill-opacity="0.15"');
      expect(plot).toContain('<text class="fault-label" x="');
      expect(plot).toMatch(/>partition<\/text>/);
      expect(plot).toMatch(/>kill<\/text>/);
    }
    // Scatter: one circle per append, coloured by outcome.
    const circles = plots[0]!.match(/<circle [^>]*>/g) ?? [];
    expect(circles).toHaveLength(history.filter((o) => o.type === 'append').length);
    expect(circles.filter((c) => c.includes('#d62728'))).toHaveLength(2);
    expect(circles.filter((c) => c.includes('#ff8c00'))).toHaveLength(1);
    // Throughput: bars of ok appends.
    expect(plots[2]).toMatch(/<rect class="bar"/);
    // Latency: p50 and p99 lines.
    expect(plots[1]!.match(/<path d="M/g)).toHaveLength(2);
  });

  it('references nothing external and runs no scripts', () => {
    expect(clean).not.toMatch(/https?:\/\//);
    expect(clean).not.toMatch(/<script/i);
    expect(clean).not.toMatch(/<link/i);
    expect(clean).not.toMatch(/\s(src|href)\s*=/i);
  });

  it('escapes values from the network and the command line', () => {
    const evil = '<script>alert(1)</script>';
    const h: Op[] = [...history, append(evil, 'ok', 4100, 4120, 7)];
    const html = renderReport({
      meta: { ...meta, command: `run ${evil}` },
      history: h,
      verdict: check(h, cleanFinal), // the evil append is lost
      faults: [...faults, { nemesis: `<b>${evil}`, detail: evil, startMs: 4200, endMs: 4300 }],
    });
    expect(html).toContain('INVALID');
    expect(html).not.toMatch(/<script/i);
    expect(html).not.toContain('<b>');
    expect(html).toContain('&#60;script&#62;alert(1)&#60;/script&#62;');
  });

  it('keeps the scatter bounded for big histories, keeping every failure', () => {
    const big: Op[] = Array.from({ length: 50_000 }, (_, i) => append(`x${i}`, i % 1000 === 0 ? 'fail' : 'ok', i, i + 1 + (i % 7), i % 1000 === 0 ? undefined : i));
    const html = renderReport({ meta: { ...meta, timeS: 50 }, history: big, verdict: { valid: true, logs: {} }, faults });
    const circles = svgs(html)[0]!.match(/<circle /g) ?? [];
    expect(circles.length).toBeLessThanOrEqual(20_000);
    expect(circles.length).toBeGreaterThan(10_000);
    expect(svgs(html)[0]!.match(/#d62728/g)).toHaveLength(50);
    expect(html).toContain('showing');
  });

  it('renders an empty history without NaN', () => {
    const html = renderReport({ meta, history: [], verdict: check([], {}), faults: [] });
    expect(html).toContain('VALID');
    expect(svgs(html)).toHaveLength(3);
    expect(html).not.toContain('NaN');
    expect(html).not.toContain('Infinity');
  });
});
