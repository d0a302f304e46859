#!/usr/bin/env node
/**
 * `tern replica ...` runs one replica; `tern cluster ...` runs a local
 * three-replica cluster with its own etcd; `tern token create ...` makes a
 * client token; `tern log|reader|append|read|tail ...` are the client commands
 * (src/cli/client-commands.ts). Each command's module is loaded only when it
 * runs: `tern cluster` never loads the client, `tern append` never the server.
 * Bad flags print a message and exit 2.
 */
import { ConfigError } from '../replica/config.js';

const USAGE = `Usage:
  tern replica --id ID [options]     run one replica (tern replica --help)
  tern cluster [--data-dir DIR] [--base-port N] [--etcd URL] [--tls] [--auth]
                                     run a local 3-replica cluster (tern cluster --help)
  tern token create --name N --scopes append,read [--prefix P]
                                     make a client token (tern token --help)
  tern log create|retention|list|status|delete|truncate|handoff|recover|offset ...
  tern reader commit|get|list|delete ...
  tern append LOG [DATA]             append DATA, or one entry per line of stdin
  tern read LOG [--from ID | --since DURATION | --from-time TIME] [--limit N]
  tern tail LOG [--from ID | --since DURATION | --from-time TIME]
                                     the client commands (tern log --help)`;

const CLIENT_COMMANDS = new Set(['log', 'reader', 'append', 'read', 'tail']);

async function usageOf(command: string | undefined): Promise<string> {
  switch (command) {
    case 'replica':
      return (await import('../replica/config.js')).replicaUsage();
    case 'cluster':
      return (await import('./cluster-command.js')).clusterUsage();
    case 'token':
      return (await import('./token-command.js')).tokenUsage();
    default:
      return CLIENT_COMMANDS.has(command ?? '') ? (await import('./client-commands.js')).clientUsage() : USAGE;
  }
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (rest.includes('--help') || rest.includes('-h') || command === '--help' || command === '-h') {
    console.log(await usageOf(command));
    return 0;
  }
  switch (command) {
    case 'replica': {
      const { parseReplicaConfig } = await import('../replica/config.js');
      const { startReplica } = await import('../server.js');
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
    case 'cluster': {
      const { parseClusterArgs, runClusterCommand } = await import('./cluster-command.js');
      return runClusterCommand(parseClusterArgs(rest));
    }
    case 'token': {
      const { parseTokenArgs, runTokenCommand } = await import('./token-command.js');
      return runTokenCommand(parseTokenArgs(rest));
    }
    default:
      if (CLIENT_COMMANDS.has(command ?? '')) return (await import('./client-commands.js')).runClientCommand(command!, rest);
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
  (code) => {
    // Let stdout drain (a pipe) before exiting.
    process.exitCode = code;
    if (process.stdout.writableNeedDrain) process.stdout.once('drain', () => process.exit(code));
    else process.exit(code);
  },
  (err) => {
    if (err instanceof ConfigError) {
      console.error(`tern: ${err.message}\n(see tern ${process.argv[2] ?? ''} --help)`);
      process.exit(2);
    }
    console.error('tern: fatal:', err instanceof Error ? err.message : err);
    process.exit(1);
  },
);
