/**
 * Where the project is and which version of it runs: what every benchmark
 * report states next to its figures.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { projectRoot } from '../../src/cli/local-cluster.js';

/** The directory with package.json: reports and results are written below it. */
export const PROJECT_ROOT = projectRoot();

/** "0.1.0 (git abc1234)", marked when src/ has uncommitted changes. */
export function ternVersion(): string {
  let v = 'unknown';
  try {
    v = JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8')).version ?? v;
  } catch {
    /* keep unknown */
  }
  const git = (args: string[]) => spawnSync('git', ['-C', PROJECT_ROOT, ...args], { encoding: 'utf8' });
  const head = git(['rev-parse', '--short', 'HEAD']);
  if (head.status !== 0) return v;
  const dirty = git(['status', '--porcelain', '--', 'src']).stdout.trim().length > 0;
  return `${v} (git ${head.stdout.trim()}${dirty ? ', src/ modified' : ''})`;
}
