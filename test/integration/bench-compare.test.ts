import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { natsServerVersion } from '../../bench/lib/nats-cluster.js';
import { runBenchCommand } from '../support/bench-command.js';

const HAVE_NATS = natsServerVersion() !== undefined;

const run = (args: string[], timeoutMs: number) => runBenchCommand('compare', args, timeoutMs);
const dirs: string[] = [];
afterEach(() => {
  while (dirs.length) rmSync(dirs.pop()!, { recursive: true, force: true });
});

/** What the command's own temp dirs (cluster data, NATS configs, s3rver's objects) are called, in each place they may be. */
function compareTempDirs(): Set<string> {
  const named = (dir: string) => (existsSync(dir) ? readdirSync(dir).filter((f) => f.startsWith('tern-compare-') && !f.startsWith('tern-compare-test-')).map((f) => join(dir, f)) : []);
  return new Set([...named(tmpdir()), ...named('/dev/shm')]);
}

/** The cells of the report's result row for (system, scenario). */
function resultRow(md: string, system: string, scenario: string): string[] {
  const line = md.split('\n').find((l) => l.startsWith(`| ${system} | ${scenario} |`));
  expect(line, `no row for ${system} ${scenario}`).toBeDefined();
  return line!.split('|').slice(1, -1).map((c) => c.trim());
}

// Without NATS (no nats-server needed): Tern and the ceiling, one short run each.
describe('npm run bench:compare', () => {
  it('measures closed loops over --duration and the open loop over --open-duration, and checks what Tern acked', async () => {
    const out = mkdtempSync(join(tmpdir(), 'tern-compare-test-'));
    dirs.push(out);
    const before = compareTempDirs();
    const args = ['--systems', 'tern-leader,ceiling', '--scenarios', '1k-1p,open-1k', '--duration', '0.5', '--open-duration', '1.5', '--warmup', '0.3', '--runs', '1', '--rate', '400', '--out', out];
    const res = await run(args, 60_000);
    expect(res.code, res.stderr).toBe(0);

    const files = readdirSync(out).sort();
    expect(files.filter((f) => /-(1k-1p|open-1k)\.svg$/.test(f))).toHaveLength(2);
    const md = readFileSync(join(out, files.find((f) => f.endsWith('.md'))!), 'utf8');
    expect(md).toContain('--duration 0.5 --open-duration 1.5');
    expect(md).toContain('Medians of 1 run(s) of 0.5 s (open loop: 1.5 s)');
    // 400/s over the 1.5 s window: divided by the closed loops' 0.5 s, the rate would read about 1,200/s.
    const openRate = Number(resultRow(md, 'tern-leader', 'open-1k')[2]);
    expect(openRate).toBeGreaterThan(300);
    expect(openRate).toBeLessThanOrEqual(400);
    expect(Number(resultRow(md, 'tern-leader', '1k-1p')[2])).toBeGreaterThan(0);
    // Every entry Tern acked over the whole run (warm-up and window) is committed and flushed.
    const check = /tern-leader: (\d+) entries acked, log cmp-open-1k-leader committedId \+ 1 = (\d+), flushedId \+ 1 = (\d+)/.exec(md);
    expect(check, md).not.toBeNull();
    const sentS = 0.3 + 1.5; // warm-up and open-loop window, all at 400/s
    expect(Number(check![1])).toBeGreaterThanOrEqual(0.9 * 400 * sentS);
    expect(check![2]).toBe(check![1]);
    expect(check![3]).toBe(check![1]);

    // Its temp dirs are gone, the objects on tmpfs included.
    expect([...compareTempDirs()].filter((d) => !before.has(d))).toEqual([]);
  });

  it(`runs the opt-in tail scenarios: append-to-reader latency at a reader on the leader and on a follower${HAVE_NATS ? ', NATS push consumers beside Tern' : ' (nats-server not on PATH: Tern only)'}, none missing`, async () => {
    const out = mkdtempSync(join(tmpdir(), 'tern-compare-test-'));
    dirs.push(out);
    const systems = HAVE_NATS ? ['tern-leader', 'nats'] : ['tern-leader'];
    const args = ['--systems', [...systems, 'ceiling'].join(','), '--scenarios', 'tail-light,tail-1k-64p', '--duration', '0.5', '--open-duration', '1', '--warmup', '0.3', '--runs', '1', '--out', out];
    const res = await run(args, 90_000);
    expect(res.code, res.stderr).toBe(0);

    const md = readFileSync(join(out, readdirSync(out).find((f) => f.endsWith('.md'))!), 'utf8');
    expect(md).toContain('## Tail scenarios: append-to-reader latency');
    // Only tail scenarios ran: no ack-only table.
    expect(md).not.toContain('## Results');
    for (const system of systems) {
      for (const scenario of ['tail-light', 'tail-1k-64p']) {
        const ack = resultRow(md, system, scenario);
        expect(ack[2]).toBe('ack');
        expect(Number(ack[3]), `${system} ${scenario} appends/s`).toBeGreaterThan(0);
        for (const reader of ['reader@leader', 'reader@follower']) {
          const row = md.split('\n').find((l) => l.startsWith(`| ${system} | ${scenario} | ${reader} |`));
          expect(row, `no ${reader} row for ${system} ${scenario}\n${md}`).toBeDefined();
          const [, , , , p50, p99, p999, samples, missing] = row!.split('|').slice(1, -1).map((c) => c.trim());
          expect(Number(samples), `${system} ${scenario} ${reader} samples`).toBeGreaterThan(0);
          expect(missing, `${system} ${scenario} ${reader} missing`).toBe('0');
          expect(Number(p50)).toBeGreaterThan(0);
          expect(Number(p99)).toBeGreaterThanOrEqual(Number(p50));
          expect(Number(p999)).toBeGreaterThanOrEqual(Number(p99));
        }
      }
      // 200/s over the 1 s window: about 200 entries measured at each reader.
      const light = md.split('\n').find((l) => l.startsWith(`| ${system} | tail-light | reader@follower |`))!;
      expect(Number(light.split('|')[8])).toBeGreaterThanOrEqual(150);
      expect(md).toMatch(new RegExp(`${system} tail-light: reader@leader and reader@follower saw every acked entry`));
    }
    // The ceiling stores nothing: it sits the tail scenarios out, and says so.
    expect(md).not.toMatch(/^\| ceiling \|/m);
    expect(md).toContain('ceiling sits tail-light out');
    expect(readdirSync(out).filter((f) => /-tail-(light|1k-64p)\.svg$/.test(f))).toHaveLength(2);
  });

  it('answers a bad --open-duration with its usage and exit code 2, starting nothing', async () => {
    const res = await run(['--open-duration', '0'], 10_000);
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(/--open-duration must be a number in \[0\.1, 3600\]/);
    expect(res.stderr).toContain('Usage:');
  });
});
