import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { projectRoot } from '../../src/cli/local-cluster.js';
import { natsServerVersion } from '../../bench/lib/nats-cluster.js';
import { runBenchCommand } from '../support/bench-command.js';

const HAVE_NATS = natsServerVersion() !== undefined;
if (!HAVE_NATS) console.warn('nats-server not on PATH: skipping the many-logs benchmark test (scripts/setup.sh installs it as root)');

const dirs: string[] = [];
afterEach(() => {
  while (dirs.length) rmSync(dirs.pop()!, { recursive: true, force: true });
});

/** The benchmark's own temp dirs (cluster data, NATS configs). */
function benchTempDirs(): Set<string> {
  return new Set(readdirSync(tmpdir()).filter((f) => f.startsWith('tern-bench-many-')).map((f) => join(tmpdir(), f)));
}

/**
 * Processes this run may have started and left: replicas of this checkout
 * (their command is its dist/src/cli/main.js), and etcd, s3rver and
 * nats-server with their files in a benchmark temp dir. Other checkouts'
 * clusters on the same machine are not this test's.
 */
function leftoverProcesses(): string[] {
  const mine = [join(projectRoot(), 'dist', 'src', 'cli', 'main.js'), 'tern-bench-many-'];
  const out: string[] = [];
  for (const pid of readdirSync('/proc').filter((e) => /^\d+$/.test(e))) {
    let cmd = '';
    try {
      cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
    } catch {
      continue; // gone meanwhile
    }
    if (/etcd|s3rver|nats-server|main\.js replica/.test(cmd) && mine.some((m) => cmd.includes(m))) out.push(`${pid}: ${cmd.slice(0, 200)}`);
  }
  return out;
}

describe.skipIf(!HAVE_NATS)('npm run bench:many-logs', () => {
  it('measures creation, quiescence and waking, appends/s over many logs against NATS, and a whole-cluster crash every quiesced log comes back from with nothing acknowledged lost', async () => {
    const out = mkdtempSync(join(tmpdir(), 'tern-many-logs-test-'));
    dirs.push(out);
    const before = benchTempDirs();
    // Logs quiesce half a second after their last append is flushed, so both the idle window and the kill find them sealed.
    const args = ['--logs', '20', '--concurrency', '4', '--idle', '1', '--throughput-logs', '10', '--outstanding', '16', '--throughput-s', '2', '--kill-restart', '--restart-timeout', '20', '--json', '--out', out, '--', '--quiesce-after-ms', '500', '--flush-interval-ms', '100'];
    const res = await runBenchCommand('many-logs-bench', args, 100_000);
    expect(res.code, res.stderr).toBe(0);
    const r = JSON.parse(res.stdout);

    expect(r.createdPerSecond).toBeGreaterThan(0);
    expect(r.createFailures).toBe(0);
    expect(r.appends.failures).toBe(0);
    expect(r.appends.p50Ms).toBeGreaterThan(0);
    expect(r.etcdKeysPerLog).toBeGreaterThan(0);
    expect(r.quiescence.quiesced).toBe(20);
    expect(r.wakeAppends.failures).toBe(0);
    expect(r.wakeAppends.p99Ms).toBeGreaterThanOrEqual(r.wakeAppends.p50Ms);

    const t = r.throughput;
    expect(t).toMatchObject({ logs: 10, outstanding: 16, seconds: 2, entryBytes: 1024 });
    expect(t.rows.map((row: { system: string }) => row.system)).toEqual(['tern-leader', 'tern-spread', 'nats']);
    for (const row of t.rows) {
      expect(row.appendsPerSec, row.system).toBeGreaterThan(0);
      expect(row.p99Ms, row.system).toBeGreaterThanOrEqual(row.p50Ms);
      // A loaded machine may time out an append now and then; most must be acked.
      expect(row.errors, `${row.system}: ${JSON.stringify(row.errorsByCode)}`).toBeLessThan((row.appendsPerSec * t.seconds) / 10);
    }
    expect(t.ternOverNats.leader).toBeGreaterThan(0);
    expect(t.ternOverNats.spread).toBeGreaterThan(0);

    const k = r.killRestart;
    expect(k.notFlushed).toBe(0);
    // Every log was quiesced at the kill, so every one takes an append after the restart, with no override.
    expect(k.quiescedAtKill).toBe(20);
    expect(k.firstAppends).toMatchObject({ taken: 20, failed: 0 });
    expect(k.readyS).toBeGreaterThan(0);
    expect(k.allAppendedS).toBeGreaterThan(0);
    // All 20 logs are read back: the first append to each, its wake-up append, and every throughput append to the first 10.
    expect(k.check.logs).toBe(20);
    expect(k.check.entries).toBeGreaterThan(40);
    expect(k.check.missing).toBe(0);
    expect(k.check.unreadableLogs).toBe(0);

    const files = readdirSync(out);
    expect(files).toEqual([`${new Date().toISOString().slice(0, 10)}-many-logs.md`]);
    const md = readFileSync(join(out, files[0]!), 'utf8');
    expect(md).toMatch(/\| tern-leader \| \d+ \|/);
    expect(md).toMatch(/\| nats \| \d+ \|/);
    expect(md).toContain('Whole-cluster crash: 20 logs flushed');

    // Nothing is left behind: no process, no temp dir.
    expect(leftoverProcesses()).toEqual([]);
    expect([...benchTempDirs()].filter((d) => !before.has(d) && existsSync(d))).toEqual([]);
  }, 120_000);

  it('answers a bad --throughput-s with its usage and exit code 2, starting nothing', async () => {
    const res = await runBenchCommand('many-logs-bench', ['--throughput-s', '0'], 10_000);
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(/--throughput-s must be a number in \[0\.5, 3600\]/);
    expect(res.stderr).toContain('Usage:');
  });
});
