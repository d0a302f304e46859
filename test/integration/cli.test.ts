import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN_FILE, TOKENS_FILE } from '../../src/cli/cluster-auth.js';
import { cliEntry, type ClusterFile } from '../../src/cli/local-cluster.js';
import { stopChild } from '../../src/cli/processes.js';
import { freeBasePort } from '../support/base-port.js';
import { appendRaw, createLog, eventually, http, readAll } from '../support/cluster.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('tern CLI', () => {
  it('rejects a bad replica flag with a clear message and exit code 2, not a stack trace', () => {
    for (const args of [['replica', '--id', 'r1', '--client-port', 'nope'], ['replica'], ['replica', '--id', 'r1', '--no-such-flag', '1'], ['cluster', '--base-port', 'x'], ['frobnicate'], ['replica', '--id', 'r1', '--client-port', '0', '--peer-port', '0', '--tokens-file', '/nonexistent/tern-tokens.jsonl'], ['token', 'create', '--name', 'x']]) {
      const res = spawnSync(process.execPath, [cliEntry(), ...args], { encoding: 'utf8', timeout: 20_000 });
      expect(res.status, `${args.join(' ')}: ${res.stderr}`).toBe(2);
      expect(res.stderr).toMatch(/tern|Usage/);
      expect(res.stderr).not.toMatch(/\n\s+at /);
    }
  });

  it('tern cluster starts etcd and three replicas, writes cluster.json whose argv restarts a replica, and Ctrl-C stops everything', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'tern-cli-'));
    cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
    const base = await freeBasePort();
    const child = spawn(process.execPath, [cliEntry(), 'cluster', '--data-dir', dataDir, '--base-port', String(base), '--', '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'pipe'] });
    cleanups.push(() => stopChild(child, 'SIGKILL'));
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));

    const file = join(dataDir, 'cluster.json');
    await eventually(async () => expect(existsSync(file)).toBe(true), 30_000);
    const desc = JSON.parse(readFileSync(file, 'utf8')) as ClusterFile;
    expect(desc.etcd.endpoint).toBe(`http://127.0.0.1:${base + 379}`);
    expect(desc.replicas.map((r) => r.id)).toEqual(['r1', 'r2', 'r3']);
    desc.replicas.forEach((r, i) => {
      expect(r.clientUrl).toBe(`http://127.0.0.1:${base + 1 + i}`);
      expect(r.peerUrl).toBe(`http://127.0.0.1:${base + 101 + i}`);
      expect(alive(r.pid)).toBe(true);
    });
    // cluster.json can land before the CLI's lines do (a pipe): wait for them rather than race.
    await eventually(async () => expect(out).toContain(desc.replicas[0]!.clientUrl), 10_000);

    // Scripts drive the cluster from cluster.json alone: kill r3, start it again with its argv.
    await createLog(desc.replicas[0]!.clientUrl, 'scripted');
    const r3 = desc.replicas[2]!;
    process.kill(r3.pid, 'SIGKILL');
    await eventually(async () => expect(alive(r3.pid)).toBe(false));
    const again = spawn(r3.argv[0]!, r3.argv.slice(1), { stdio: 'ignore' });
    cleanups.push(() => stopChild(again));
    await eventually(async () => expect((await appendRaw(r3.clientUrl, 'scripted', 'hello')).status).toBe(200), 20_000);
    await eventually(async () => expect((await readAll(r3.clientUrl, 'scripted')).map((e) => e.data.toString())).toEqual(['hello']));

    child.kill('SIGINT');
    await new Promise((resolve) => child.once('exit', resolve));
    expect(child.exitCode).toBe(0);
    for (const pid of [desc.etcd.pid!, desc.replicas[0]!.pid, desc.replicas[1]!.pid]) expect(alive(pid)).toBe(false);
  });

  it('tern cluster --auth prints an admin token once, keeps it in DIR/admin-token (0600), and the replicas require it', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'tern-cli-'));
    cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
    const base = await freeBasePort();
    const child = spawn(process.execPath, [cliEntry(), 'cluster', '--auth', '--data-dir', dataDir, '--base-port', String(base), '--', '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'pipe'] });
    cleanups.push(() => stopChild(child, 'SIGKILL'));
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    await eventually(async () => expect(out).toContain('cluster.json:'), 30_000);
    const token = readFileSync(join(dataDir, ADMIN_TOKEN_FILE), 'utf8').trim();
    expect(statSync(join(dataDir, ADMIN_TOKEN_FILE)).mode & 0o777).toBe(0o600);
    expect(out.split(token)).toHaveLength(2);
    expect(readFileSync(join(dataDir, TOKENS_FILE), 'utf8')).not.toContain(token);
    const url = `http://127.0.0.1:${base + 1}`;
    expect((await http(`${url}/v1/logs`, { token: null })).status).toBe(401);
    expect((await http(`${url}/v1/logs/via-cli`, { method: 'PUT', token })).status).toBe(201);
    child.kill('SIGINT');
    await new Promise((resolve) => child.once('exit', resolve));
    expect(child.exitCode).toBe(0);
  });

  it('Ctrl-C stops tern cluster cleanly: started again on the same data, a log flushed before takes appends at once and keeps its entries', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'tern-cli-'));
    cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
    const base = await freeBasePort();
    const file = join(dataDir, 'cluster.json');
    const start = async () => {
      let started: ClusterFile | undefined;
      rmSync(file, { force: true });
      const child = spawn(process.execPath, [cliEntry(), 'cluster', '--data-dir', dataDir, '--base-port', String(base), '--', '--log-level', 'warn'], { stdio: 'ignore' });
      cleanups.push(async () => {
        // Whatever the test left running: the CLI and every process its cluster.json names.
        for (const pid of started ? pidsOf(started) : []) if (alive(pid)) process.kill(pid, 'SIGKILL');
        await stopChild(child, 'SIGKILL');
      });
      await eventually(async () => expect(existsSync(file)).toBe(true), 30_000);
      started = JSON.parse(readFileSync(file, 'utf8')) as ClusterFile;
      return { child, desc: started };
    };

    const first = await start();
    const url = first.desc.replicas[0]!.clientUrl;
    await createLog(url, 'orders');
    for (const v of ['a', 'b', 'c']) expect((await appendRaw(first.desc.replicas[1]!.clientUrl, 'orders', v)).status).toBe(200);
    await eventually(async () => expect((await http(`${url}/v1/logs/orders`)).json().flushedId).toBe(2), 10_000);
    first.child.kill('SIGINT');
    await new Promise((resolve) => first.child.once('exit', resolve));
    expect(first.child.exitCode).toBe(0);
    for (const pid of pidsOf(first.desc)) expect(alive(pid), `pid ${pid} after Ctrl-C`).toBe(false);

    const second = await start();
    const readyAt = Date.now();
    await eventually(async () => expect((await appendRaw(second.desc.replicas[2]!.clientUrl, 'orders', 'd')).status).toBe(200), 10_000, 20);
    expect(Date.now() - readyAt).toBeLessThan(2000);
    for (const r of second.desc.replicas) {
      await eventually(async () => expect((await readAll(r.clientUrl, 'orders')).map((e) => e.data.toString())).toEqual(['a', 'b', 'c', 'd']));
    }
  });
});

function pidsOf(desc: ClusterFile): number[] {
  return [desc.etcd.pid, desc.objectStore?.pid, ...desc.replicas.map((r) => r.pid)].filter((pid): pid is number => typeof pid === 'number' && pid > 0);
}
