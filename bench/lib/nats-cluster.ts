/**
 * A three-node NATS cluster with JetStream on loopback, for the side-by-side
 * benchmark: each node is its own nats-server process with its own config
 * file (server_name, client listen, monitoring port, jetstream { store_dir,
 * max_memory_store }, cluster { name, listen, routes }) in a temp dir, its
 * output going to a log file next to it.
 *
 * `ensureNatsServer` finds nats-server on PATH, or installs Debian's package
 * when this process is root and apt-get exists (and stops the system service
 * the package may start: the benchmark runs its own nodes).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort, stopChild } from '../../src/cli/processes.js';
import { httpJson } from './http.js';

export const NATS_INSTALL_HINT = [
  'nats-server is not on PATH. Install it, then run this again:',
  '  Debian/Ubuntu: sudo apt-get install nats-server',
  '  or download a release from https://github.com/nats-io/nats-server/releases and put nats-server on PATH.',
].join('\n');

/** The nats-server binary: the one on PATH, else where Debian's package puts it (/usr/sbin is not on every user's PATH). */
let natsBinary = 'nats-server';

/** The version of the nats-server binary ("v2.9.10"), or undefined when there is none. */
export function natsServerVersion(): string | undefined {
  for (const bin of ['nats-server', '/usr/sbin/nats-server', '/usr/bin/nats-server']) {
    const r = spawnSync(bin, ['--version'], { encoding: 'utf8' });
    if (r.error || r.status !== 0) continue;
    natsBinary = bin;
    const m = /v?\d+\.\d+\.\d+\S*/.exec(r.stdout + r.stderr);
    return m ? (m[0].startsWith('v') ? m[0] : `v${m[0]}`) : (r.stdout + r.stderr).trim();
  }
  return undefined;
}

/**
 * The nats-server version, installing Debian's package first when it is missing and we can
 * (root, apt-get). 'unavailable' when it is missing and cannot be installed here.
 */
export function ensureNatsServer(progress: (line: string) => void): string | 'unavailable' {
  const have = natsServerVersion();
  if (have) return have;
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const hasApt = spawnSync('apt-get', ['--version'], { stdio: 'ignore' }).status === 0;
  if (!isRoot || !hasApt) return 'unavailable';
  progress("installing nats-server (Debian's nats-server package)");
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const apt = (args: string[]) => spawnSync('apt-get', args, { env, encoding: 'utf8' });
  let r = apt(['install', '-y', '-qq', 'nats-server']);
  if (r.status !== 0) {
    // A fresh machine has no package lists yet.
    apt(['update', '-qq']);
    r = apt(['install', '-y', '-qq', 'nats-server']);
  }
  if (r.status !== 0) {
    progress(`apt-get install nats-server failed: ${(r.stderr || r.stdout).trim().split('\n').slice(-3).join(' / ')}`);
    return 'unavailable';
  }
  // The package may enable a system-wide nats-server on 4222; the benchmark starts its own nodes.
  spawnSync('sh', ['-c', 'systemctl disable --now nats-server >/dev/null 2>&1 || service nats-server stop >/dev/null 2>&1 || true'], { stdio: 'ignore' });
  return natsServerVersion() ?? 'unavailable';
}

export interface NatsNode {
  name: string;
  clientPort: number;
  clusterPort: number;
  httpPort: number;
  url: string;
  configFile: string;
  logFile: string;
  process: ChildProcess;
}

export interface NatsClusterOptions {
  dir: string;
  /** Per-node limit of memory-stored JetStream data, bytes. */
  maxMemoryStore: number;
  clusterName?: string;
}

export class NatsCluster {
  private constructor(readonly nodes: NatsNode[]) {}

  static async start(options: NatsClusterOptions): Promise<NatsCluster> {
    const clusterName = options.clusterName ?? 'tern-bench';
    const names = ['n1', 'n2', 'n3'];
    const ports = await Promise.all(Array.from({ length: 9 }, () => freePort()));
    const nodes: NatsNode[] = names.map((name, i) => {
      const dir = join(options.dir, name);
      mkdirSync(dir, { recursive: true });
      return {
        name,
        clientPort: ports[i]!,
        clusterPort: ports[3 + i]!,
        httpPort: ports[6 + i]!,
        url: `nats://127.0.0.1:${ports[i]}`,
        configFile: join(dir, 'nats.conf'),
        logFile: join(dir, 'nats.log'),
        process: undefined as unknown as ChildProcess,
      };
    });
    for (const n of nodes) {
      const routes = nodes.filter((o) => o !== n).map((o) => `    "nats-route://127.0.0.1:${o.clusterPort}"`);
      writeFileSync(
        n.configFile,
        [
          `server_name: ${n.name}`,
          `listen: "127.0.0.1:${n.clientPort}"`,
          `http: "127.0.0.1:${n.httpPort}"`,
          'jetstream {',
          `  store_dir: "${join(options.dir, n.name)}"`,
          `  max_memory_store: ${options.maxMemoryStore}`,
          `  max_file_store: ${256 * 1024 * 1024}`,
          '}',
          'cluster {',
          `  name: ${clusterName}`,
          `  listen: "127.0.0.1:${n.clusterPort}"`,
          '  routes: [',
          ...routes,
          '  ]',
          '}',
          '',
        ].join('\n'),
      );
    }
    const cluster = new NatsCluster(nodes);
    try {
      for (const n of nodes) {
        const log = openSync(n.logFile, 'a');
        n.process = spawn(natsBinary, ['-c', n.configFile], { stdio: ['ignore', log, log] });
      }
      await cluster.waitForMetaLeader(30_000);
      return cluster;
    } catch (err) {
      await cluster.stop();
      throw err;
    }
  }

  get urls(): string[] {
    return this.nodes.map((n) => n.url);
  }

  node(name: string): NatsNode {
    const n = this.nodes.find((x) => x.name === name);
    if (!n) throw new Error(`no NATS node ${name}`);
    return n;
  }

  pids(): Record<string, number | undefined> {
    return Object.fromEntries(this.nodes.map((n) => [n.name, n.process?.pid]));
  }

  /** Waits until every node serves its monitoring endpoint and all agree on a JetStream meta leader of a 3-node cluster. */
  async waitForMetaLeader(timeoutMs: number): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    let last = 'no answer';
    while (Date.now() < deadline) {
      for (const n of this.nodes) {
        if (n.process.exitCode !== null || n.process.signalCode !== null) throw new Error(`nats-server ${n.name} exited (${n.process.signalCode ?? n.process.exitCode}); see ${n.logFile}`);
      }
      try {
        const answers = await Promise.all(this.nodes.map((n) => httpJson(`http://127.0.0.1:${n.httpPort}/jsz`, 'GET')));
        const metas = answers.map((a) => (a.status === 200 ? a.body?.meta_cluster : undefined));
        const leaders = new Set(metas.map((m) => m?.leader ?? ''));
        const [leader] = [...leaders];
        if (leaders.size === 1 && leader && metas.every((m) => m?.cluster_size === 3)) return leader;
        last = JSON.stringify(metas);
      } catch (err) {
        last = (err as Error).message;
      }
      await sleep(200);
    }
    throw new Error(`the NATS cluster has no JetStream meta leader after ${timeoutMs} ms (last: ${last})`);
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((n) => (n.process ? stopChild(n.process) : undefined)));
  }
}
