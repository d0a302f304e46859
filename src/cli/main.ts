#!/usr/bin/env node
/**
 * `tern replica ...` runs one replica; `tern cluster ...` runs a local
 * three-replica cluster with its own etcd; `tern token create ...` makes a
 * client token. Bad flags print a message and exit 2.
 */
import { ConfigError, parseReplicaConfig, replicaUsage } from '../replica/config.js';
import { startReplica } from '../server.js';
import { clusterUsage, parseClusterArgs, runClusterCommand } from './cluster-command.js';
import { parseTokenArgs, runTokenCommand, tokenUsage } from './token-command.js';

const USAGE = `Usage:
  tern replica --id ID [options]     run one replica (tern replica --help)
  tern cluster [--data-dir DIR] [--base-port N] [--etcd URL] [--tls] [--auth]
                                     run a local 3-replica cluster (tern cluster --help)
  tern token create --name N --scopes append,read [--prefix P]
                                     make a client token (tern token --help)`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (rest.includes('--help') || rest.includes('-h')) {
    const usages: Record<string, () => string> = { replica: replicaUsage, cluster: clusterUsage, token: tokenUsage };
    console.log(usages[command ?? '']?.() ?? USAGE);
    return 0;
  }
  switch (command) {
    case 'replica': {
      const config = parseReplicaConfig(rest);
      const running = await startReplica(config);
      await untilSignal();
      // A second signal while draining means "now": exit as a crash would.
      const force = () => process.exit(1);
      process.once('SIGINT', force);
      process.once('SIGTERM', force);
      const report = await running.shutdown();
      return report.unfinished.length === 0 ? 0 : 1;
    }
    case 'cluster':
      return runClusterCommand(parseClusterArgs(rest));
    case 'token':
      return runTokenCommand(parseTokenArgs(rest));
    default:
      console.error(USAGE);
      return 2;
  }
}

function untilSignal(): Promise<void> {
  return new Promise((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    if (err instanceof ConfigError) {
      console.error(`tern: ${err.message}\n(see tern ${process.argv[2] ?? ''} --help)`);
      process.exit(2);
    }
    console.error('tern: fatal:', err instanceof Error ? err.message : err);
    process.exit(1);
  },
);
