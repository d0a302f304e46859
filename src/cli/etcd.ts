/**
 * Runs a single-member etcd server (Debian's etcd-server, 3.4) for a local
 * cluster or a test, in its own data directory.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { stopChild, waitForHttp } from './processes.js';

/** etcd must report healthy within this of its start (it takes about a second; a loaded CI machine, several). */
const START_TIMEOUT_MS = 20_000;

export interface EtcdServer {
  endpoint: string;
  process: ChildProcess;
  stop(): Promise<void>;
}

export async function startEtcd(options: { dataDir: string; clientPort: number; peerPort: number; binary?: string }): Promise<EtcdServer> {
  mkdirSync(options.dataDir, { recursive: true });
  const endpoint = `http://127.0.0.1:${options.clientPort}`;
  const peer = `http://127.0.0.1:${options.peerPort}`;
  const log = openSync(join(options.dataDir, 'etcd.log'), 'a');
  const child = spawn(
    options.binary ?? 'etcd',
    [
      '--name', 'tern-etcd',
      '--data-dir', join(options.dataDir, 'data'),
      '--listen-client-urls', endpoint,
      '--advertise-client-urls', endpoint,
      '--listen-peer-urls', peer,
      '--initial-advertise-peer-urls', peer,
      '--initial-cluster', `tern-etcd=${peer}`,
      '--initial-cluster-state', 'new',
      '--logger', 'zap',
      '--log-outputs', 'stderr',
    ],
    // Its own process group: a Ctrl-C at the terminal must not stop etcd before the replicas have closed their logs in it.
    { stdio: ['ignore', log, log], detached: true },
  );
  const spawned = new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', (err) => reject(new Error(`cannot start etcd (${err.message}); install Debian's etcd-server or put etcd on PATH`)));
  });
  await spawned;
  try {
    await waitForHttp(`${endpoint}/health`, START_TIMEOUT_MS, child, (body) => body.includes('"health":"true"'));
  } catch (err) {
    await stopChild(child, 'SIGKILL');
    throw err;
  }
  return { endpoint, process: child, stop: () => stopChild(child) };
}
