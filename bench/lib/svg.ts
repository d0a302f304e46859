/**
 * Latency CDF plots as hand-written SVG (no plotting dependency): x is the
 * ack latency in ms on a log scale, y the percentile; one line per system,
 * with a legend. Two panels: the whole distribution (y linear, 0-100), and
 * its tail (y on a "nines" scale, 90 / 99 / 99.9 / 99.99) where p99 and p99.9
 * can be read.
 */
import type { Histogram } from 'hdr-histogram-js';

export interface CdfSeries {
  label: string;
  color: string;
  dashed?: boolean;
  histogram: Histogram;
}

const W = 980;
const H = 460;
const PANEL_W = 400;
const PANEL_H = 300;
const TOP = 96;
const LEFT = [70, 560];

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function fmtMs(v: number): string {
  if (v >= 1) return String(Math.round(v * 100) / 100);
  return String(Number(v.toPrecision(2)));
}

/** Percentiles to sample for the full CDF and for the tail (up to the finest one the sample count supports). */
function percentiles(count: number): { full: number[]; tail: number[] } {
  const full: number[] = [];
  for (let p = 0.5; p < 100; p += 0.5) full.push(p);
  full.push(99.9, 99.99, 100);
  const finest = count > 0 ? 100 * (1 - 1 / count) : 99;
  const tail: number[] = [];
  for (let nines = 1; nines <= 4.0001; nines += 0.02) {
    const p = 100 * (1 - 10 ** -nines);
    if (p > finest + 1e-9) break;
    tail.push(p);
  }
  return { full: full.sort((a, b) => a - b), tail };
}

export function cdfSvg(title: string, subtitle: string, series: CdfSeries[]): string {
  const live = series.filter((s) => s.histogram.totalCount > 0);
  // x range: from the smallest recorded value to the largest, widened to whole decades.
  let lo = Infinity;
  let hi = 0;
  for (const s of live) {
    lo = Math.min(lo, s.histogram.minNonZeroValue / 1000);
    hi = Math.max(hi, s.histogram.maxValue / 1000);
  }
  if (!Number.isFinite(lo) || lo <= 0) lo = 0.1;
  if (hi <= lo) hi = lo * 10;
  const dLo = Math.floor(Math.log10(lo));
  const dHi = Math.ceil(Math.log10(hi));
  const x = (ms: number, left: number) => left + ((Math.log10(Math.max(ms, 10 ** dLo)) - dLo) / (dHi - dLo)) * PANEL_W;
  const yFull = (p: number) => TOP + PANEL_H - (p / 100) * PANEL_H;
  const maxNines = 4;
  const yTail = (p: number) => {
    const nines = Math.min(maxNines, -Math.log10(Math.max(1e-9, 1 - p / 100)));
    return TOP + PANEL_H - ((nines - 1) / (maxNines - 1)) * PANEL_H;
  };

  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="${W / 2}" y="24" text-anchor="middle" font-size="16" font-weight="bold">${esc(title)}</text>`);
  out.push(`<text x="${W / 2}" y="44" text-anchor="middle" fill="#444">${esc(subtitle)}</text>`);

  // Legend.
  let lx = 70;
  for (const s of series) {
    out.push(`<line x1="${lx}" y1="66" x2="${lx + 28}" y2="66" stroke="${s.color}" stroke-width="2.5"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`);
    const label = `${s.label}${s.histogram.totalCount > 0 ? '' : ' (no data)'}`;
    out.push(`<text x="${lx + 34}" y="70">${esc(label)}</text>`);
    lx += 44 + label.length * 7;
  }

  const panel = (left: number, name: string, yTicks: { p: number; label: string }[], y: (p: number) => number, ps: (s: CdfSeries) => number[]) => {
    out.push(`<rect x="${left}" y="${TOP}" width="${PANEL_W}" height="${PANEL_H}" fill="none" stroke="#888"/>`);
    out.push(`<text x="${left + PANEL_W / 2}" y="${TOP - 8}" text-anchor="middle" font-weight="bold">${esc(name)}</text>`);
    // x grid: decades labelled, 2 and 5 light.
    for (let d = dLo; d <= dHi; d++) {
      for (const m of [1, 2, 5]) {
        const v = m * 10 ** d;
        if (d === dHi && m > 1) continue;
        const px = x(v, left);
        out.push(`<line x1="${px.toFixed(1)}" y1="${TOP}" x2="${px.toFixed(1)}" y2="${TOP + PANEL_H}" stroke="${m === 1 ? '#ccc' : '#eee'}"/>`);
        if (m === 1 || dHi - dLo <= 3) out.push(`<text x="${px.toFixed(1)}" y="${TOP + PANEL_H + 16}" text-anchor="middle" fill="${m === 1 ? '#000' : '#777'}">${fmtMs(v)}</text>`);
      }
    }
    out.push(`<text x="${left + PANEL_W / 2}" y="${TOP + PANEL_H + 36}" text-anchor="middle">ack latency, ms (log scale)</text>`);
    for (const t of yTicks) {
      const py = y(t.p);
      out.push(`<line x1="${left}" y1="${py.toFixed(1)}" x2="${left + PANEL_W}" y2="${py.toFixed(1)}" stroke="#ddd"/>`);
      out.push(`<text x="${left - 6}" y="${(py + 4).toFixed(1)}" text-anchor="end">${esc(t.label)}</text>`);
    }
    out.push(`<text transform="translate(${left - 48} ${TOP + PANEL_H / 2}) rotate(-90)" text-anchor="middle">percentile</text>`);
    for (const s of live) {
      const pts = ps(s).map((p) => `${x(s.histogram.getValueAtPercentile(p) / 1000, left).toFixed(1)},${y(p).toFixed(1)}`);
      out.push(
        `<polyline fill="none" stroke="${s.color}" stroke-width="2" stroke-linejoin="round"${s.dashed ? ' stroke-dasharray="6 4"' : ''} points="${pts.join(' ')}"/>`,
      );
    }
  };

  panel(
    LEFT[0]!,
    'CDF',
    [0, 25, 50, 75, 90, 100].map((p) => ({ p, label: `${p}` })),
    yFull,
    (s) => percentiles(s.histogram.totalCount).full,
  );
  panel(
    LEFT[1]!,
    'tail',
    [
      { p: 90, label: '90' },
      { p: 99, label: '99' },
      { p: 99.9, label: '99.9' },
      { p: 99.99, label: '99.99' },
    ],
    yTail,
    (s) => percentiles(s.histogram.totalCount).tail,
  );
  out.push(`<text x="${W / 2}" y="${H - 12}" text-anchor="middle" fill="#666" font-size="11">Generated by bench/compare.ts (npm run bench:compare)</text>`);
  out.push('</svg>');
  return out.join('\n') + '\n';
}
