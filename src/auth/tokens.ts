/**
 * Client tokens, pure: the tokens file format (JSON lines of SHA-256 hashes,
 * never the tokens themselves), token generation and hashing, the lookup of a
 * presented token in constant time, and the scope and log-prefix rules that
 * decide what a token may do. No I/O: the HTTP layer (src/http/auth.ts) reads
 * the file and asks these functions.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/** What a token may do: `admin` covers every log command (and implies `append` and `read`). */
export const SCOPES = ['append', 'read', 'admin'] as const;
export type Scope = (typeof SCOPES)[number];

export interface TokenRecord {
  /** Who holds it: shown in logs, never secret. */
  readonly name: string;
  /** SHA-256 of the token, 32 bytes. */
  readonly hash: Buffer;
  readonly scopes: readonly Scope[];
  /** Log-name prefixes it covers; undefined: every log. */
  readonly prefixes: readonly string[] | undefined;
}

export class TokensFileError extends Error {
  override name = 'TokensFileError';
}

/** Marks the token kind in logs and secret scanners; the rest is 32 random bytes. */
const TOKEN_PREFIX = 'tern_';
const TOKEN_RANDOM_BYTES = 32;
const SHA256_HEX = /^[0-9a-f]{64}$/;
const NAME = /^[A-Za-z0-9_.@-]{1,64}$/;
/** Prefixes are leading parts of log names, so they use the log-name alphabet (src/http/bodies.ts). */
const PREFIX = /^[A-Za-z0-9._-]{1,128}$/;
const KEYS = new Set(['name', 'sha256', 'scopes', 'prefixes']);

export function generateToken(): string {
  return TOKEN_PREFIX + randomBytes(TOKEN_RANDOM_BYTES).toString('base64url');
}

export function hashToken(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

/** The line of the tokens file that grants `token` (what `tern token create` prints). */
export function tokenLine(token: string, name: string, scopes: readonly Scope[], prefixes?: readonly string[]): string {
  const line = { name, sha256: hashToken(token).toString('hex'), scopes, ...(prefixes && prefixes.length > 0 ? { prefixes } : {}) };
  // Checked as the file will be, so a bad --name or --prefix fails here rather than at the replicas.
  parseRecord(line, 'the new line');
  return JSON.stringify(line);
}

/**
 * The tokens file: one JSON object a line, `{"name", "sha256", "scopes", "prefixes"?}`;
 * blank lines and lines starting with # are ignored. Names and hashes are unique.
 * Throws TokensFileError naming the line.
 */
export function parseTokensFile(text: string): TokenRecord[] {
  const records: TokenRecord[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const where = `line ${i + 1}`;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (err) {
      throw new TokensFileError(`${where}: not JSON: ${(err as Error).message}`);
    }
    const record = parseRecord(value, where);
    if (records.some((r) => r.name === record.name)) throw new TokensFileError(`${where}: name "${record.name}" appears twice`);
    if (records.some((r) => r.hash.equals(record.hash))) throw new TokensFileError(`${where}: the same token hash appears twice`);
    records.push(record);
  });
  return records;
}

function parseRecord(value: unknown, where: string): TokenRecord {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new TokensFileError(`${where}: must be a JSON object`);
  const o = value as Record<string, unknown>;
  const unknown = Object.keys(o).filter((k) => !KEYS.has(k));
  // A plaintext token pasted in by mistake ("token": ...) must not be silently ignored.
  if (unknown.length > 0) throw new TokensFileError(`${where}: unknown keys ${unknown.join(', ')} (keys: ${[...KEYS].join(', ')})`);
  if (typeof o.name !== 'string' || !NAME.test(o.name)) throw new TokensFileError(`${where}: "name" must be 1-64 chars of [A-Za-z0-9_.@-]`);
  if (typeof o.sha256 !== 'string' || !SHA256_HEX.test(o.sha256)) throw new TokensFileError(`${where}: "sha256" must be 64 lower-case hex digits (the SHA-256 of the token)`);
  if (!Array.isArray(o.scopes) || o.scopes.length === 0 || !o.scopes.every((s) => (SCOPES as readonly unknown[]).includes(s))) {
    throw new TokensFileError(`${where}: "scopes" must be a non-empty list of ${SCOPES.join(', ')}`);
  }
  let prefixes: string[] | undefined;
  if (o.prefixes !== undefined) {
    // An empty list would read as "no logs" to some and "every log" to others: leave the key out for every log.
    if (!Array.isArray(o.prefixes) || o.prefixes.length === 0 || !o.prefixes.every((p) => typeof p === 'string' && PREFIX.test(p))) {
      throw new TokensFileError(`${where}: "prefixes" must be a non-empty list of log-name prefixes ([A-Za-z0-9._-]); leave it out for every log`);
    }
    prefixes = o.prefixes as string[];
  }
  return { name: o.name, hash: Buffer.from(o.sha256, 'hex'), scopes: [...new Set(o.scopes as Scope[])], prefixes };
}

/**
 * The record whose hash is the presented token's, or undefined. Every record
 * is compared, each with timingSafeEqual, so the time taken says nothing about
 * which hash, or how much of one, matched.
 */
export function findToken(records: readonly TokenRecord[], presented: string): TokenRecord | undefined {
  const hash = hashToken(presented);
  let found: TokenRecord | undefined;
  for (const r of records) if (timingSafeEqual(r.hash, hash) && found === undefined) found = r;
  return found;
}

/** The token of an `Authorization: Bearer <token>` header (scheme case-insensitive), or undefined. */
export function bearerToken(header: string | undefined): string | undefined {
  const m = /^Bearer +([\x21-\x7e]+) *$/i.exec(header ?? '');
  return m?.[1];
}

export function hasScope(record: TokenRecord, scope: Scope): boolean {
  return record.scopes.includes(scope) || record.scopes.includes('admin');
}

/** Whether the token's prefixes cover the log (a token with none covers every log). */
export function coversLog(record: TokenRecord, log: string): boolean {
  return record.prefixes === undefined || record.prefixes.some((p) => log.startsWith(p));
}
