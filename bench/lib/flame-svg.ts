/**
 * A flame graph of a merged call tree as hand-written SVG (no plotting
 * dependency), drawn as an icicle: callers on top, each box as wide as the
 * wall time spent in it and below it. Hovering a box shows its function,
 * milliseconds and share; boxes too narrow to see are left out.
 */
import type { FlameNode } from './cpu-profile.js';

const WIDTH = 1200;
const ROW = 17;
const TOP = 58;
const MIN_BOX_PX = 0.4;
/** Average glyph width of the 11 px monospace labels, to cut them to their box. */
const CHAR_PX = 6.7;

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** Colour by what owns the frame, so Tern's code stands out from the runtime and the libraries. */
function color(label: string): string {
  if (label === '(idle)') return '#d9d9d9';
  if (label === '(garbage collector)' || label === '(program)') return '#e45756';
  if (/ (src|bench)\//.test(label)) return '#4c78a8';
  // Node.js's own JavaScript, and native functions (no file: writev, the parser...).
  if (/ node:/.test(label) || !label.includes(' ')) return '#bab0ac';
  return '#f58518';
}

export function flameSvg(title: string, subtitle: string, root: FlameNode): string {
  const boxes: string[] = [];
  let depth = 0;
  const scale = root.us > 0 ? WIDTH / root.us : 0;
  const draw = (node: FlameNode, x: number, level: number): void => {
    const w = node.us * scale;
    if (w < MIN_BOX_PX) return;
    depth = Math.max(depth, level + 1);
    const y = TOP + level * ROW;
    const pct = root.us > 0 ? (100 * node.us) / root.us : 0;
    const tip = `${node.label}: ${(node.us / 1000).toFixed(1)} ms, ${pct.toFixed(1)}%`;
    const chars = Math.floor((w - 4) / CHAR_PX);
    const text = chars >= 3 ? (node.label.length <= chars ? node.label : node.label.slice(0, chars - 1) + '…') : '';
    boxes.push(
      `<g><title>${esc(tip)}</title><rect x="${x.toFixed(2)}" y="${y}" width="${w.toFixed(2)}" height="${ROW - 1}" fill="${color(node.label)}" rx="1"/>` +
        (text ? `<text x="${(x + 2).toFixed(2)}" y="${y + 12}">${esc(text)}</text>` : '') +
        '</g>',
    );
    let cx = x;
    for (const c of node.children) {
      draw(c, cx, level + 1);
      cx += c.us * scale;
    }
  };
  draw(root, 0, 0);
  const height = TOP + depth * ROW + 24;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="monospace" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="4" y="20" font-size="15" font-family="sans-serif">${esc(title)}</text>`,
    `<text x="4" y="40" font-family="sans-serif" fill="#555">${esc(subtitle)}</text>`,
    ...boxes,
    `<text x="4" y="${height - 8}" font-family="sans-serif" fill="#555">blue: Tern · orange: libraries · grey: Node.js and native code · red: GC and unattributed V8 work · light grey: idle (waiting for I/O). Hover a box for its time.</text>`,
    '</svg>',
    '',
  ].join('\n');
}
