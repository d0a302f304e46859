/**
 * Owns what the configuration points at rather than holds: the TLS
 * certificates and keys, the etcd credentials and the object store
 * credentials. Read and checked once at start-up, with the configuration: a
 * missing or unreadable file, a key that is not the certificate's, a
 * certificate that names another replica are a ConfigError (exit 2) before
 * anything listens, not a handshake failure later.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import type { EtcdCredentials } from '../fencing/directory.js';
import type { S3Credentials } from '../flusher/object-store.js';
import { replicaIdOfAltNames, type TlsMaterial } from '../peer/tls.js';
import { ConfigError, flagOf, type ReplicaConfig } from './config.js';

export interface Secrets {
  /** Undefined: plain HTTP on both listeners and to peers. */
  tls: TlsMaterial | undefined;
  etcd: EtcdCredentials;
  /** Undefined: the AWS SDK's default credential chain. */
  s3: S3Credentials | undefined;
}

type FileOption = 'tlsCert' | 'tlsKey' | 'tlsCa' | 'etcdCa' | 'etcdCert' | 'etcdKey' | 'etcdPasswordFile' | 's3CredentialsFile';

export function loadSecrets(config: ReplicaConfig): Secrets {
  return { tls: loadTls(config), etcd: loadEtcd(config), s3: loadS3(config) };
}

function loadTls(config: ReplicaConfig): TlsMaterial | undefined {
  if (!config.tlsCert) return undefined;
  const material = { cert: readOption(config, 'tlsCert'), key: readOption(config, 'tlsKey'), ca: readOption(config, 'tlsCa') };
  const cert = certificate(material.cert, 'tlsCert');
  certificate(material.ca, 'tlsCa');
  if (!cert.checkPrivateKey(privateKey(material.key, 'tlsKey'))) throw new ConfigError(`${flagOf('tlsKey')} is not the key of ${flagOf('tlsCert')}`);
  const named = replicaIdOfAltNames(cert.subjectAltName);
  if (named !== config.id) {
    throw new ConfigError(`${flagOf('tlsCert')} must name this replica by the URI SAN tern://replica/${config.id}; it names ${named ?? 'no replica'}`);
  }
  return material;
}

function loadEtcd(config: ReplicaConfig): EtcdCredentials {
  const out: EtcdCredentials = {};
  if (config.etcdCa) {
    out.credentials = { rootCertificate: readOption(config, 'etcdCa') };
    certificate(out.credentials.rootCertificate, 'etcdCa');
    if (config.etcdCert) {
      out.credentials.certChain = readOption(config, 'etcdCert');
      out.credentials.privateKey = readOption(config, 'etcdKey');
      const cert = certificate(out.credentials.certChain, 'etcdCert');
      if (!cert.checkPrivateKey(privateKey(out.credentials.privateKey, 'etcdKey'))) throw new ConfigError(`${flagOf('etcdKey')} is not the key of ${flagOf('etcdCert')}`);
    }
  }
  if (config.etcdUser) {
    const password = config.etcdPasswordFile ? readOption(config, 'etcdPasswordFile').toString('utf8').replace(/\r?\n$/, '') : config.etcdPassword;
    if (!password) throw new ConfigError(`the password of ${flagOf('etcdUser')} is empty`);
    out.auth = { username: config.etcdUser, password };
  }
  return out;
}

function loadS3(config: ReplicaConfig): S3Credentials | undefined {
  if (config.s3AccessKeyId) return { accessKeyId: config.s3AccessKeyId, secretAccessKey: config.s3SecretAccessKey };
  if (!config.s3CredentialsFile) return undefined;
  let parsed: Partial<Record<keyof S3Credentials, unknown>>;
  try {
    parsed = JSON.parse(readOption(config, 's3CredentialsFile').toString('utf8')) as typeof parsed;
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    // Not the parser's message: it may quote the file's contents.
    throw new ConfigError(`${flagOf('s3CredentialsFile')} ${config.s3CredentialsFile} is not JSON`);
  }
  const { accessKeyId, secretAccessKey, sessionToken } = parsed ?? {};
  if (typeof accessKeyId !== 'string' || !accessKeyId || typeof secretAccessKey !== 'string' || !secretAccessKey || (sessionToken !== undefined && typeof sessionToken !== 'string')) {
    throw new ConfigError(`${flagOf('s3CredentialsFile')} ${config.s3CredentialsFile} must hold {"accessKeyId": "...", "secretAccessKey": "...", "sessionToken": "..." (optional)}`);
  }
  return { accessKeyId, secretAccessKey, ...(sessionToken ? { sessionToken } : {}) };
}

function readOption(config: ReplicaConfig, option: FileOption): Buffer {
  const path = config[option];
  try {
    return readFileSync(path);
  } catch (err) {
    throw new ConfigError(`${flagOf(option)}: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
}

function certificate(pem: Buffer, option: FileOption): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch {
    throw new ConfigError(`${flagOf(option)} is not a PEM certificate`);
  }
}

function privateKey(pem: Buffer, option: FileOption): ReturnType<typeof createPrivateKey> {
  try {
    return createPrivateKey(pem);
  } catch {
    throw new ConfigError(`${flagOf(option)} is not a PEM private key`);
  }
}

/** True when an object store endpoint would carry data and credentials in the clear beyond this machine. */
export function plainRemoteEndpoint(endpoint: string): boolean {
  const url = new URL(endpoint);
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const loopback = host === 'localhost' || host === '::1' || (isIP(host) === 4 && host.startsWith('127.'));
  return url.protocol === 'http:' && !loopback;
}
