/**
 * `tern token create --name N --scopes append,read [--prefix P]...`: makes a
 * new random client token, prints it once (it is stored nowhere) and the line
 * to add to the replicas' --tokens-file, which holds only its SHA-256.
 */
import { parseArgs } from 'node:util';
import { SCOPES, TokensFileError, generateToken, tokenLine, type Scope } from '../auth/tokens.js';
import { ConfigError } from '../replica/config.js';

export function tokenUsage(): string {
  return `Usage: tern token create --name NAME --scopes SCOPE[,SCOPE...] [--prefix P]...
  --name NAME      who holds the token (shown in replica logs), 1-64 chars of [A-Za-z0-9_.@-]
  --scopes LIST    comma-separated: ${SCOPES.join(', ')} (admin: create, delete, truncate, recover,
                   hand off, and everything append and read allow)
  --prefix P       limit the token to logs whose names start with P (repeatable); none: every log
Prints the token (keep it: it is not stored) and the JSON line to add to the tokens file.
The replicas pick the new line up on their own (SIGHUP, or within a second of the change).`;
}

export interface TokenArgs {
  name: string;
  scopes: Scope[];
  prefixes: string[];
}

export function parseTokenArgs(argv: string[]): TokenArgs {
  const [sub, ...rest] = argv;
  if (sub !== 'create') throw new ConfigError(`tern token: unknown subcommand "${sub ?? ''}" (only create)`);
  let values;
  try {
    ({ values } = parseArgs({
      args: rest,
      options: { name: { type: 'string' }, scopes: { type: 'string' }, prefix: { type: 'string', multiple: true } },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
  if (!values.name) throw new ConfigError('--name is required');
  if (!values.scopes) throw new ConfigError(`--scopes is required (${SCOPES.join(', ')})`);
  const scopes = values.scopes.split(',').map((s) => s.trim());
  const unknown = scopes.filter((s) => !(SCOPES as readonly string[]).includes(s));
  if (unknown.length > 0) throw new ConfigError(`--scopes: unknown ${unknown.join(', ')} (${SCOPES.join(', ')})`);
  return { name: values.name, scopes: scopes as Scope[], prefixes: values.prefix ?? [] };
}

export function runTokenCommand(args: TokenArgs): number {
  const token = generateToken();
  let line: string;
  try {
    line = tokenLine(token, args.name, args.scopes, args.prefixes);
  } catch (err) {
    if (err instanceof TokensFileError) throw new ConfigError(err.message.replace(/^the new line: /, ''));
    throw err;
  }
  console.log(`token (shown once, store it now):\n${token}\n\nadd this line to the tokens file (--tokens-file):\n${line}`);
  return 0;
}
