/**
 * The jepsen-lite report: one self-contained HTML page (inline CSS, inline
 * SVG, no scripts, no network) describing a run: verdict, meta, per-log
 * counts and anomalies, a per-nemesis summary, plots of the appends over
 * time with the fault windows shaded, and every anomaly with its operations.
 *
 * Like the checker, it imports nothing from src/. Every string that reaches
 * the page goes through esc(): values, replica names and fault details come
 * from the network or the command line.
 */
import type { Anomaly, AppendOp, LogVerdict, Op, Verdict } from './checker.js';

export interface FaultWindow {
  nemesis: string;
  detail: string;
  startMs: number;
  endMs: number;
}

export interface RunMeta {
  seed: number;
  nemeses: string[];
  timeS: number;
  /** ISO timestamp. */
  startedAt: string;
  logs: string[];
  command: string;
}

export interface NemesisSummary {
  nemesis: string;
  windows: number;
  ok: number;
  fail: number;
  info: number;
  longestUnavailableMs: number;
}

/** The row for operations invoked outside every fault window. */
const NO_FAULT = 'none';
/** At most this many circles in the append scatter plot. */
const MAX_POINTS = 20_000;
/** At most this many time buckets in the latency and throughput plots. */
const MAX_BUCKETS = 600;
/** At most this many anomalies listed per log and kind (all are counted). */
const MAX_LISTED_ANOMALIES = 200;
const KINDS: readonly Anomaly['kind'][] = ['lost', 'phantom', 'duplicated', 'divergent', 'order', 'gap', 'backwards', 'beyond', 'time-went-back', 'time-changed', 'bad-seek'];
const OUTCOME_COLOR = { ok: '#2e9d3a', fail: '#d62728', info: '#ff8c00' } as const;
const NEMESIS_COLORS = ['#1f77b4', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#bcbd22', '#7f7f7f'];

// ---------------------------------------------------------------------------
// Per-nemesis summary

interface Gap {
  fromMs: number;
  toMs: number;
}

const isAppend = (op: Op): op is AppendOp => op.type === 'append';

/** Half-open: an operation invoked at a window's end is outside it. */
const during = (ms: number, w: FaultWindow): boolean => ms >= w.startMs && ms < w.endMs;

const overlaps = (g: Gap, w: FaultWindow): boolean => g.fromMs < w.endMs && g.toMs > w.startMs;

/** Windows grouped by nemesis, in order of first appearance. */
function groupWindows(faults: readonly FaultWindow[]): Map<string, FaultWindow[]> {
  const out = new Map<string, FaultWindow[]>();
  for (const w of faults) {
    const list = out.get(w.nemesis);
    if (list) list.push(w);
    else out.set(w.nemesis, [w]);
  }
  return out;
}

/** Gaps between consecutive ok append completions, per log (as the checker measures unavailability). */
function okGaps(appends: readonly AppendOp[]): Gap[] {
  const byLog = new Map<string, number[]>();
  for (const a of appends) {
    if (a.outcome !== 'ok') continue;
    const times = byLog.get(a.log);
    if (times) times.push(a.completeMs);
    else byLog.set(a.log, [a.completeMs]);
  }
  const gaps: Gap[] = [];
  for (const times of byLog.values()) {
    times.sort((x, y) => x - y);
    for (let i = 1; i < times.length; i++) gaps.push({ fromMs: times[i - 1]!, toMs: times[i]! });
  }
  return gaps;
}

function summarize(nemesis: string, windows: number, appends: readonly AppendOp[], gaps: readonly Gap[]): NemesisSummary {
  const count = (o: AppendOp['outcome']) => appends.filter((a) => a.outcome === o).length;
  const longest = gaps.reduce((m, g) => Math.max(m, g.toMs - g.fromMs), 0);
  return { nemesis, windows, ok: count('ok'), fail: count('fail'), info: count('info'), longestUnavailableMs: longest };
}

/**
 * Per nemesis: the append outcomes of operations invoked during its windows
 * (plus a 'none' row for operations outside any window), and the longest gap
 * between two ok appends that overlaps one of its windows.
 *
 * Windows are half-open [startMs, endMs). An append invoked while windows of
 * two nemeses overlap counts for both. Gaps are measured per log between
 * consecutive ok completions (as the checker does); the 'none' row's gap is
 * the longest overlapping no window at all. Reads are not counted.
 */
export function summarizeByNemesis(history: readonly Op[], faults: readonly FaultWindow[]): NemesisSummary[] {
  const appends = history.filter(isAppend);
  const gaps = okGaps(appends);
  const rows = [...groupWindows(faults)].map(([nemesis, windows]) =>
    summarize(
      nemesis,
      windows.length,
      appends.filter((a) => windows.some((w) => during(a.invokeMs, w))),
      gaps.filter((g) => windows.some((w) => overlaps(g, w))),
    ),
  );
  rows.push(
    summarize(
      NO_FAULT,
      0,
      appends.filter((a) => !faults.some((w) => during(a.invokeMs, w))),
      gaps.filter((g) => !faults.some((w) => overlaps(g, w))),
    ),
  );
  return rows;
}

// ---------------------------------------------------------------------------
// Formatting

function esc(value: unknown): string {
  return String(value).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function fmtNum(n: number, digits = 1): string {
  if (!Number.isFinite(n)) return '—';
  const f = 10 ** digits;
  return String(Math.round(n * f) / f);
}

const fmtMs = (n: number): string => `${fmtNum(n)} ms`;
const fmtS = (ms: number): string => `${fmtNum(ms / 1000, 2)} s`;

function quantile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? 0;
}

function table(headers: readonly string[], rows: readonly string[][], cls = ''): string {
  const head = headers.map((h) => `<th>${esc(h)}</th>`).join('');
  const body = rows.map((r) => `<tr>${r.join('')}</tr>`).join('\n');
  return `<table${cls ? ` class="${cls}"` : ''}><thead><tr>${head}</tr></thead><tbody>\n${body}\n</tbody></table>`;
}

/** A table cell of escaped text; cls is a trusted class name. */
const td = (text: unknown, cls = ''): string => `<td${cls ? ` class="${cls}"` : ''}>${esc(text)}</td>`;

// ---------------------------------------------------------------------------
// Scales and plot frame

type Scale = (v: number) => number;

function linear(d0: number, d1: number, r0: number, r1: number): Scale {
  const span = d1 - d0 || 1;
  return (v) => r0 + ((v - d0) / span) * (r1 - r0);
}

/** Nice tick step (1, 2 or 5 times a power of ten) giving about `count` ticks. */
function niceStep(span: number, count: number): number {
  const raw = Math.max(span, 1e-9) / count;
  const pow = 10 ** Math.floor(Math.log10(raw));
  const m = raw / pow;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * pow;
}

function linearTicks(lo: number, hi: number, count: number): number[] {
  const step = niceStep(hi - lo, count);
  const out: number[] = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) out.push(Math.round(t / step) * step);
  return out;
}

interface LogAxis {
  scale: Scale;
  ticks: number[];
}

/** A log10 axis over whole decades covering [lo, hi] (values below 0.1 are clamped there). */
function logAxis(lo: number, hi: number, r0: number, r1: number): LogAxis {
  const d0 = Math.floor(Math.log10(Math.max(0.1, lo)));
  const d1 = Math.max(d0 + 1, Math.ceil(Math.log10(Math.max(0.1, hi))));
  const s = linear(d0, d1, r0, r1);
  const ticks: number[] = [];
  for (let d = d0; d <= d1; d++) ticks.push(10 ** d);
  return { scale: (v) => s(Math.log10(Math.max(10 ** d0, v))), ticks };
}

interface Frame {
  width: number;
  height: number;
  left: number;
  right: number;
  top: number;
  bottom: number;
  /** x in pixels from run time in ms. */
  x: Scale;
  t0: number;
  t1: number;
}

function frame(t0: number, t1: number): Frame {
  const width = 960;
  const height = 300;
  const left = 64;
  const right = width - 16;
  const top = 40;
  const bottom = height - 36;
  return { width, height, left, right, top, bottom, x: linear(t0, t1, left, right), t0, t1 };
}

function xAxis(f: Frame): string {
  const ticks = linearTicks(f.t0 / 1000, f.t1 / 1000, 10);
  const marks = ticks
    .map((s) => {
      const x = fmtNum(f.x(s * 1000));
      return `<line x1="${x}" x2="${x}" y1="${f.bottom}" y2="${f.bottom + 4}" class="axis"/><text x="${x}" y="${f.bottom + 16}" text-anchor="middle">${esc(fmtNum(s, 2))}</text>`;
    })
    .join('');
  return `<line x1="${f.left}" x2="${f.right}" y1="${f.bottom}" y2="${f.bottom}" class="axis"/>${marks}<text x="${(f.left + f.right) / 2}" y="${f.height - 4}" text-anchor="middle">time since start (s)</text>`;
}

function yAxis(f: Frame, scale: Scale, ticks: readonly number[], label: string): string {
  const marks = ticks
    .map((v) => {
      const y = fmtNum(scale(v));
      return `<line x1="${f.left}" x2="${f.right}" y1="${y}" y2="${y}" class="grid"/><text x="${f.left - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${esc(fmtNum(v, 2))}</text>`;
    })
    .join('');
  const my = (f.top + f.bottom) / 2;
  return `<line x1="${f.left}" x2="${f.left}" y1="${f.top}" y2="${f.bottom}" class="axis"/>${marks}<text transform="translate(14 ${my}) rotate(-90)" text-anchor="middle">${esc(label)}</text>`;
}

function nemesisColor(nemesis: string, faults: readonly FaultWindow[]): string {
  const i = [...groupWindows(faults).keys()].indexOf(nemesis);
  return NEMESIS_COLORS[Math.max(0, i) % NEMESIS_COLORS.length]!;
}

/** One translucent, labelled rectangle per fault window, clamped to the plot. */
function faultLayer(f: Frame, faults: readonly FaultWindow[]): string {
  return faults
    .map((w, i) => {
      const x0 = Math.max(f.left, Math.min(f.right, f.x(w.startMs)));
      const x1 = Math.max(f.left, Math.min(f.right, f.x(w.endMs)));
      const color = nemesisColor(w.nemesis, faults);
      const title = `${w.nemesis}: ${w.detail} (${fmtS(w.startMs)} – ${fmtS(w.endMs)})`;
      const labelY = f.top - 26 + (i % 3) * 10;
      return (
        `<g><title>${esc(title)}</title>` +
        `<rect class="fault" data-nemesis="${esc(w.nemesis)}" x="${fmtNum(x0)}" y="${f.top}" width="${fmtNum(Math.max(1, x1 - x0))}" height="${f.bottom - f.top}" fill="${color}" fill-opacity="0.15" stroke="${color}" stroke-opacity="0.5"/>` +
        `<text class="fault-label" x="${fmtNum(x0 + 2)}" y="${labelY + 8}" fill="${color}">${esc(w.nemesis)}</text></g>`
      );
    })
    .join('');
}

function svg(f: Frame, title: string, body: string): string {
  return `<svg class="plot" width="${f.width}" height="${f.height}" viewBox="0 0 ${f.width} ${f.height}" role="img" aria-label="${esc(title)}">${body}</svg>`;
}

// ---------------------------------------------------------------------------
// Plots

/** Evenly spaced picks of at most max items, in order. */
function downsample<T>(items: readonly T[], max: number): T[] {
  if (items.length <= max) return [...items];
  const out: T[] = [];
  for (let i = 0; i < max; i++) out.push(items[Math.floor((i * items.length) / max)]!);
  return out;
}

/** At most MAX_POINTS appends, keeping failed and unknown ones first (they are the rare, telling ones). */
function pointsToPlot(appends: readonly AppendOp[]): AppendOp[] {
  const notOk = downsample(
    appends.filter((a) => a.outcome !== 'ok'),
    MAX_POINTS / 2,
  );
  const ok = downsample(
    appends.filter((a) => a.outcome === 'ok'),
    MAX_POINTS - notOk.length,
  );
  // ok underneath, then info, then fail on top.
  const rank = { ok: 0, info: 1, fail: 2 } as const;
  return [...ok, ...notOk].sort((x, y) => rank[x.outcome] - rank[y.outcome]);
}

function scatterPlot(appends: readonly AppendOp[], faults: readonly FaultWindow[], t0: number, t1: number): string {
  const f = frame(t0, t1);
  const points = pointsToPlot(appends);
  const lat = (a: AppendOp) => a.completeMs - a.invokeMs;
  const max = points.reduce((m, a) => Math.max(m, lat(a)), 1);
  const min = points.reduce((m, a) => Math.min(m, lat(a)), max);
  const y = logAxis(min, max, f.bottom, f.top);
  const circles = points
    .map((a) => `<circle cx="${fmtNum(f.x(a.invokeMs))}" cy="${fmtNum(y.scale(lat(a)))}" r="1.8" fill="${OUTCOME_COLOR[a.outcome]}"/>`)
    .join('');
  const shown = points.length < appends.length ? ` (showing ${points.length} of ${appends.length})` : '';
  const body = faultLayer(f, faults) + yAxis(f, y.scale, y.ticks, 'latency (ms, log)') + xAxis(f) + `<g class="points">${circles}</g>`;
  return figure('Append operations: latency by invoke time' + shown, svg(f, 'append operations', body), outcomeLegend());
}

interface Bucket {
  startMs: number;
  values: number[];
}

function bucketMs(t0: number, t1: number): number {
  return Math.max(1000, Math.ceil((t1 - t0) / MAX_BUCKETS / 1000) * 1000);
}

function buckets(times: readonly { at: number; value: number }[], t0: number, t1: number, size: number): Bucket[] {
  const n = Math.max(1, Math.ceil((t1 - t0) / size));
  const out: Bucket[] = Array.from({ length: n }, (_, i) => ({ startMs: t0 + i * size, values: [] }));
  for (const { at, value } of times) out[Math.max(0, Math.min(n - 1, Math.floor((at - t0) / size)))]!.values.push(value);
  return out;
}

/** A path through the buckets that have a value, broken where a bucket is empty. */
function linePath(f: Frame, bs: readonly Bucket[], size: number, y: Scale, pick: (sorted: number[]) => number): string {
  let d = '';
  let pen = false;
  for (const b of bs) {
    if (!b.values.length) {
      pen = false;
      continue;
    }
    d += `${pen ? 'L' : 'M'}${fmtNum(f.x(b.startMs + size / 2))} ${fmtNum(y(pick(b.values)))}`;
    pen = true;
  }
  return d;
}

function latencyPlot(appends: readonly AppendOp[], faults: readonly FaultWindow[], t0: number, t1: number): string {
  const f = frame(t0, t1);
  const size = bucketMs(t0, t1);
  const oks = appends.filter((a) => a.outcome === 'ok').map((a) => ({ at: a.invokeMs, value: a.completeMs - a.invokeMs }));
  const bs = buckets(oks, t0, t1, size);
  for (const b of bs) b.values.sort((x, y) => x - y);
  const max = oks.reduce((m, o) => Math.max(m, o.value), 1);
  const min = oks.reduce((m, o) => Math.min(m, o.value), max);
  const y = logAxis(min, max, f.bottom, f.top);
  const line = (p: number, color: string) =>
    `<path d="${linePath(f, bs, size, y.scale, (v) => quantile(v, p))}" fill="none" stroke="${color}" stroke-width="1.5"/>`;
  const body = faultLayer(f, faults) + yAxis(f, y.scale, y.ticks, 'latency (ms, log)') + xAxis(f) + line(0.5, '#1f77b4') + line(0.99, '#d62728');
  const legend = `<span class="key"><i style="background:#1f77b4"></i>p50</span><span class="key"><i style="background:#d62728"></i>p99</span>`;
  return figure(`Ok append latency per ${size / 1000} s bucket (by invoke time)`, svg(f, 'latency over time', body), legend);
}

function throughputPlot(appends: readonly AppendOp[], faults: readonly FaultWindow[], t0: number, t1: number): string {
  const f = frame(t0, t1);
  const size = bucketMs(t0, t1);
  const oks = appends.filter((a) => a.outcome === 'ok').map((a) => ({ at: a.completeMs, value: 1 }));
  const bs = buckets(oks, t0, t1, size);
  const rate = (b: Bucket) => b.values.length / (size / 1000);
  const peak = bs.reduce((m, b) => Math.max(m, rate(b)), 1);
  const top = Math.ceil(peak / niceStep(peak, 5)) * niceStep(peak, 5);
  const ticks = linearTicks(0, top, 5);
  const y = linear(0, top, f.bottom, f.top);
  const bars = bs
    .filter((b) => b.values.length)
    .map((b) => {
      const x0 = f.x(b.startMs);
      const w = Math.max(0.5, f.x(b.startMs + size) - x0 - 0.5);
      return `<rect class="bar" x="${fmtNum(x0)}" y="${fmtNum(y(rate(b)))}" width="${fmtNum(w)}" height="${fmtNum(f.bottom - y(rate(b)))}" fill="${OUTCOME_COLOR.ok}"/>`;
    })
    .join('');
  // Bars underneath the translucent fault windows, so both stay visible.
  const body = yAxis(f, y, ticks, 'ok appends / s') + xAxis(f) + bars + faultLayer(f, faults);
  return figure(`Throughput: ok appends per second (${size / 1000} s buckets, by completion time)`, svg(f, 'throughput over time', body));
}

function figure(caption: string, svgText: string, legend = ''): string {
  return `<figure><figcaption>${esc(caption)}</figcaption>${svgText}${legend ? `<div class="legend">${legend}</div>` : ''}</figure>`;
}

function outcomeLegend(): string {
  return (Object.keys(OUTCOME_COLOR) as (keyof typeof OUTCOME_COLOR)[])
    .map((o) => `<span class="key"><i style="background:${OUTCOME_COLOR[o]}"></i>${esc(o)}</span>`)
    .join('');
}

/** The plotted time range: the run, every operation and every fault window. */
function timeRange(meta: RunMeta, history: readonly Op[], faults: readonly FaultWindow[]): [number, number] {
  let lo = 0;
  let hi = Math.max(1000, meta.timeS * 1000);
  for (const op of history) {
    lo = Math.min(lo, op.invokeMs);
    hi = Math.max(hi, op.completeMs);
  }
  for (const w of faults) hi = Math.max(hi, w.endMs);
  return [lo, hi];
}

// ---------------------------------------------------------------------------
// Sections

/** The run is valid only when the checker found nothing and no liveness check failed. */
const runValid = (verdict: Verdict, liveness: readonly string[]): boolean => verdict.valid && liveness.length === 0;

function banner(verdict: Verdict, liveness: readonly string[]): string {
  const total = Object.values(verdict.logs).reduce((n, l) => n + l.anomalies.length, 0);
  if (runValid(verdict, liveness)) return `<div class="banner good">VALID <small>no anomalies in ${Object.keys(verdict.logs).length} log(s)</small></div>`;
  const why = [`${total} anomal${total === 1 ? 'y' : 'ies'}`, ...(liveness.length ? [`${liveness.length} liveness failure(s)`] : [])];
  return `<div class="banner bad">INVALID <small>${esc(why.join(', '))}</small></div>`;
}

function livenessSection(liveness: readonly string[]): string {
  const items = liveness.map((p) => `<li class="detail">${esc(p)}</li>`).join('\n');
  return `<h2>Liveness after healing</h2>${liveness.length ? `<ol class="bad">${items}</ol>` : '<p>No liveness problems.</p>'}`;
}

function metaSection(meta: RunMeta, history: readonly Op[], faults: readonly FaultWindow[]): string {
  const appends = history.filter(isAppend).length;
  const seeks = history.filter((op) => op.type === 'seek').length;
  const rows: [string, string][] = [
    ['seed', String(meta.seed)],
    ['started at', meta.startedAt],
    ['time', `${meta.timeS} s`],
    ['nemeses', meta.nemeses.join(', ') || '(none)'],
    ['logs', meta.logs.join(', ')],
    ['operations', `${appends} appends, ${history.length - appends - seeks} reads, ${seeks} offsets?time= seeks`],
    ['fault windows', String(faults.length)],
    ['command', meta.command],
  ];
  const body = rows.map(([k, v]) => `<tr><th>${esc(k)}</th><td${k === 'command' ? ' class="code"' : ''}>${esc(v)}</td></tr>`).join('\n');
  return `<h2>Run</h2><table class="meta"><tbody>\n${body}\n</tbody></table>`;
}

function logRows(verdict: Verdict): [string, LogVerdict][] {
  return Object.entries(verdict.logs).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

function countsSection(verdict: Verdict): string {
  const rows = logRows(verdict).map(([name, l]) => [
    td(name),
    td(l.valid ? 'valid' : 'invalid', l.valid ? 'good' : 'bad'),
    td(l.counts.ok),
    td(l.counts.fail),
    td(l.counts.info),
    td(l.counts.reads),
    td(`${l.counts.seeks} (${l.counts.seeksNoneYet} none yet)`),
    td(l.counts.finalEntries),
    td(fmtMs(l.latencyMs.p50)),
    td(fmtMs(l.latencyMs.p99)),
    td(fmtMs(l.latencyMs.max)),
    td(`${fmtMs(l.longestUnavailableMs)} from ${fmtS(l.longestUnavailableFromMs)}`),
  ]);
  const headers = ['log', 'verdict', 'ok', 'fail', 'info', 'reads', 'seeks judged', 'final entries', 'p50', 'p99', 'max', 'longest unavailable'];
  return `<h2>Logs</h2>${table(headers, rows, 'num')}`;
}

function anomalyCountsSection(verdict: Verdict): string {
  const rows = logRows(verdict).map(([name, l]) => [
    td(name),
    ...KINDS.map((k) => {
      const n = l.anomalies.filter((a) => a.kind === k).length;
      return td(n, n ? 'bad' : 'zero');
    }),
  ]);
  return `<h2>Anomalies per kind <small>(each must be 0)</small></h2>${table(['log', ...KINDS], rows, 'num')}`;
}

/**
 * What a kill-all that met a log unquiesced explains (checker.ts): counted per
 * log and kind, not anomalies; a few listed so a reader can see what they were.
 */
function outsidePromiseSection(verdict: Verdict): string {
  const rows = logRows(verdict).filter(([, l]) => l.outsidePromise?.length || l.lossesExemptBeforeMs !== undefined);
  if (!rows.length) return '';
  const kinds = [...new Set(rows.flatMap(([, l]) => (l.outsidePromise ?? []).map((a) => a.kind)))].sort();
  const table1 = table(
    ['log', 'losses exempt before', ...kinds],
    rows.map(([name, l]) => [td(name), td(fmtS(l.lossesExemptBeforeMs ?? 0)), ...kinds.map((k) => td((l.outsidePromise ?? []).filter((a) => a.kind === k).length))]),
    'num',
  );
  const examples = rows
    .flatMap(([, l]) => l.outsidePromise ?? [])
    .slice(0, 10)
    .map((a) => `<li class="detail">${esc(a.kind)}: ${esc(a.detail)}</li>`)
    .join('\n');
  const note = '<p class="note">A kill-all SIGKILLs every replica at once: entries acknowledged but not yet flushed on a log that was not quiesced at the kill may be lost, which is outside the promise (at most one replica fails). Such losses, and the reads and ids that follow from them, are counted here, not as anomalies; what was acknowledged after the restart, and every log quiesced at the kill, is judged in full.</p>';
  return `<h2>Outside the promise <small>(kill-all on logs not quiesced)</small></h2>${note}${table1}${examples ? `<ol>${examples}</ol>` : ''}`;
}

function nemesisSection(history: readonly Op[], faults: readonly FaultWindow[]): string {
  const rows = summarizeByNemesis(history, faults).map((s) => {
    const total = s.ok + s.fail + s.info;
    return [
      td(s.nemesis),
      td(s.windows),
      td(s.ok),
      td(s.fail),
      td(s.info),
      td(total ? `${fmtNum((100 * s.ok) / total)} %` : '—'),
      td(fmtMs(s.longestUnavailableMs)),
    ];
  });
  const headers = ['nemesis', 'windows', 'ok', 'fail', 'info', 'ok share', 'longest unavailable'];
  const note = '<p class="note">Appends counted by invoke time within the nemesis\'s windows; unavailability is the longest gap between two ok appends of one log overlapping a window (for <em>none</em>: overlapping no window).</p>';
  return `<h2>Per nemesis</h2>${table(headers, rows, 'num')}${note}`;
}

function faultsSection(faults: readonly FaultWindow[]): string {
  if (!faults.length) return '<h2>Fault windows</h2><p>None.</p>';
  const rows = faults.map((w) => [td(w.nemesis), td(w.detail), td(fmtS(w.startMs)), td(fmtS(w.endMs)), td(fmtMs(w.endMs - w.startMs))]);
  return `<h2>Fault windows</h2>${table(['nemesis', 'detail', 'start', 'end', 'duration'], rows)}`;
}

function entriesSummary(entries: { id: number; value: string }[] | undefined): string {
  if (!entries?.length) return entries ? '(none)' : '';
  const first = entries[0]!;
  const last = entries[entries.length - 1]!;
  return entries.length === 1 ? `${first.id}: ${first.value}` : `${entries.length} entries, ids ${first.id}–${last.id}`;
}

/** An operation's value, entries, or (a seek) the time asked and its answer. */
function opWhat(op: Op): string {
  if (op.type === 'append') return op.value;
  if (op.type === 'read') return entriesSummary(op.entries);
  if (op.id === undefined) return `time ${op.time}`;
  return `time ${op.time} → ${op.timeMs === null ? `none yet, next id ${op.id}` : `id ${op.id} (time ${op.timeMs})`}`;
}

/** An append's or a seek's id, or what kind of read: a tail read, or one from a time. */
function opWhich(op: Op): string | number {
  if (op.type !== 'read') return op.id ?? '';
  return op.fromTime !== undefined ? `fromTime ${op.fromTime}` : op.tail ? 'tail' : '';
}

function opsTable(ops: readonly Op[]): string {
  if (!ops.length) return '<p class="note">No operations involved (final state only).</p>';
  const rows = ops.map((op) => [
    td(op.type),
    td(op.outcome, op.outcome === 'ok' ? 'good' : op.outcome === 'fail' ? 'bad' : 'warn'),
    td(op.process),
    td(op.log),
    td(op.replica),
    td(opWhat(op)),
    td(opWhich(op)),
    td(fmtNum(op.invokeMs)),
    td(fmtNum(op.completeMs)),
    td(fmtNum(op.completeMs - op.invokeMs)),
  ]);
  return table(['type', 'outcome', 'process', 'log', 'replica', 'value / entries / seek', 'id / tail / fromTime', 'invoke ms', 'complete ms', 'latency ms'], rows, 'ops');
}

function anomalyList(verdict: Verdict): string {
  const parts = logRows(verdict)
    .filter(([, l]) => l.anomalies.length)
    .map(([name, l]) => {
      const byKind = KINDS.map((k) => [k, l.anomalies.filter((a) => a.kind === k)] as const).filter(([, as]) => as.length);
      const kinds = byKind.map(([k, as]) => {
        const listed = as.slice(0, MAX_LISTED_ANOMALIES).map((a) => `<li><div class="detail">${esc(a.detail)}</div>${opsTable(a.ops)}</li>`);
        const more = as.length > listed.length ? `<p class="note">… and ${as.length - listed.length} more ${esc(k)} anomalies not listed.</p>` : '';
        return `<h4>${esc(k)} (${as.length})</h4><ol>${listed.join('\n')}</ol>${more}`;
      });
      return `<h3>log ${esc(name)}</h3>${kinds.join('\n')}`;
    });
  return `<h2>Anomalies</h2>${parts.length ? parts.join('\n') : '<p>None.</p>'}`;
}

const CSS = `
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1100px}
h1{font-size:22px;margin:0 0 12px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd}
h3{font-size:16px;margin:18px 0 6px}h4{font-size:14px;margin:12px 0 4px}
.banner{font-size:28px;font-weight:700;padding:12px 18px;border-radius:6px;color:#fff}
.banner small{font-size:14px;font-weight:400;margin-left:12px}
.banner.good{background:#2e9d3a}.banner.bad{background:#d62728}
table{border-collapse:collapse;margin:6px 0}th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
thead th{background:#f3f3f3}table.num td{text-align:right}table.num td:first-child{text-align:left}
table.meta th{background:#f7f7f7;width:120px}
td.good{color:#2e9d3a}td.bad{color:#d62728;font-weight:700}td.warn{color:#c66a00}td.zero{color:#999}
td.code,.detail{font-family:ui-monospace,Menlo,Consolas,monospace;white-space:pre-wrap;word-break:break-all}
table.ops{font-size:12px}ol.bad{color:#d62728}.note{color:#666;font-size:12px}
figure{margin:16px 0}figcaption{font-weight:600;margin-bottom:4px}
svg.plot{display:block;border:1px solid #eee;background:#fff;font-size:10px}
svg .axis{stroke:#444}svg .grid{stroke:#eee}svg .fault-label{font-size:10px;font-weight:600}
.legend{font-size:12px}.key{margin-right:14px}.key i{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:50%}
`;

/**
 * A self-contained HTML page (no network: inline CSS and inline SVG, no scripts from CDNs).
 * `liveness` (optional): problems found after healing (no leader, final read failed...);
 * any of them makes the banner INVALID even when the checker's verdict is valid.
 */
export function renderReport(input: {
  meta: RunMeta;
  history: readonly Op[];
  verdict: Verdict;
  faults: readonly FaultWindow[];
  liveness?: readonly string[];
}): string {
  const { meta, history, verdict, faults } = input;
  const liveness = input.liveness ?? [];
  const appends = history.filter(isAppend);
  const [t0, t1] = timeRange(meta, history, faults);
  const body = [
    `<h1>Tern jepsen-lite report <small>seed ${esc(meta.seed)}</small></h1>`,
    banner(verdict, liveness),
    metaSection(meta, history, faults),
    ...(input.liveness ? [livenessSection(liveness)] : []),
    countsSection(verdict),
    anomalyCountsSection(verdict),
    outsidePromiseSection(verdict),
    nemesisSection(history, faults),
    faultsSection(faults),
    '<h2>Plots <small>(all logs together)</small></h2>',
    scatterPlot(appends, faults, t0, t1),
    latencyPlot(appends, faults, t0, t1),
    throughputPlot(appends, faults, t0, t1),
    anomalyList(verdict),
  ];
  return [
    '<!doctype html>',
    '<html lang="en"><head><meta charset="utf-8">',
    `<title>jepsen-lite ${runValid(verdict, liveness) ? 'VALID' : 'INVALID'} seed ${esc(meta.seed)}</title>`,
    `<style>${CSS}</style></head><body>`,
    ...body,
    '</body></html>',
    '',
  ].join('\n');
}
