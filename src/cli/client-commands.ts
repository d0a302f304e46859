/**
 * The client commands of the `tern` CLI, on the client library:
 *   tern log create|retention|list|status|delete|truncate|handoff|recover|offset ...
 *   tern reader commit|get|list|delete ...
 *   tern append LOG [DATA]      (no DATA: one entry per stdin line, batched)
 *   tern read LOG [--from ID | --since DURATION | --from-time TIME] [--limit N]
 *   tern tail LOG [--from ID | --since DURATION | --from-time TIME]
 * Exit codes (README, Commands): 0 ok, 1 other failure, 2 usage, 3 no such
 * log, 4 unavailable, 5 auth, 130 interrupted.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { ConfigError } from '../replica/config.js';
import { AuthError, ConnectionError, LogNotFoundError, ReaderNotFoundError, TernClientError, TernServerError, UnavailableError } from '../client/errors.js';
import { DEFAULT_CLUSTER_FILE, TernClient } from '../client/client.js';
import { looksLikeUrls } from '../client/cluster-file.js';
import { ADMIN_TOKEN_FILE } from './cluster-auth.js';
import type { ReadStart, RetentionPolicy } from '../client/types.js';
import { entryJson, entryLine, readersTable, retentionText, statusTable, timeText } from './client-output.js';
import { parseDuration, parseSize, parseTime } from './units.js';

export const EXIT = { ok: 0, failure: 1, usage: 2, noSuchLog: 3, unavailable: 4, auth: 5, interrupted: 130 } as const;

/** Appends from stdin waiting for their ids at once: bounds memory while keeping batches full. */
const STDIN_WINDOW = 4096;
/** Without a terminal on stderr, a progress line this often during a long append. */
const PROGRESS_EVERY_MS = 10_000;
/** With a terminal, the progress line is redrawn this often. */
const TTY_PROGRESS_EVERY_MS = 250;

export function clientUsage(): string {
  return `Usage:
  tern log create LOG [LIMITS]        create a log (idempotent), with a retention policy
  tern log retention LOG LIMITS|--none
                                      replace an existing log's retention policy (--none: none)
  tern log list                       list the logs
  tern log status LOG                 leader, epoch, ids, segments
  tern log delete LOG                 delete a log and its entries
  tern log truncate LOG BEFORE_ID     make ids below BEFORE_ID unreadable
  tern log handoff LOG REPLICA        move the log's leadership to REPLICA (r2, ...)
  tern log recover LOG --accept-data-loss
                                      UNSAFE: recover a log whose replicas restarted empty
  tern log offset LOG --time TIME     the id of the first entry at or after TIME
  tern reader commit LOG NAME NEXT_ID [--holds-retention]
                                      commit that reader NAME has read every id below NEXT_ID
                                      (--holds-retention: truncation never passes it)
  tern reader get LOG NAME            a named reader's position and lag
  tern reader list LOG                the log's named readers
  tern reader delete LOG NAME         delete a named reader (releasing the retention it held)
  tern append LOG [DATA]              append DATA, or each line of stdin as one entry (batched)
  tern read LOG [START] [--limit N]   print entries (id, time, data) from START (default id 0)
                                      up to the commit point
  tern tail LOG [START]               follow the log from START (default: its end) until Ctrl-C
LIMITS are any of (the leader applies them in the background; age and size by whole objects):
  --max-age DURATION    drop entries older than DURATION (30s, 10m, 2h, 7d)
  --max-bytes SIZE      drop the oldest objects past SIZE (4096, 512MiB, 10GiB; KB, MB, ... are 1000s)
  --max-entries N       drop the oldest entries past the last N
START is one of:
  --from ID             the entry of that id
  --since DURATION      the first entry of the last DURATION (30s, 10m, 2h, 7d)
  --from-time TIME      the first entry at or after TIME (ISO 8601 such as
                        2026-12-03T16:00:00Z, or ms since the Unix epoch)
Options:
  --cluster FILE|URLS   cluster.json, or comma-separated replica URLs (default ${DEFAULT_CLUSTER_FILE})
  --token TOKEN         bearer token (default: $TERN_TOKEN, else admin-token beside cluster.json)
  --ca FILE             CA certificate of a TLS cluster (default: cluster.json's tls.ca)
  --json                one JSON object per line
  --timeout-ms MS       give up retrying after this long (default 30000; tail retries for ever)
Exit codes: 0 ok, 1 other failure, 2 usage, 3 no such log or reader, 4 unavailable, 5 auth, 130 interrupted.`;
}

interface Common {
  timeoutMs: number | undefined;
  cluster: string;
  token: string | undefined;
  ca: string | undefined;
  json: boolean;
}

const COMMON_OPTIONS = {
  cluster: { type: 'string' },
  token: { type: 'string' },
  ca: { type: 'string' },
  json: { type: 'boolean' },
  'timeout-ms': { type: 'string' },
} as const;

function parse<O extends Record<string, { type: 'string' | 'boolean' }>>(args: string[], extra: O) {
  try {
    return parseArgs({ args, options: { ...COMMON_OPTIONS, ...extra }, strict: true, allowPositionals: true });
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
}

function common(values: Record<string, unknown>): Common {
  const timeoutMs = values['timeout-ms'] === undefined ? undefined : Number(values['timeout-ms']);
  if (timeoutMs !== undefined && !(Number.isFinite(timeoutMs) && timeoutMs > 0)) throw new ConfigError(`--timeout-ms must be a positive number, got "${values['timeout-ms']}"`);
  return { timeoutMs, cluster: (values.cluster as string | undefined) ?? DEFAULT_CLUSTER_FILE, token: values.token as string | undefined, ca: values.ca as string | undefined, json: values.json === true };
}

/** The token: --token, else $TERN_TOKEN, else the admin token `tern cluster --auth` keeps beside cluster.json. */
function tokenFor(c: Common): string | undefined {
  if (c.token) return c.token;
  if (process.env.TERN_TOKEN) return process.env.TERN_TOKEN;
  if (looksLikeUrls(c.cluster)) return undefined;
  const file = join(dirname(c.cluster), ADMIN_TOKEN_FILE);
  return existsSync(file) ? readFileSync(file, 'utf8').trim() : undefined;
}

function positionals(p: string[], names: string[], command: string): string[] {
  if (p.length !== names.length) throw new ConfigError(`tern ${command}: expected ${names.join(' ') || 'no arguments'}, got ${p.length ? p.join(' ') : 'none'}`);
  return p;
}

function nonNegativeInt(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0) throw new ConfigError(`${flag} must be a non-negative integer, got "${value}"`);
  return n;
}

function positiveInt(value: string | undefined, flag: string): number | undefined {
  const n = nonNegativeInt(value, flag);
  if (n === 0) throw new ConfigError(`${flag} must be a positive integer, got "${value}"`);
  return n;
}

/** The flags of a retention policy (`tern log create`, `tern log retention`). */
const RETENTION_OPTIONS = { 'max-age': { type: 'string' }, 'max-bytes': { type: 'string' }, 'max-entries': { type: 'string' }, none: { type: 'boolean' } } as const;

/** The policy the flags give: their limits, `{}` for --none, undefined for no flag. */
export function retentionOf(values: Record<string, unknown>): RetentionPolicy | undefined {
  const policy: RetentionPolicy = {};
  if (values['max-age'] !== undefined) policy.maxAgeMs = parseDuration(values['max-age'] as string, '--max-age');
  if (values['max-bytes'] !== undefined) policy.maxBytes = parseSize(values['max-bytes'] as string, '--max-bytes');
  if (values['max-entries'] !== undefined) policy.maxEntries = positiveInt(values['max-entries'] as string, '--max-entries');
  const limited = Object.keys(policy).length > 0;
  if (values.none !== true) return limited ? policy : undefined;
  if (limited) throw new ConfigError('--none clears the policy: give it without limits');
  return {};
}

/** The flags that say where `read` and `tail` start. */
const START_OPTIONS = { from: { type: 'string' }, since: { type: 'string' }, 'from-time': { type: 'string' } } as const;

/** Where --from, --since or --from-time (at most one) say to start; undefined when none is given. `--since` counts back from `nowMs`. */
export function startOf(values: Record<string, unknown>, nowMs: number): ReadStart | undefined {
  const given = Object.keys(START_OPTIONS).filter((flag) => values[flag] !== undefined);
  if (given.length > 1) throw new ConfigError(`--${given.join(' and --')} say where to start in two ways: give one`);
  const from = nonNegativeInt(values.from as string | undefined, '--from');
  if (from !== undefined) return { from };
  if (values.since !== undefined) return { fromTime: Math.max(0, nowMs - parseDuration(values.since as string, '--since')) };
  if (values['from-time'] !== undefined) return { fromTime: parseTime(values['from-time'] as string, '--from-time') };
  return undefined;
}

/** Runs a client command; returns its exit code. Usage errors throw ConfigError (exit 2, printed by main). */
export async function runClientCommand(command: string, argv: string[]): Promise<number> {
  const plan = planCommand(command, argv);
  // A reader that stops early (`tern read LOG | head`) is no failure.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(EXIT.ok);
    throw err;
  });
  const c = plan.common;
  const client = await TernClient.connect({ cluster: c.cluster, ...(tokenFor(c) ? { token: tokenFor(c) } : {}), ...(c.ca ? { ca: c.ca } : {}), ...(c.timeoutMs ? { deadlineMs: c.timeoutMs } : {}) }).catch((err) => {
    throw err instanceof TernClientError && err.code === 'BAD_ARGUMENT' ? new ConfigError(err.message) : err;
  });
  const interrupted = new Promise<number>((resolve) => {
    const stop = () => resolve(EXIT.interrupted);
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  try {
    return await Promise.race([plan.run(client), interrupted]);
  } catch (err) {
    return reportFailure(err);
  } finally {
    // An interrupted command may leave requests in flight: do not wait for them.
    void client.close().catch(() => undefined);
  }
}

/** Prints what failed and gives its exit code. */
export function reportFailure(err: unknown): number {
  const code = exitCodeOf(err);
  const e = err as TernClientError;
  const applied = e.maybeApplied === true ? ' (it may have been applied)' : '';
  console.error(`tern: ${e.code ? `${e.code}: ` : ''}${e.message ?? String(err)}${applied}`);
  return code;
}

export function exitCodeOf(err: unknown): number {
  if (err instanceof ConfigError) return EXIT.usage;
  if (err instanceof LogNotFoundError || err instanceof ReaderNotFoundError) return EXIT.noSuchLog;
  if (err instanceof AuthError) return EXIT.auth;
  if (err instanceof UnavailableError || err instanceof ConnectionError) return EXIT.unavailable;
  if (err instanceof TernServerError && err.status === 503) return EXIT.unavailable;
  if (err instanceof TernClientError && err.code === 'BAD_ARGUMENT') return EXIT.usage;
  return EXIT.failure;
}

/** A command's answer: the server's JSON with --json, else the human line. */
function show(c: Common, obj: unknown, human: string): void {
  process.stdout.write((c.json ? JSON.stringify(obj) : human) + '\n');
}

/** Writes a line to stdout, waiting when the pipe is full: a long read never piles up in memory. */
async function print(line: string): Promise<void> {
  if (!process.stdout.write(line + '\n')) await once(process.stdout, 'drain');
}

interface Plan {
  common: Common;
  run(client: TernClient): Promise<number>;
}

/** Parses a command line into what to run (usage errors throw before any connection). */
export function planCommand(command: string, argv: string[]): Plan {
  switch (command) {
    case 'log': {
      const [sub, ...rest] = argv;
      const { values, positionals: p } = parse(rest, { 'accept-data-loss': { type: 'boolean' }, time: { type: 'string' }, ...RETENTION_OPTIONS });
      const c = common(values);
      switch (sub) {
        case 'create': {
          const [log] = positionals(p, ['LOG'], 'log create');
          const retention = retentionOf(values);
          return { common: c, run: async (client) => {
            const s = await client.createLog(log!, retention ? { retention } : {});
            show(c, s, `${s.created ? 'created' : 'exists'}: ${s.log} (leader ${s.leader ?? '(none yet)'}, epoch ${s.epoch})${retention ? `, retention ${retentionText(retention)}` : ''}`);
            return EXIT.ok;
          } };
        }
        case 'retention': {
          const [log] = positionals(p, ['LOG'], 'log retention');
          const retention = retentionOf(values);
          if (!retention) throw new ConfigError('tern log retention: give the new policy (--max-age, --max-bytes, --max-entries), or --none to clear it');
          return { common: c, run: async (client) => {
            const s = await client.setRetention(log!, retention);
            show(c, s, `retention of ${log}: ${retentionText(retention)}`);
            return EXIT.ok;
          } };
        }
        case 'list':
          positionals(p, [], 'log list');
          return { common: c, run: async (client) => {
            for (const log of await client.listLogs()) show(c, { log }, log);
            return EXIT.ok;
          } };
        case 'status': {
          const [log] = positionals(p, ['LOG'], 'log status');
          return { common: c, run: async (client) => {
            const s = await client.status(log!);
            show(c, s, statusTable(s));
            return EXIT.ok;
          } };
        }
        case 'delete': {
          const [log] = positionals(p, ['LOG'], 'log delete');
          return { common: c, run: async (client) => {
            const r = await client.deleteLog(log!);
            show(c, r, `deleted: ${log}`);
            return EXIT.ok;
          } };
        }
        case 'truncate': {
          const [log, before] = positionals(p, ['LOG', 'BEFORE_ID'], 'log truncate');
          const beforeId = nonNegativeInt(before, 'BEFORE_ID')!;
          return { common: c, run: async (client) => {
            const s = await client.truncate(log!, beforeId);
            show(c, s, `truncated: ${log} before id ${beforeId} (first id now ${s.firstId})`);
            return EXIT.ok;
          } };
        }
        case 'handoff': {
          const [log, to] = positionals(p, ['LOG', 'REPLICA'], 'log handoff');
          return { common: c, run: async (client) => {
            const s = await client.handoff(log!, to!);
            show(c, s, `handed off: ${log} now led by ${s.leader} (epoch ${s.epoch})`);
            return EXIT.ok;
          } };
        }
        case 'recover': {
          const [log] = positionals(p, ['LOG'], 'log recover');
          if (values['accept-data-loss'] !== true) throw new ConfigError('tern log recover is unsafe: it needs --accept-data-loss (README, The promise)');
          return { common: c, run: async (client) => {
            const r = await client.recover(log!, { acceptDataLoss: true });
            show(c, r, `recovered: ${log} at id ${r.recoveredId} (epoch ${r.epoch})\nwarning: ${r.warning}`);
            return EXIT.ok;
          } };
        }
        case 'offset': {
          const [log] = positionals(p, ['LOG'], 'log offset');
          if (values.time === undefined) throw new ConfigError('tern log offset: --time TIME is required');
          const time = parseTime(values.time as string, '--time');
          return { common: c, run: async (client) => {
            const r = await client.offsetForTime(log!, time);
            show(c, r, r.timeMs === null ? `id ${r.id} (no entry at or after ${timeText(time)} yet: the next id to commit)` : `id ${r.id} (time ${timeText(r.timeMs)})`);
            return EXIT.ok;
          } };
        }
        default:
          throw new ConfigError(`tern log: unknown subcommand "${sub ?? ''}" (create, retention, list, status, delete, truncate, handoff, recover, offset)`);
      }
    }
    case 'reader': {
      const [sub, ...rest] = argv;
      const { values, positionals: p } = parse(rest, { 'holds-retention': { type: 'boolean' } });
      const c = common(values);
      switch (sub) {
        case 'commit': {
          const [log, name, next] = positionals(p, ['LOG', 'NAME', 'NEXT_ID'], 'reader commit');
          const nextId = nonNegativeInt(next, 'NEXT_ID')!;
          const holdsRetention = values['holds-retention'] === true;
          return { common: c, run: async (client) => {
            const r = await client.commitReader(log!, name!, nextId, { holdsRetention });
            show(c, r, `committed: reader ${name} of ${log} at next id ${r.nextId}${r.holdsRetention ? ', holding retention' : ''}`);
            return EXIT.ok;
          } };
        }
        case 'get': {
          const [log, name] = positionals(p, ['LOG', 'NAME'], 'reader get');
          return { common: c, run: async (client) => {
            const r = await client.reader(log!, name!);
            show(c, r, readersTable([r]));
            return EXIT.ok;
          } };
        }
        case 'list': {
          const [log] = positionals(p, ['LOG'], 'reader list');
          return { common: c, run: async (client) => {
            const readers = await client.readers(log!);
            // One JSON object a line, or one table.
            const lines = c.json ? readers.map((r) => JSON.stringify(r)) : [readers.length === 0 ? `no readers of ${log}` : readersTable(readers)];
            for (const line of lines) await print(line);
            return EXIT.ok;
          } };
        }
        case 'delete': {
          const [log, name] = positionals(p, ['LOG', 'NAME'], 'reader delete');
          return { common: c, run: async (client) => {
            const r = await client.deleteReader(log!, name!);
            show(c, r, `deleted: reader ${name} of ${log}`);
            return EXIT.ok;
          } };
        }
        default:
          throw new ConfigError(`tern reader: unknown subcommand "${sub ?? ''}" (commit, get, list, delete)`);
      }
    }
    case 'append': {
      const { values, positionals: p } = parse(argv, {});
      const c = common(values);
      if (p.length < 1 || p.length > 2) throw new ConfigError('tern append: expected LOG [DATA]');
      const [log, data] = p;
      return { common: c, run: (client) => (data !== undefined ? appendOne(client, log!, data, c) : appendStdin(client, log!, c)) };
    }
    case 'read': {
      const { values, positionals: p } = parse(argv, { ...START_OPTIONS, limit: { type: 'string' } });
      const c = common(values);
      const [log] = positionals(p, ['LOG'], 'read');
      const start = startOf(values, Date.now()) ?? { from: 0 };
      const limit = nonNegativeInt(values.limit as string | undefined, '--limit');
      return { common: c, run: async (client) => {
        for await (const entry of client.entries(log!, { ...start, ...(limit !== undefined ? { limit } : {}) })) await print(c.json ? entryJson(entry) : entryLine(entry));
        return EXIT.ok;
      } };
    }
    case 'tail': {
      const { values, positionals: p } = parse(argv, START_OPTIONS);
      const c = common(values);
      const [log] = positionals(p, ['LOG'], 'tail');
      const given = startOf(values, Date.now());
      return { common: c, run: async (client) => {
        // Like tail -f: by default only what is appended from now on.
        const start = given ?? { from: (await client.status(log!)).committedId + 1 };
        for await (const entry of client.tail(log!, start)) await print(c.json ? entryJson(entry) : entryLine(entry));
        return EXIT.ok;
      } };
    }
    default:
      throw new ConfigError(`tern: unknown command "${command}"`);
  }
}

async function appendOne(client: TernClient, log: string, data: string, c: Common): Promise<number> {
  const producer = client.producer(log, { lingerMs: 0 });
  const id = await producer.append(data);
  process.stdout.write((c.json ? JSON.stringify({ id }) : `appended: id ${id}`) + '\n');
  return EXIT.ok;
}

/** One entry per stdin line, through one producer with up to STDIN_WINDOW appends outstanding. */
async function appendStdin(client: TernClient, log: string, c: Common): Promise<number> {
  // Fail fast on a missing log rather than after reading the whole input.
  await client.status(log);
  const producer = client.producer(log);
  const progress = new Progress();
  const outstanding = new Set<Promise<void>>();
  let failure: unknown;
  let first = -1;
  let last = -1;
  let count = 0;
  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of lines) {
    if (failure) break;
    const p: Promise<void> = producer.append(line).then(
      (id) => {
        if (first < 0 || id < first) first = id;
        last = Math.max(last, id);
        count++;
        progress.update(count);
        if (c.json) process.stdout.write(JSON.stringify({ id }) + '\n');
      },
      (err) => {
        failure ??= err;
      },
    );
    const tracked = p.finally(() => outstanding.delete(tracked));
    outstanding.add(tracked);
    if (outstanding.size >= STDIN_WINDOW) await Promise.race(outstanding);
  }
  lines.close();
  await Promise.all(outstanding);
  progress.done(count);
  if (failure) {
    console.error(`tern: appended ${count} entries before the failure`);
    throw failure;
  }
  if (!c.json) process.stdout.write(count === 0 ? 'appended: nothing (no input lines)\n' : `appended: ${count} entries, ids ${first}..${last}\n`);
  return EXIT.ok;
}

/** The progress of a long append on stderr: redrawn in place on a terminal, else a line every PROGRESS_EVERY_MS. */
class Progress {
  private readonly started = Date.now();
  private lastShown = Date.now();
  private readonly tty = process.stderr.isTTY === true;
  private shown = false;

  update(count: number): void {
    const now = Date.now();
    if (now - this.lastShown < (this.tty ? TTY_PROGRESS_EVERY_MS : PROGRESS_EVERY_MS)) return;
    this.lastShown = now;
    this.shown = true;
    const line = `appended ${count} entries (${Math.round(count / ((now - this.started) / 1000))}/s)`;
    process.stderr.write(this.tty ? `\r${line}\x1b[K` : line + '\n');
  }

  done(count: number): void {
    if (this.shown && this.tty) process.stderr.write(`\rappended ${count} entries\x1b[K\n`);
  }
}
