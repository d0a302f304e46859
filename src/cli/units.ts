/**
 * The units the client commands take: durations (`--since 10m`, `--max-age
 * 7d`), sizes (`--max-bytes 10GiB`) and points in time (`--from-time`, ISO
 * 8601 or ms since the Unix epoch). Pure, so the unit tests pin them; a bad
 * value is a usage error (exit 2).
 */
import { ConfigError } from '../replica/config.js';

const DURATION_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const SIZE_BYTES: Record<string, number> = { B: 1, KiB: 2 ** 10, MiB: 2 ** 20, GiB: 2 ** 30, TiB: 2 ** 40, KB: 1e3, MB: 1e6, GB: 1e9, TB: 1e12 };

/** A whole number with a unit from `units` (a bare number takes `bare`), as a positive safe integer of the base unit. */
function withUnit(text: string, units: Record<string, number>, bare: string | undefined, flag: string, what: string): number {
  const m = /^(\d+)([A-Za-z]*)$/.exec(text);
  const unit = m?.[2] || bare;
  const scale = unit === undefined ? undefined : units[unit];
  const value = m && scale !== undefined ? Number(m[1]) * scale : Number.NaN;
  if (!Number.isSafeInteger(value) || value <= 0) throw new ConfigError(`${flag} must be ${what}, got "${text}"`);
  return value;
}

/** `30s`, `10m`, `2h`, `7d` (also `ms`) as milliseconds. */
export function parseDuration(text: string, flag: string): number {
  return withUnit(text, DURATION_MS, undefined, flag, 'a positive duration such as 30s, 10m, 2h or 7d (units ms, s, m, h, d)');
}

/** `10GiB`, `500MB`, `4096` (bytes) as bytes. */
export function parseSize(text: string, flag: string): number {
  return withUnit(text, SIZE_BYTES, 'B', flag, 'a positive size such as 4096, 512MiB or 10GiB (units B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)');
}

/** A point in time: ISO 8601 (`2026-12-03T16:00:00Z`; without a zone, local time) or ms since the Unix epoch. */
export function parseTime(text: string, flag: string): number {
  const ms = /^\d+$/.test(text) ? Number(text) : /^\d{4}-\d{2}-\d{2}/.test(text) ? Date.parse(text) : Number.NaN;
  if (!Number.isSafeInteger(ms) || ms < 0) throw new ConfigError(`${flag} must be an ISO 8601 time (2026-12-03T16:00:00Z) or ms since the Unix epoch, got "${text}"`);
  return ms;
}

/** The largest of `units` that divides `value` exactly, as `<n><unit>` (units ordered smallest first). */
function inUnit(value: number, units: Record<string, number>, order: readonly string[]): string {
  for (let i = order.length - 1; i > 0; i--) if (value % units[order[i]!]! === 0) return `${value / units[order[i]!]!}${order[i]}`;
  return `${value}${order[0]}`;
}

/** A duration as `--max-age` takes it: `7d`, `90m`, `1500ms`. */
export function durationText(ms: number): string {
  return inUnit(ms, DURATION_MS, ['ms', 's', 'm', 'h', 'd']);
}

/** A size as `--max-bytes` takes it, in binary units: `10GiB`, `1000B`. */
export function sizeText(bytes: number): string {
  return inUnit(bytes, SIZE_BYTES, ['B', 'KiB', 'MiB', 'GiB', 'TiB']);
}
