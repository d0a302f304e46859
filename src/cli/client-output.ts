/**
 * How the client commands print: human tables, or one JSON object a line
 * (`--json`). Pure formatting, so the unit tests pin it.
 */
import type { Entry, LogStatus, ReaderStatus, RetentionPolicy } from '../client/types.js';
import { durationText, sizeText } from './units.js';

/** Columns padded to their widest cell; the last column is not padded. */
export function table(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n');
}

/** An entry's bytes as text when they are printable UTF-8, else undefined. */
export function textOf(data: Buffer): string | undefined {
  const text = data.toString('utf8');
  if (!Buffer.from(text, 'utf8').equals(data)) return undefined;
  // Control characters (but tab) would break a line-per-entry listing.
  return /[\u0000-\u0008\u000a-\u001f\u007f]/.test(text) ? undefined : text;
}

/** A time as the commands print it: ISO 8601 in UTC, or `-` for 0 (an entry written before timestamps). */
export function timeText(timeMs: number): string {
  return timeMs > 0 ? new Date(timeMs).toISOString() : '-';
}

/** One entry as a JSON line: `timeMs` as the server gives it, `data` base64 (lossless), `text` its UTF-8 when printable. */
export function entryJson(entry: Entry): string {
  const text = textOf(entry.data);
  return JSON.stringify({ id: entry.id, timeMs: entry.timeMs, data: entry.data.toString('base64'), ...(text === undefined ? {} : { text }) });
}

/** One entry as a human line: id, time, the text (or base64: prefix for binary), tab-separated. */
export function entryLine(entry: Entry): string {
  const text = textOf(entry.data);
  return `${entry.id}\t${timeText(entry.timeMs)}\t${text ?? `base64:${entry.data.toString('base64')}`}`;
}

const idText = (id: number | null) => (id === null || id < 0 ? '-' : String(id));

export function statusTable(s: LogStatus): string {
  const head = table([
    ['log', s.log],
    ['leader', s.leader ?? (s.quiesced ? '(none: quiesced, the next append reopens it)' : '(none)')],
    ['epoch', String(s.epoch)],
    ['committed id', idText(s.committedId)],
    ['flushed id', idText(s.flushedId)],
    ['first id', idText(s.firstId)],
    ['flush lag', `${s.flushLag?.entries ?? 0} entries, ${s.flushLag?.bytes ?? 0} bytes`],
    ['retention', retentionText(s.retention ?? {})],
    ...(s.retentionHeldBy ? [['held by', `reader ${s.retentionHeldBy.reader} at id ${s.retentionHeldBy.nextId} (${s.retentionHeldBy.entries} entries the policy would remove)`]] : []),
  ]);
  const segs = table([
    ['EPOCH', 'FIRST', 'LAST', 'SEALED', 'CLEAN', 'REPLICAS'],
    ...(s.segments ?? []).map((g) => [String(g.epoch), idText(g.firstId), idText(g.lastId), g.sealed ? 'yes' : 'no', g.closedClean ? 'yes' : 'no', Object.keys(g.replicas ?? {}).join(',')]),
  ]);
  const readers = s.readers?.length ? `\nreaders:\n${readersTable(s.readers).replace(/^/gm, '  ')}` : '';
  return `${head}\nsegments:\n${segs.replace(/^/gm, '  ')}${readers}`;
}

/** A retention policy in the units its flags take: `max age 7d, max bytes 10GiB`, or `none`. */
export function retentionText(policy: RetentionPolicy): string {
  const limits = [
    policy.maxAgeMs === undefined ? undefined : `max age ${durationText(policy.maxAgeMs)}`,
    policy.maxBytes === undefined ? undefined : `max bytes ${sizeText(policy.maxBytes)}`,
    policy.maxEntries === undefined ? undefined : `max entries ${policy.maxEntries}`,
  ].filter((l) => l !== undefined);
  return limits.length === 0 ? 'none' : limits.join(', ');
}

/** Named readers as a table: position, whether each holds retention, lag, last commit. */
export function readersTable(readers: readonly ReaderStatus[]): string {
  return table([['NAME', 'NEXT ID', 'HOLDS', 'LAG', 'UPDATED'], ...readers.map((r) => [r.name, String(r.nextId), r.holdsRetention ? 'yes' : 'no', String(r.lagEntries), r.updatedAt])]);
}
