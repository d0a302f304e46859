/**
 * The tokens of a local authenticated cluster (`tern cluster --auth`, the
 * tests' authenticated clusters): one admin token, its hash in DIR/tokens.jsonl
 * (the replicas' --tokens-file) and the token itself in DIR/admin-token, mode
 * 0600, for scripts and test helpers on this machine.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateToken, tokenLine } from '../auth/tokens.js';

export const TOKENS_FILE = 'tokens.jsonl';
export const ADMIN_TOKEN_FILE = 'admin-token';
const ADMIN_TOKEN_NAME = 'local-admin';
/** Only the owner may read the token. */
const SECRET_FILE_MODE = 0o600;

/** Writes a new admin token (replacing any earlier one) and returns it with the tokens file's path. */
export function writeLocalAdminToken(dataDir: string): { token: string; tokensFile: string } {
  const token = generateToken();
  const tokensFile = join(dataDir, TOKENS_FILE);
  writeFileSync(join(dataDir, ADMIN_TOKEN_FILE), token + '\n', { mode: SECRET_FILE_MODE });
  writeFileSync(tokensFile, tokenLine(token, ADMIN_TOKEN_NAME, ['admin']) + '\n', { mode: SECRET_FILE_MODE });
  return { token, tokensFile };
}
