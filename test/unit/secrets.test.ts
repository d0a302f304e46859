/**
 * The files the configuration names are read and checked at start-up
 * (src/replica/secrets.ts): every way they can be wrong is a ConfigError
 * naming the option, before anything listens.
 */
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalCa } from '../../src/cli/local-ca.js';
import { ConfigError, parseReplicaConfig } from '../../src/replica/config.js';
import { loadSecrets, plainRemoteEndpoint } from '../../src/replica/secrets.js';

let dir: string;
const file = (name: string, text: string, mode = 0o600) => {
  const path = join(dir, name);
  writeFileSync(path, text, { mode });
  return path;
};
const load = (argv: string[], env: NodeJS.ProcessEnv = {}) => loadSecrets(parseReplicaConfig(['--id', 'r1', ...argv], env));
let tlsArgs: (cert?: string, key?: string) => string[];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tern-secrets-'));
  const ca = await LocalCa.create();
  const r1 = await ca.issue('r1');
  const r2 = await ca.issue('r2');
  file('ca.crt', ca.certPem);
  file('r1.crt', r1.cert);
  file('r1.key', r1.key);
  file('r2.crt', r2.cert);
  file('r2.key', r2.key);
  tlsArgs = (cert = 'r1.crt', key = 'r1.key') => ['--tls-ca', join(dir, 'ca.crt'), '--tls-cert', join(dir, cert), '--tls-key', join(dir, key)];
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('secrets read at start-up', () => {
  it('loads nothing when nothing is configured: plain HTTP, no etcd credentials, the SDK chain', () => {
    expect(load([])).toEqual({ tls: undefined, etcd: {}, s3: undefined });
  });

  it('loads a replica certificate that names this replica and matches its key', () => {
    const secrets = load(tlsArgs());
    expect(secrets.tls!.cert.toString()).toContain('BEGIN CERTIFICATE');
    expect(secrets.tls!.key.toString()).toContain('PRIVATE KEY');
  });

  it.each([
    ['a missing file', () => tlsArgs('nope.crt'), /--tls-cert: cannot read .*nope\.crt \(ENOENT\)/],
    ['a key that is not the certificate\'s', () => tlsArgs('r1.crt', 'r2.key'), /--tls-key is not the key of --tls-cert/],
    ['a certificate of another replica', () => tlsArgs('r2.crt', 'r2.key'), /must name this replica by the URI SAN tern:\/\/replica\/r1; it names r2/],
    ['a key that is not PEM', () => tlsArgs('r1.crt', 'ca.crt'), /--tls-key is not a PEM private key/],
    ['a certificate that is not PEM', () => tlsArgs('r1.key', 'r1.key'), /--tls-cert is not a PEM certificate/],
  ])('refuses %s', (_what, argv, message) => {
    expect(() => load(argv())).toThrow(ConfigError);
    expect(() => load(argv())).toThrow(message);
  });

  it('refuses an unreadable file', () => {
    // root reads any file whatever its mode: a directory is unreadable as a file for everyone.
    const unreadable = process.getuid?.() === 0 ? dir : file('locked.key', 'x', 0o000);
    expect(() => load(['--tls-ca', join(dir, 'ca.crt'), '--tls-cert', join(dir, 'r1.crt'), '--tls-key', unreadable])).toThrow(/--tls-key: cannot read/);
    if (unreadable !== dir) chmodSync(unreadable, 0o600);
  });

  it('reads the etcd CA, client certificate and password file (trailing newline dropped)', () => {
    const secrets = load(['--etcd', 'https://etcd:2379', '--etcd-ca', join(dir, 'ca.crt'), '--etcd-cert', join(dir, 'r1.crt'), '--etcd-key', join(dir, 'r1.key'), '--etcd-user', 'tern', '--etcd-password-file', file('etcd-pw', 'swordfish\n')]);
    expect(secrets.etcd.credentials!.rootCertificate.toString()).toContain('BEGIN CERTIFICATE');
    expect(secrets.etcd.credentials!.privateKey).toBeDefined();
    expect(secrets.etcd.auth).toEqual({ username: 'tern', password: 'swordfish' });
    expect(load(['--etcd-user', 'tern'], { TERN_ETCD_PASSWORD: 'from-env' }).etcd.auth).toEqual({ username: 'tern', password: 'from-env' });
    expect(() => load(['--etcd-user', 'tern', '--etcd-password-file', file('empty-pw', '\n')])).toThrow(/password of --etcd-user is empty/);
  });

  it('reads object store credentials from the environment or a JSON file, and says what a bad file must hold without quoting it', () => {
    expect(load([], { TERN_S3_ACCESS_KEY_ID: 'AKIA1', TERN_S3_SECRET_ACCESS_KEY: 'hunter2' }).s3).toEqual({ accessKeyId: 'AKIA1', secretAccessKey: 'hunter2' });
    const good = file('s3.json', JSON.stringify({ accessKeyId: 'AKIA2', secretAccessKey: 'hunter3', sessionToken: 'tok' }));
    expect(load(['--s3-credentials-file', good]).s3).toEqual({ accessKeyId: 'AKIA2', secretAccessKey: 'hunter3', sessionToken: 'tok' });
    const notJson = file('bad.json', 'accessKeyId=hunter4');
    expect(() => load(['--s3-credentials-file', notJson])).toThrow(/is not JSON/);
    expect(() => load(['--s3-credentials-file', notJson])).not.toThrow(/hunter4/);
    expect(() => load(['--s3-credentials-file', file('half.json', '{"accessKeyId": "a"}')])).toThrow(/must hold \{"accessKeyId"/);
  });
});

describe('object store endpoints worth a warning', () => {
  it.each([
    ['http://minio:9000', true],
    ['http://10.0.0.5:9000', true],
    ['https://s3.eu-west-1.amazonaws.com', false],
    ['http://127.0.0.1:7390', false],
    ['http://localhost:9000', false],
    ['http://[::1]:9000', false],
  ])('%s: plain and remote = %s', (endpoint, warn) => {
    expect(plainRemoteEndpoint(endpoint)).toBe(warn);
  });
});
