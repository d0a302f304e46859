/**
 * A throwaway certificate authority for `tern cluster --tls` and the tests:
 * a CA and, per replica, a certificate for both its listeners and its
 * outgoing peer connections (server and client use), valid for 127.0.0.1 and
 * localhost and naming the replica by the URI SAN tern://replica/<id>
 * (src/peer/tls.ts). node:crypto cannot issue X.509 certificates, so
 * @peculiar/x509 does it over Node's webcrypto. Never for production: the
 * CA's key lives only in this process's memory and is gone with it.
 */
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import { PEER_ID_URI_PREFIX } from '../peer/tls.js';

x509.cryptoProvider.set(webcrypto as Crypto);

const ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
/** Long enough for any local cluster or test run; the certificates are made anew at every start. */
const VALIDITY_MS = 30 * 24 * 3_600_000;
/** notBefore this far in the past, so a clock a little behind still accepts a certificate just made. */
const CLOCK_SKEW_MS = 5 * 60_000;

export interface IssuedCertificate {
  cert: string;
  key: string;
}

/** Where `writeLocalTls` put the files: the replica flags --tls-ca, --tls-cert, --tls-key take these paths. */
export interface LocalTlsFiles {
  dir: string;
  ca: string;
  /** The CA certificate itself (PEM), for clients that must trust it. */
  caPem: string;
  cert(id: string): string;
  key(id: string): string;
}

export class LocalCa {
  private serial = 1;

  private constructor(
    readonly certPem: string,
    private readonly subject: string,
    private readonly signingKey: CryptoKey,
  ) {}

  static async create(name = 'Tern local CA'): Promise<LocalCa> {
    const keys = await webcrypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify']);
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: '01',
      name: `CN=${name}`,
      ...validity(),
      keys,
      signingAlgorithm: ALGORITHM,
      extensions: [new x509.BasicConstraintsExtension(true, 0, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true)],
    });
    return new LocalCa(cert.toString('pem'), cert.subject, keys.privateKey);
  }

  /** A certificate for replica `id` on this machine (server and client use). */
  async issue(id: string): Promise<IssuedCertificate> {
    const keys = await webcrypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify']);
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: (++this.serial).toString(16).padStart(2, '0'),
      subject: `CN=${id}`,
      issuer: this.subject,
      ...validity(),
      signingKey: this.signingKey,
      publicKey: keys.publicKey,
      signingAlgorithm: ALGORITHM,
      extensions: [
        new x509.SubjectAlternativeNameExtension([
          { type: 'ip', value: '127.0.0.1' },
          { type: 'dns', value: 'localhost' },
          { type: 'url', value: `${PEER_ID_URI_PREFIX}${id}` },
        ]),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      ],
    });
    const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)).toString('base64');
    return { cert: cert.toString('pem'), key: `-----BEGIN PRIVATE KEY-----\n${pkcs8.match(/.{1,64}/g)!.join('\n')}\n-----END PRIVATE KEY-----\n` };
  }
}

/** Makes a CA and a certificate per replica, written under `dir` (keys 0600); the CA's key is not written. */
export async function writeLocalTls(dir: string, ids: readonly string[]): Promise<LocalTlsFiles> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const ca = await LocalCa.create();
  const files: LocalTlsFiles = { dir, ca: join(dir, 'ca.crt'), caPem: ca.certPem, cert: (id) => join(dir, `${id}.crt`), key: (id) => join(dir, `${id}.key`) };
  writeFileSync(files.ca, ca.certPem);
  for (const id of ids) {
    const issued = await ca.issue(id);
    writeFileSync(files.cert(id), issued.cert);
    writeFileSync(files.key(id), issued.key, { mode: 0o600 });
    // The mode above applies only to a new file: one left by an earlier run keeps its own.
    chmodSync(files.key(id), 0o600);
  }
  return files;
}

function validity(): { notBefore: Date; notAfter: Date } {
  const now = Date.now();
  return { notBefore: new Date(now - CLOCK_SKEW_MS), notAfter: new Date(now + VALIDITY_MS) };
}
