/** Runs the built `tern` CLI as a child process, for the CLI's integration tests. */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { cliEntry } from '../../src/cli/local-cluster.js';

export interface TernRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `tern ...` to its end, feeding `stdin`. */
export function tern(args: string[], stdin = ''): Promise<TernRun> {
  return new Promise((resolve, reject) => {
    const child = spawnTern(args);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(stdin);
  });
}

/** Starts `tern ...` and leaves it running (tail, say): the caller stops it. */
export function spawnTern(args: string[]): ChildProcessWithoutNullStreams {
  return spawn(process.execPath, [cliEntry(), ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
}
