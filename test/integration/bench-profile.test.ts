import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runBenchCommand } from '../support/bench-command.js';

const run = (args: string[], timeoutMs: number) => runBenchCommand('profile', args, timeoutMs);
const dirs: string[] = [];
afterEach(() => {
  while (dirs.length) rmSync(dirs.pop()!, { recursive: true, force: true });
});

describe('npm run bench:profile', () => {
  it('profiles a scenario on a real cluster: shares per component and a flame graph per replica', async () => {
    const out = mkdtempSync(join(tmpdir(), 'tern-profile-test-'));
    dirs.push(out);
    const before = new Set(readdirSync(tmpdir()).filter((f) => f.startsWith('tern-profile-') && !f.startsWith('tern-profile-test-')));
    const res = await run(['--scenario', '1k-1p', '--duration', '1.5', '--warmup', '0.5', '--out', out], 50_000);
    expect(res.code, res.stderr).toBe(0);

    const files = readdirSync(out).sort();
    const report = files.find((f) => f.endsWith('-profile-1k-1p-leader.md'));
    expect(report, files.join(' ')).toBeDefined();
    expect(files.filter((f) => /-profile-1k-1p-leader-r[123]\.svg$/.test(f))).toHaveLength(3);
    const md = readFileSync(join(out, report!), 'utf8');
    expect(res.stdout).toContain(md.split('\n')[0]);

    // The leader answered HTTP and replicated during the window; a follower did neither of the leader's parts.
    const row = (name: string) => md.split('\n').find((l) => l.startsWith(`| ${name} |`))!.split('|').slice(2, 5).map((c) => parseFloat(c));
    const [leaderHttp] = row('HTTP server (node:http + fastify)');
    const [leaderSends, followerSends] = row('replication sends');
    expect(leaderHttp).toBeGreaterThan(0);
    expect(leaderSends).toBeGreaterThan(0);
    expect(followerSends).toBe(0);
    expect(md).toMatch(/\| leader r\d \| follower r\d \| follower r\d \|/);
    expect(md).toMatch(/\d+(\.\d)? appends\/s, p50 [\d.]+ ms, p99 [\d.]+ ms, 0 errors/);
    const svg = readFileSync(join(out, files.find((f) => f.endsWith('.svg'))!), 'utf8');
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg).toContain('<rect');

    // Its cluster's temp dir is gone.
    const left = readdirSync(tmpdir()).filter((f) => f.startsWith('tern-profile-') && !f.startsWith('tern-profile-test-') && !before.has(f));
    expect(left).toEqual([]);
  });

  it('answers a bad flag with its usage and exit code 2, starting nothing', async () => {
    const res = await run(['--scenario', 'nope'], 10_000);
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(/--scenario must be one of 1k-64p/);
    expect(res.stderr).toContain('Usage:');
  });
});
