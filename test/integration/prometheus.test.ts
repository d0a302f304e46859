/**
 * The dashboard and the alert rules against a real Prometheus (Debian's
 * `prometheus` package, which scripts/setup.sh installs when it can; without
 * `prometheus` and `promtool` on PATH these tests are skipped).
 *
 * - promtool: rules.yml passes `check rules` and its unit tests
 *   (rules.test.yml: every alert fires when it should, none on a healthy
 *   cluster); the scrape configs are valid.
 * - A real cluster scraped by a real Prometheus that loads rules.yml, under a
 *   light load: every expression of every panel of the Grafana dashboard
 *   parses and returns series (dashboard variables replaced by what Grafana
 *   would send). Alert rules rightly return nothing on a healthy cluster, so
 *   each alert expression must parse and every metric it names must have
 *   series; Prometheus must evaluate every rule without error, and none fires.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import YAML from 'yaml';
import type { LocalCluster } from '../../src/cli/local-cluster.js';
import { freePort, stopChild, waitForHttp } from '../../src/cli/processes.js';
import { appendRaw, createLog, eventually, http, startTestCluster } from '../support/cluster.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const PROM_DIR = join(ROOT, 'deploy', 'prometheus');
const RULES = join(PROM_DIR, 'rules.yml');
const DASHBOARD = join(ROOT, 'deploy', 'grafana', 'dashboards', 'tern.json');

const onPath = (cmd: string): boolean => (process.env.PATH ?? '').split(delimiter).some((dir) => dir !== '' && existsSync(join(dir, cmd)));
const HAVE_PROMETHEUS = onPath('prometheus') && onPath('promtool');
if (!HAVE_PROMETHEUS) console.warn('prometheus/promtool not on PATH: skipping the Prometheus tests (scripts/setup.sh installs them as root)');

const TIMEOUT = 120_000;
/** The test Prometheus scrapes (and evaluates rules) this often. */
const SCRAPE_INTERVAL_MS = 1000;

/** Runs a command to its end: exit code and everything it printed (for the failure message). */
function run(cmd: string, args: string[]): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd: ROOT, timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as NodeJS.ErrnoException).code === 'number' ? Number((err as NodeJS.ErrnoException).code) : 1) : 0;
      resolve({ code, output: `$ ${cmd} ${args.join(' ')}\n${stdout}${stderr}${err && code === 1 && !stdout && !stderr ? String(err) : ''}` });
    });
  });
}

describe.skipIf(!HAVE_PROMETHEUS)('alert rules and scrape configs (promtool)', () => {
  it('rules.yml passes promtool check rules', async () => {
    const { code, output } = await run('promtool', ['check', 'rules', 'deploy/prometheus/rules.yml']);
    expect(code, output).toBe(0);
  });

  it('rules.yml passes its unit tests (rules.test.yml): each alert fires when it should, none when healthy', async () => {
    const { code, output } = await run('promtool', ['test', 'rules', 'deploy/prometheus/rules.test.yml']);
    expect(code, output).toBe(0);
  });

  it('the scrape configs are valid (the compose one for syntax: its rules path is the container\'s)', async () => {
    const local = await run('promtool', ['check', 'config', 'deploy/prometheus/prometheus.yml']);
    expect(local.code, local.output).toBe(0);
    const compose = await run('promtool', ['check', 'config', '--syntax-only', 'deploy/prometheus/prometheus-compose.yml']);
    expect(compose.code, compose.output).toBe(0);
  });
});

// ---------------------------------------------------------------------------

interface PromAnswer {
  status: string;
  error?: string;
  errorType?: string;
  data?: any;
}

/** Every `expr` of every panel target in the dashboard (rows' nested panels too), with its panel title. */
function dashboardExpressions(): { panel: string; expr: string }[] {
  const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8'));
  const out: { panel: string; expr: string }[] = [];
  const walk = (panels: any[]): void => {
    for (const p of panels ?? []) {
      for (const t of p.targets ?? []) if (typeof t.expr === 'string') out.push({ panel: p.title, expr: t.expr });
      if (Array.isArray(p.panels)) walk(p.panels);
    }
  };
  walk(dashboard.panels);
  return out;
}

/** What Grafana would send for the dashboard's variables: every replica and log, a 15 s rate window. */
function substitute(expr: string): string {
  return expr
    .replace(/\$__rate_interval|\$\{__rate_interval\}/g, '15s')
    .replace(/\$__interval|\$\{__interval\}/g, '15s')
    .replace(/\$(replica|log)\b|\$\{(replica|log)\}/g, '.*');
}

/** Metric names an expression uses (histograms by their _bucket series). */
function metricNames(expr: string): string[] {
  return [...new Set(expr.match(/\b(tern_[a-z0-9_]+|up|nodejs_[a-z0-9_]+|process_[a-z0-9_]+)\b/g) ?? [])];
}

interface AlertRule {
  alert: string;
  expr: string;
}

function alertRules(): AlertRule[] {
  const doc = YAML.parse(readFileSync(RULES, 'utf8')) as { groups: { name: string; rules: AlertRule[] }[] };
  return doc.groups.flatMap((g) => g.rules).filter((r) => typeof r.alert === 'string');
}

describe.skipIf(!HAVE_PROMETHEUS)('a real Prometheus scraping a real cluster: every dashboard and alert expression', () => {
  let cluster: LocalCluster;
  let stopCluster: (() => Promise<void>) | undefined;
  let prometheus: ChildProcess | undefined;
  let promUrl = '';
  let promDir = '';
  let loadRunning = false;
  let load: Promise<void> = Promise.resolve();
  const loadErrors: string[] = [];
  let appendsOk = 0;

  const promLog = (): string => {
    try {
      return readFileSync(join(promDir, 'prometheus.log'), 'utf8').split('\n').slice(-30).join('\n');
    } catch {
      return '';
    }
  };

  async function query(expr: string): Promise<PromAnswer> {
    const res = await http(`${promUrl}/api/v1/query?query=${encodeURIComponent(expr)}`);
    try {
      return res.json() as PromAnswer;
    } catch {
      return { status: 'error', error: `HTTP ${res.status}: ${res.body.toString('utf8').slice(0, 300)}` };
    }
  }

  /** A light load for about `ms`: appends (raw and batches) spread over replicas and logs, reads, tail reads. */
  async function drive(logs: string[], ms: number): Promise<void> {
    const urls = cluster.replicas.map((r) => r.clientUrl);
    const deadline = Date.now() + ms;
    const worker = async (w: number): Promise<void> => {
      for (let i = 0; loadRunning && Date.now() < deadline; i++) {
        const url = urls[(w + i) % urls.length]!;
        const log = logs[(w * 7 + i) % logs.length]!;
        try {
          if (i % 10 === 9) {
            const batch = { entries: [Buffer.alloc(64, i).toString('base64'), Buffer.alloc(64, i + 1).toString('base64')] };
            const res = await http(`${url}/v1/logs/${log}/entries`, { method: 'POST', body: JSON.stringify(batch), contentType: 'application/json' });
            if (res.status === 200) appendsOk++;
            else loadErrors.push(`batch ${log}@${url}: ${res.status} ${res.body}`);
          } else {
            const res = await appendRaw(url, log, Buffer.alloc(200 + (i % 5) * 100, w));
            if (res.status === 200) appendsOk++;
            else loadErrors.push(`append ${log}@${url}: ${res.status} ${res.body}`);
          }
          if (i % 5 === 0) {
            const res = await http(`${url}/v1/logs/${log}/entries?from=0&limit=50`);
            if (res.status !== 200) loadErrors.push(`read ${log}@${url}: ${res.status} ${res.body}`);
          }
        } catch (err) {
          loadErrors.push(`${log}@${url}: ${(err as Error).message}`);
        }
        // Pacing, not synchronisation: a light load of about a dozen requests a second per worker.
        await sleep(80);
      }
    };
    // A tail reader per log, held on the next id until an append arrives (tern_tail_waiters).
    const tailer = async (log: string, r: number): Promise<void> => {
      while (loadRunning && Date.now() < deadline) {
        const url = urls[r % urls.length]!;
        try {
          const status = (await http(`${url}/v1/logs/${log}`)).json() as { committedId: number };
          const res = await http(`${url}/v1/logs/${log}/entries?from=${status.committedId + 1}&waitMs=2000`);
          if (res.status !== 200) loadErrors.push(`tail ${log}@${url}: ${res.status} ${res.body}`);
        } catch (err) {
          loadErrors.push(`tail ${log}@${url}: ${(err as Error).message}`);
        }
        r++;
      }
    };
    await Promise.all([...[0, 1, 2, 3].map(worker), ...logs.map((log, i) => tailer(log, i))]);
  }

  beforeAll(async () => {
    ({ cluster, stop: stopCluster } = await startTestCluster(['--flush-interval-ms', '200']));
    promDir = mkdtempSync(join(tmpdir(), 'tern-prometheus-'));
    const port = await freePort();
    promUrl = `http://127.0.0.1:${port}`;
    const config = {
      global: { scrape_interval: `${SCRAPE_INTERVAL_MS}ms`, scrape_timeout: `${SCRAPE_INTERVAL_MS}ms`, evaluation_interval: `${SCRAPE_INTERVAL_MS}ms` },
      rule_files: [RULES],
      scrape_configs: [
        {
          job_name: 'tern',
          metrics_path: '/metrics',
          honor_labels: true,
          static_configs: cluster.replicas.map((r) => ({ targets: [new URL(r.clientUrl).host], labels: { replica: r.id } })),
        },
      ],
    };
    const configFile = join(promDir, 'prometheus.yml');
    writeFileSync(configFile, YAML.stringify(config));
    const out = openSync(join(promDir, 'prometheus.log'), 'a');
    prometheus = spawn('prometheus', [`--config.file=${configFile}`, `--storage.tsdb.path=${join(promDir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'], { stdio: ['ignore', out, out] });
    try {
      await waitForHttp(`${promUrl}/-/ready`, 30_000, prometheus);
    } catch (err) {
      throw new Error(`${(err as Error).message}\n${promLog()}`);
    }

    const logs = ['prom-a', 'prom-b', 'prom-c'];
    for (const [i, log] of logs.entries()) await createLog(cluster.replicas[i]!.clientUrl, log);
    // One refused append, so an error outcome has a series too.
    await http(`${cluster.replicas[0]!.clientUrl}/v1/logs/prom-a/entries`, { method: 'POST', body: '{"entries": ["%%"]}', contentType: 'application/json' });
    // One idempotent append, sent twice, so the producer metrics have series (the second is a duplicate).
    for (let i = 0; i < 2; i++) {
      const res = await request(`${cluster.replicas[1]!.clientUrl}/v1/logs/prom-b/entries`, { method: 'POST', headers: { 'content-type': 'application/octet-stream', 'tern-producer-id': 'prom.producer', 'tern-producer-seq': '0' }, body: 'once' });
      const answer = (await res.body.json()) as { duplicate?: boolean };
      expect(res.statusCode).toBe(200);
      expect(answer.duplicate === true).toBe(i === 1);
    }
    // Named readers of a log outside the load, so their lag gauges have series: one caught up
    // (lag 0, in seconds too), one an entry behind.
    const readUrl = cluster.replicas[0]!.clientUrl;
    await createLog(readUrl, 'prom-readers');
    expect((await appendRaw(readUrl, 'prom-readers', 'one')).status).toBe(200);
    for (const [reader, nextId] of [['caught-up', 1], ['behind', 0]] as const) {
      const res = await http(`${readUrl}/v1/logs/prom-readers/readers/${reader}`, { method: 'PUT', contentType: 'application/json', body: JSON.stringify({ nextId }) });
      expect(res.status, res.body.toString()).toBe(200);
    }
    loadRunning = true;
    load = drive(logs, 10_000).finally(() => {
      loadRunning = false;
    });
  }, TIMEOUT);

  afterAll(async () => {
    loadRunning = false;
    await load.catch(() => undefined);
    if (prometheus) await stopChild(prometheus);
    await stopCluster?.();
    if (promDir && !process.env.TERN_KEEP_TEST_DIRS) rmSync(promDir, { recursive: true, force: true });
  }, TIMEOUT);

  it('scrapes all three replicas', async () => {
    await eventually(async () => {
      const targets = (await http(`${promUrl}/api/v1/targets`)).json().data.activeTargets as { labels: Record<string, string>; health: string; lastError: string }[];
      expect(targets.map((t) => `${t.labels.replica} ${t.health} ${t.lastError}`).sort()).toEqual(['r1 up ', 'r2 up ', 'r3 up ']);
    }, 20_000, 250);
    // The replica label comes from the replicas' own series (honor_labels) and from the target for `up`.
    const up = await query('up{job="tern"}');
    expect(up.data.result.map((s: any) => s.metric.replica).sort()).toEqual(['r1', 'r2', 'r3']);
    const replicas = await query('count by (replica) (tern_buffer_bytes{job="tern"})');
    expect(replicas.data.result.map((s: any) => s.metric.replica).sort()).toEqual(['r1', 'r2', 'r3']);
  }, TIMEOUT);

  it('returns series for every expression of every dashboard panel, and for every metric they name', async () => {
    await load;
    expect(loadErrors.slice(0, 10)).toEqual([]);
    expect(appendsOk).toBeGreaterThan(200);
    // The last samples of the load scraped: every replica scraped twice since it ended (one scrape a second).
    const loadEnded = Date.now();
    await eventually(async () => {
      const targets = (await http(`${promUrl}/api/v1/targets`)).json().data.activeTargets as { labels: Record<string, string>; lastScrape: string }[];
      expect(targets.length).toBe(3);
      for (const t of targets) expect(Date.parse(t.lastScrape), t.labels.replica).toBeGreaterThan(loadEnded + SCRAPE_INTERVAL_MS);
    }, 20_000, 250);
    const exprs = dashboardExpressions();
    expect(exprs.length).toBeGreaterThan(30);
    const failures: string[] = [];
    for (const { panel, expr } of exprs) {
      const sent = substitute(expr);
      const answer = await query(sent);
      if (answer.status !== 'success') failures.push(`[${panel}] ${sent}: ${answer.errorType ?? ''} ${answer.error ?? answer.status}`);
      else if (answer.data.result.length === 0) failures.push(`[${panel}] ${sent}: no series`);
    }
    const names = [...new Set(exprs.flatMap((e) => metricNames(e.expr)))];
    for (const name of names) {
      const answer = await query(`count(${name}{job="tern"})`);
      if (answer.status !== 'success' || answer.data.result.length === 0) failures.push(`metric ${name}: no series`);
    }
    expect(failures).toEqual([]);
    // The variables' queries (label_values) find every replica and the logs.
    const replicas = (await http(`${promUrl}/api/v1/label/replica/values?match[]=tern_buffer_bytes`)).json().data;
    expect(replicas).toEqual(['r1', 'r2', 'r3']);
    const logs = (await http(`${promUrl}/api/v1/label/log/values?match[]=tern_committed_id`)).json().data;
    expect(logs).toEqual(expect.arrayContaining(['prom-a', 'prom-b', 'prom-c']));
  }, TIMEOUT);

  it('parses every alert expression, finds series of every metric it uses, evaluates every rule, fires none', async () => {
    const rules = alertRules();
    expect(rules.length).toBeGreaterThanOrEqual(7);
    const failures: string[] = [];
    for (const rule of rules) {
      const answer = await query(rule.expr);
      if (answer.status !== 'success') failures.push(`${rule.alert}: ${answer.errorType ?? ''} ${answer.error ?? answer.status}`);
      const names = metricNames(rule.expr);
      if (names.length === 0) failures.push(`${rule.alert}: names no metric`);
      for (const name of names) {
        const series = await query(`count(${name}{job="tern"})`);
        if (series.status !== 'success' || series.data.result.length === 0) failures.push(`${rule.alert}: metric ${name} has no series`);
      }
    }
    expect(failures).toEqual([]);

    // Prometheus loaded rules.yml and has evaluated every rule without error.
    await eventually(async () => {
      const groups = (await http(`${promUrl}/api/v1/rules`)).json().data.groups as { name: string; rules: { name: string; type: string; health: string; lastError?: string }[] }[];
      const loaded = groups.flatMap((g) => g.rules).filter((r) => r.type === 'alerting');
      expect(loaded.map((r) => `${r.name} ${r.health} ${r.lastError ?? ''}`.trim()).sort()).toEqual(rules.map((r) => `${r.alert} ok`).sort());
    }, 15_000, 250);

    // A healthy cluster fires nothing.
    const alerts = (await http(`${promUrl}/api/v1/alerts`)).json().data.alerts as { labels: Record<string, string>; state: string }[];
    expect(alerts.filter((a) => a.state === 'firing').map((a) => JSON.stringify(a.labels))).toEqual([]);
  }, TIMEOUT);
});
