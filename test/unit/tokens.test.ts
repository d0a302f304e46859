/**
 * Client tokens: the tokens file format, hashing, constant-time lookup, the
 * scope and prefix rules (src/auth/tokens.ts), and the reload rules of the
 * file on a replica (src/auth/token-file.ts: a bad reload keeps the old tokens).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { TokenFile } from '../../src/auth/token-file.js';
import { bearerToken, coversLog, findToken, generateToken, hasScope, hashToken, parseTokensFile, tokenLine, TokensFileError, type Scope } from '../../src/auth/tokens.js';
import { parseTokenArgs, runTokenCommand } from '../../src/cli/token-command.js';
import { ConfigError } from '../../src/replica/config.js';

const line = (token: string, name: string, scopes: Scope[], prefixes?: string[]) => tokenLine(token, name, scopes, prefixes);

describe('tokens file', () => {
  it('holds the SHA-256 of each token, never the token, and reads back what tern token create writes', () => {
    const token = generateToken();
    expect(token).toMatch(/^tern_[A-Za-z0-9_-]{43}$/);
    const text = `# tenants\n\n${line(token, 'a-writer', ['append', 'read'], ['tenant-a.'])}\n${line(generateToken(), 'ops', ['admin'])}\n`;
    expect(text).not.toContain(token);
    const [writer, ops] = parseTokensFile(text);
    expect(writer).toMatchObject({ name: 'a-writer', scopes: ['append', 'read'], prefixes: ['tenant-a.'] });
    expect(writer!.hash.equals(hashToken(token))).toBe(true);
    expect(ops!.prefixes).toBeUndefined();
  });

  it.each([
    ['not json', /line 1: not JSON/],
    ['[1]', /must be a JSON object/],
    ['{"name":"x","sha256":"' + 'a'.repeat(64) + '","scopes":["read"],"token":"tern_x"}', /unknown keys token/],
    ['{"name":"bad name","sha256":"' + 'a'.repeat(64) + '","scopes":["read"]}', /"name"/],
    ['{"name":"x","sha256":"abc","scopes":["read"]}', /"sha256"/],
    ['{"name":"x","sha256":"' + 'a'.repeat(64) + '","scopes":[]}', /"scopes"/],
    ['{"name":"x","sha256":"' + 'a'.repeat(64) + '","scopes":["write"]}', /"scopes"/],
    ['{"name":"x","sha256":"' + 'a'.repeat(64) + '","scopes":["read"],"prefixes":[]}', /"prefixes"/],
    ['{"name":"x","sha256":"' + 'a'.repeat(64) + '","scopes":["read"],"prefixes":["a/b"]}', /"prefixes"/],
    [`{"name":"x","sha256":"${'a'.repeat(64)}","scopes":["read"]}\n{"name":"x","sha256":"${'b'.repeat(64)}","scopes":["read"]}`, /line 2: name "x" appears twice/],
    [`{"name":"x","sha256":"${'a'.repeat(64)}","scopes":["read"]}\n{"name":"y","sha256":"${'a'.repeat(64)}","scopes":["read"]}`, /line 2: the same token hash/],
  ])('refuses %s, naming the line', (text, message) => {
    expect(() => parseTokensFile(text)).toThrow(TokensFileError);
    expect(() => parseTokensFile(text)).toThrow(message);
  });

  it('refuses to write a line the file would refuse', () => {
    expect(() => tokenLine('t', 'bad name', ['read'])).toThrow(/"name"/);
  });
});

describe('token rules', () => {
  const a = generateToken();
  const b = generateToken();
  const records = parseTokensFile([line(a, 'reader', ['read'], ['tenant-a.', 'shared.']), line(b, 'admin', ['admin'])].join('\n'));

  it('finds a presented token by its hash, and nothing for an unknown one', () => {
    expect(findToken(records, a)?.name).toBe('reader');
    expect(findToken(records, b)?.name).toBe('admin');
    expect(findToken(records, a + 'x')).toBeUndefined();
    expect(findToken([], a)).toBeUndefined();
  });

  it('reads Authorization: Bearer <token>, scheme in any case, and nothing else', () => {
    expect(bearerToken(`Bearer ${a}`)).toBe(a);
    expect(bearerToken(`bearer ${a}`)).toBe(a);
    for (const h of [undefined, '', 'Bearer', 'Bearer ', `Basic ${a}`, `Bearer ${a} extra`]) expect(bearerToken(h), String(h)).toBeUndefined();
  });

  it('grants a scope held, and every scope to admin', () => {
    const [reader, admin] = records;
    expect(hasScope(reader!, 'read')).toBe(true);
    expect(hasScope(reader!, 'append')).toBe(false);
    expect(hasScope(reader!, 'admin')).toBe(false);
    for (const scope of ['append', 'read', 'admin'] as const) expect(hasScope(admin!, scope)).toBe(true);
  });

  it('covers the logs its prefixes start, or every log without prefixes', () => {
    const [reader, admin] = records;
    expect(coversLog(reader!, 'tenant-a.x')).toBe(true);
    expect(coversLog(reader!, 'shared.y')).toBe(true);
    expect(coversLog(reader!, 'tenant-b.x')).toBe(false);
    expect(coversLog(reader!, 'tenant-a')).toBe(false);
    expect(coversLog(admin!, 'anything')).toBe(true);
  });
});

describe('tokens file on a replica', () => {
  const dirs: string[] = [];
  const files: TokenFile[] = [];
  afterEach(() => {
    for (const f of files.splice(0)) f.close();
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  const logger = pino({ level: 'silent' });

  function setUp(text: string) {
    const dir = mkdtempSync(join(tmpdir(), 'tern-tokens-'));
    dirs.push(dir);
    const path = join(dir, 'tokens.jsonl');
    writeFileSync(path, text);
    const events: string[] = [];
    const open = () => {
      const f = TokenFile.open(path, logger, { loaded: (n) => events.push(`loaded ${n}`), reloaded: (r) => events.push(`reload ${r}`) });
      files.push(f);
      return f;
    };
    return { path, events, open };
  }

  it('is a ConfigError at start-up when bad or missing', () => {
    expect(() => setUp('nope').open()).toThrow(ConfigError);
    const { path, open } = setUp('');
    rmSync(path);
    expect(open).toThrow(/--tokens-file .*ENOENT/);
  });

  it('takes a good new file on reload, and keeps the tokens in force when the new one is bad', () => {
    const [t1, t2] = [generateToken(), generateToken()];
    const { path, events, open } = setUp(line(t1, 'one', ['read']));
    const file = open();
    expect(file.find(t1)?.name).toBe('one');
    writeFileSync(path, line(t2, 'two', ['read']));
    file.reload('test');
    expect(file.find(t1)).toBeUndefined();
    expect(file.find(t2)?.name).toBe('two');
    writeFileSync(path, '{broken');
    file.reload('test');
    expect(file.find(t2)?.name).toBe('two');
    file.reload('test');
    rmSync(path);
    file.reload('test');
    expect(file.find(t2)?.name).toBe('two');
    expect(events).toEqual(['loaded 1', 'reload ok', 'loaded 1', 'reload failed', 'reload failed', 'reload failed']);
  });
});

describe('tern token create', () => {
  it('prints a new token once and the line that grants it, with its scopes and prefixes', () => {
    const log = vi.spyOn(console, 'log').mockImplementation(() => {});
    try {
      runTokenCommand(parseTokenArgs(['create', '--name', 'writer-a', '--scopes', 'append,read', '--prefix', 'tenant-a.', '--prefix', 'shared.']));
      const out = String(log.mock.calls[0]![0]);
      const token = /^(tern_\S+)$/m.exec(out)![1]!;
      const printed = out.split('\n').find((l) => l.startsWith('{'))!;
      const [record] = parseTokensFile(printed);
      expect(findToken([record!], token)).toMatchObject({ name: 'writer-a', scopes: ['append', 'read'], prefixes: ['tenant-a.', 'shared.'] });
    } finally {
      log.mockRestore();
    }
  });

  it.each([
    [['list'], /unknown subcommand/],
    [['create', '--scopes', 'read'], /--name is required/],
    [['create', '--name', 'x'], /--scopes is required/],
    [['create', '--name', 'x', '--scopes', 'read,write'], /unknown write/],
    [['create', '--name', 'x', '--scopes', 'read', '--prefix', 'a/b'], /prefixes/],
  ])('refuses %j with a ConfigError', (argv, message) => {
    expect(() => runTokenCommand(parseTokenArgs(argv as string[]))).toThrow(ConfigError);
    expect(() => runTokenCommand(parseTokenArgs(argv as string[]))).toThrow(message as RegExp);
  });
});
