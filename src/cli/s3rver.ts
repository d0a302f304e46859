/**
 * Runs s3rver, a real S3-protocol server from npm, as its own process: the
 * object store of local clusters and tests (AWS S3 or MinIO in production).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, openSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { stopChild, waitForHttp } from './processes.js';

/** s3rver must answer for its bucket within this of its start (it takes about a second; a loaded CI machine, several). */
const START_TIMEOUT_MS = 20_000;

export const S3RVER_BUCKET = 'tern';
/** s3rver accepts these fixed credentials. */
export const S3RVER_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

export interface S3Server {
  endpoint: string;
  /** The JSON file of its credentials (0600), for --s3-credentials-file. */
  credentialsFile: string;
  process: ChildProcess;
  stop(): Promise<void>;
}

export async function startS3rver(options: { dataDir: string; port: number }): Promise<S3Server> {
  mkdirSync(options.dataDir, { recursive: true });
  const bin = join(dirname(createRequire(import.meta.url).resolve('s3rver/package.json')), 'bin', 's3rver.js');
  const endpoint = `http://127.0.0.1:${options.port}`;
  const log = openSync(join(options.dataDir, 's3rver.log'), 'a');
  const child = spawn(process.execPath, [bin, '-d', join(options.dataDir, 'data'), '-a', '127.0.0.1', '-p', String(options.port), '--configure-bucket', S3RVER_BUCKET, '--silent'], {
    stdio: ['ignore', log, log],
    // Its own process group: a Ctrl-C at the terminal must not stop the store before the replicas have flushed to it.
    detached: true,
  });
  try {
    await waitForHttp(`${endpoint}/${S3RVER_BUCKET}`, START_TIMEOUT_MS, child);
  } catch (err) {
    await stopChild(child, 'SIGKILL');
    throw err;
  }
  const credentialsFile = join(options.dataDir, 'credentials.json');
  // As a replica takes credentials in production (--s3-credentials-file): never in its argv, where ps shows them.
  writeFileSync(credentialsFile, JSON.stringify(S3RVER_CREDENTIALS) + '\n', { mode: 0o600 });
  return { endpoint, credentialsFile, process: child, stop: () => stopChild(child) };
}

/** The replica flags that point a replica at this server. */
export function s3rverReplicaArgs(server: Pick<S3Server, 'endpoint' | 'credentialsFile'>): string[] {
  return ['--s3-endpoint', server.endpoint, '--s3-bucket', S3RVER_BUCKET, '--s3-credentials-file', server.credentialsFile, '--s3-force-path-style', 'true'];
}
