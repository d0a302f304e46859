import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { ConfigError, envOf, flagOf, parseReplicaConfig, peerRouteMap, replicaOptions, replicaUsage } from '../../src/replica/config.js';
import { REPLICA_NODE_FLAGS, missingNodeFlags } from '../../src/replica/node-flags.js';

describe('replica configuration', () => {
  it('derives flags and environment variables from option names', () => {
    expect(flagOf('ackTimeoutMs')).toBe('--ack-timeout-ms');
    expect(envOf('ackTimeoutMs')).toBe('TERN_ACK_TIMEOUT_MS');
  });

  it('applies defaults, lets flags win over the environment, and freezes the result', () => {
    const config = parseReplicaConfig(['--id', 'r1', '--ack-timeout-ms', '1500'], { TERN_ACK_TIMEOUT_MS: '9000', TERN_PEER_PORT: '9101' });
    expect(config.ackTimeoutMs).toBe(1500);
    expect(config.peerPort).toBe(9101);
    expect(config.clientPort).toBe(replicaOptions.clientPort.default);
    expect(config.advertiseHost).toBe(config.host);
    expect(config.etcd).toEqual(['http://127.0.0.1:2379']);
    expect(Object.isFrozen(config)).toBe(true);
  });

  it('splits lists and checks enums', () => {
    expect(parseReplicaConfig(['--id', 'r2', '--etcd', 'http://a:1, http://b:2'], {}).etcd).toEqual(['http://a:1', 'http://b:2']);
    expect(() => parseReplicaConfig(['--id', 'r2', '--log-level', 'loud'], {})).toThrow(/log-level.*one of/);
  });

  it('reads peer routes as id=URL pairs and refuses anything else', () => {
    const config = parseReplicaConfig(['--id', 'r1', '--peer-routes', 'r2=http://127.0.0.1:9002/,r3=http://10.0.0.3:7103'], {});
    expect([...peerRouteMap(config.peerRoutes)]).toEqual([['r2', 'http://127.0.0.1:9002'], ['r3', 'http://10.0.0.3:7103']]);
    expect(peerRouteMap(parseReplicaConfig(['--id', 'r1'], {}).peerRoutes).size).toBe(0);
    expect(() => parseReplicaConfig(['--id', 'r1', '--peer-routes', 'r2:http://x:1'], {})).toThrow(/--peer-routes takes id=URL pairs/);
  });

  it.each([
    [[], /--id .*required/],
    [['--id', 'bad id'], /--id must be/],
    [['--id', 'r1', '--client-port', 'abc'], /--client-port .* must be an integer/],
    [['--id', 'r1', '--client-port', '70000'], /within \[0, 65535\]/],
    [['--id', 'r1', '--nope', '1'], /nope/],
    [['--id', 'r1', '--replicas', '5'], /--replicas/],
    [['--id', 'r1', '--max-entry-bytes', '9000', '--max-request-bytes', '4096'], /must not exceed/],
    [['--id', 'r1', '--headers-timeout-ms', '9000', '--request-timeout-ms', '4000'], /--headers-timeout-ms must not exceed --request-timeout-ms/],
    [['--id', 'r1', '--tls-cert', 'r1.crt'], /--tls-cert needs --tls-key and --tls-ca/],
    [['--id', 'r1', '--tls-cert', 'r1.crt', '--tls-ca', 'ca.crt'], /--tls-cert, --tls-ca needs --tls-key/],
    [['--id', 'r1', '--tls-key', 'r1.key'], /needs --tls-cert and --tls-ca/],
    [['--id', 'r1', '--etcd-cert', 'e.crt', '--etcd-key', 'e.key'], /--etcd-cert needs --etcd-ca/],
    [['--id', 'r1', '--etcd-ca', 'ca.crt'], /--etcd-ca goes with https:\/\/ etcd endpoints/],
    [['--id', 'r1', '--etcd', 'https://etcd:2379'], /--etcd-ca goes with https:\/\/ etcd endpoints/],
    [['--id', 'r1', '--etcd-user', 'tern'], /--etcd-user needs a password/],
    [['--id', 'r1', '--etcd-password-file', 'pw'], /--etcd-user needs a password/],
    [['--id', 'r1', '--s3-secret-access-key', 'hunter2'], /--s3-secret-access-key is refused: .*ps\. Set TERN_S3_SECRET_ACCESS_KEY or use --s3-credentials-file/],
    [['--id', 'r1', '--s3-access-key-id', 'AKIA'], /--s3-access-key-id is refused/],
    [['--id', 'r1', '--etcd-user', 'u', '--etcd-password', 'hunter2'], /--etcd-password is refused: .*TERN_ETCD_PASSWORD or use --etcd-password-file/],
  ])('rejects %j with a message for people', (argv, message) => {
    expect(() => parseReplicaConfig(argv as string[], {})).toThrow(ConfigError);
    expect(() => parseReplicaConfig(argv as string[], {})).toThrow(message as RegExp);
  });

  it('takes secrets from the environment only and keeps them out of what a log of the config would print', () => {
    const config = parseReplicaConfig(['--id', 'r1', '--etcd-user', 'tern'], { TERN_S3_ACCESS_KEY_ID: 'AKIA1', TERN_S3_SECRET_ACCESS_KEY: 'hunter2', TERN_ETCD_PASSWORD: 'swordfish' });
    expect([config.s3AccessKeyId, config.s3SecretAccessKey, config.etcdPassword]).toEqual(['AKIA1', 'hunter2', 'swordfish']);
    const printed = JSON.stringify(config);
    for (const secret of ['AKIA1', 'hunter2', 'swordfish']) expect(printed).not.toContain(secret);
    expect(printed).toContain('"etcdUser":"tern"');
  });

  it.each([
    [{ TERN_S3_ACCESS_KEY_ID: 'AKIA1' }, /--s3-access-key-id needs --s3-secret-access-key/],
    [{ TERN_S3_ACCESS_KEY_ID: 'a', TERN_S3_SECRET_ACCESS_KEY: 'b', TERN_S3_CREDENTIALS_FILE: '/x.json' }, /credentials once/],
    [{ TERN_ETCD_USER: 'u', TERN_ETCD_PASSWORD: 'p', TERN_ETCD_PASSWORD_FILE: '/pw' }, /etcd password once/],
    [{ TERN_ETCD_PASSWORD: 'p' }, /a password needs --etcd-user/],
  ])('rejects the environment %j', (env, message) => {
    expect(() => parseReplicaConfig(['--id', 'r1'], env)).toThrow(ConfigError);
    expect(() => parseReplicaConfig(['--id', 'r1'], env)).toThrow(message);
  });

  it('documents every option in the usage text', () => {
    const usage = replicaUsage();
    for (const name of Object.keys(replicaOptions)) expect(usage).toContain(flagOf(name));
  });
});

describe('node flags of a replica process', () => {
  it('names the flags node was started without, whatever value a present one has', () => {
    expect(missingNodeFlags([])).toEqual([...REPLICA_NODE_FLAGS]);
    expect(missingNodeFlags(['--cpu-prof', ...REPLICA_NODE_FLAGS])).toEqual([]);
    // An operator's own heap floor counts: the flag is there, its size is theirs to pick.
    expect(missingNodeFlags(['--initial-old-space-size=1024'])).toEqual([]);
    expect(missingNodeFlags(['--max-old-space-size=256'])).toEqual(['--initial-old-space-size=256']);
  });
});

describe('README configuration table', () => {
  it('has one row per option, with its environment variable and its documentation', () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    const rows = readme.split('\n').filter((line) => /^\| `--[a-z0-9-]+` \|/.test(line));
    const flags = rows.map((line) => /^\| `(--[a-z0-9-]+)`/.exec(line)![1]);
    expect(flags).toEqual(Object.keys(replicaOptions).map(flagOf));
    for (const [name, spec] of Object.entries(replicaOptions)) {
      const row = rows.find((line) => line.startsWith(`| \`${flagOf(name)}\` |`))!;
      expect(row).toContain(`\`${envOf(name)}\``);
      expect(row).toContain(spec.doc);
    }
  });
});
