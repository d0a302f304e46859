/**
 * The package works when installed: `npm pack` (of the built dist/), the
 * tarball installed into an empty directory (offline, from the npm cache),
 * then `npx tern cluster` starts a cluster there (s3rver is a runtime
 * dependency), `npx tern` client commands work, and a script imports
 * `tern/client` by the package's exports and appends and reads; a
 * TypeScript file using it type-checks against the shipped declarations.
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { projectRoot } from '../../src/cli/local-cluster.js';
import { stopChild } from '../../src/cli/processes.js';
import { freeBasePort } from '../support/base-port.js';
import { eventually } from '../support/cluster.js';

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'tern-package-'));
const cleanups: (() => Promise<void> | void)[] = [() => rmSync(dir, { recursive: true, force: true })];
afterAll(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

const SCRIPT = `
import { TernClient, LogNotFoundError } from 'tern/client';
const client = await TernClient.connect();
await client.createLog('installed');
const producer = client.producer('installed');
const ids = await Promise.all(['a', 'b', 'c'].map((v) => producer.append(v)));
const page = await client.read('installed', { from: 0 });
const missing = await client.status('nope').catch((e) => e instanceof LogNotFoundError);
await client.close();
console.log(JSON.stringify({ ids, data: page.entries.map((e) => e.data.toString()), missing }));
`;

const TYPED_USE = `
import { TernClient, createClient, LogNotFoundError, type LogStatus, type Entry, type ProducerOptions } from 'tern/client';
const client: TernClient = createClient(['http://127.0.0.1:7001'], { deadlineMs: 1000 });
const status: Promise<LogStatus> = client.status('x');
const options: ProducerOptions = { idempotent: false, lingerMs: 2 };
const id: Promise<number> = client.producer('x', options).append(Buffer.from('y'));
export const used: unknown[] = [status, id, LogNotFoundError, undefined as Entry | undefined];
`;

describe('the installed package', () => {
  it('npm pack, install into an empty directory, npx tern cluster, the CLI and tern/client work there', { timeout: 120_000 }, async () => {
    // dist/ is built before the tests run (npm test's setup); --ignore-scripts skips prepack's rebuild.
    await run('npm', ['pack', '--ignore-scripts', '--pack-destination', dir], { cwd: projectRoot() });
    const tarball = readdirSync(dir).find((f) => f.endsWith('.tgz'))!;
    const app = join(dir, 'app');
    mkdirSync(app);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
    await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', join(dir, tarball)], { cwd: app, timeout: 90_000 });
    const installed = join(app, 'node_modules', 'tern');
    expect(existsSync(join(installed, 'dist', 'src', 'client', 'index.d.ts'))).toBe(true);
    expect(existsSync(join(installed, 'dist', 'test'))).toBe(false);

    // A TypeScript project finds the declarations through the package's exports.
    writeFileSync(join(app, 'check.ts'), TYPED_USE);
    const typeRoots = join(projectRoot(), 'node_modules', '@types');
    writeFileSync(join(app, 'tsconfig.json'), JSON.stringify({ compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, types: ['node'], typeRoots: [typeRoots] }, files: ['check.ts'] }));
    await run(process.execPath, [join(projectRoot(), 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], { cwd: app });

    const base = await freeBasePort();
    const cluster = spawn('npx', ['tern', 'cluster', '--base-port', String(base), '--', '--log-level', 'warn'], { cwd: app, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let out = '';
    cluster.stdout.on('data', (d) => (out += d));
    cluster.stderr.on('data', (d) => (out += d));
    cleanups.push(async () => {
      // npx runs tern in a child: signal the whole group (ours alone), then make sure.
      try {
        process.kill(-cluster.pid!, 'SIGINT');
      } catch {
        // already gone
      }
      await stopChild(cluster, 'SIGINT', 20_000);
    });
    await eventually(async () => expect(existsSync(join(app, '.tern', 'cluster.json')), out).toBe(true), 40_000, 200);

    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', SCRIPT], { cwd: app });
    expect(JSON.parse(stdout)).toEqual({ ids: [0, 1, 2], data: ['a', 'b', 'c'], missing: true });
    const read = await run('npx', ['tern', 'read', 'installed', '--json'], { cwd: app });
    expect(read.stdout.trim().split('\n')).toHaveLength(3);
  });
});
