/**
 * Runs one of the benchmark commands (dist/bench/<name>.js) to its end, as a
 * user would: the command stops its own processes; a run still going after
 * the timeout is interrupted and fails the test.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { projectRoot } from '../../src/cli/local-cluster.js';

export interface CommandResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function runBenchCommand(name: string, args: readonly string[], timeoutMs: number): Promise<CommandResult> {
  const script = join(projectRoot(), 'dist', 'bench', `${name}.js`);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGINT');
      reject(new Error(`bench ${name} still running after ${timeoutMs} ms:\n${stderr}`));
    }, timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
