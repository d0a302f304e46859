/**
 * The tokens in force on one replica: read from --tokens-file at start-up (a
 * bad file is a ConfigError: the replica does not start), then re-read on
 * SIGHUP and when the file changes (a Kubernetes Secret update), without a
 * restart. A bad file on reload is logged and the old tokens stay, so a
 * broken edit cannot lock every client out.
 */
import { readFileSync, unwatchFile, watchFile, type Stats } from 'node:fs';
import type { FastifyBaseLogger } from 'fastify';
import { ConfigError } from '../replica/config.js';
import { findToken, parseTokensFile, type TokenRecord } from './tokens.js';

/**
 * How often the file's metadata is polled for a change. Polled rather than
 * watched with inotify: a Secret volume swaps a symlink to a new directory,
 * which a watch on the old file never sees, while stat() of the path follows it.
 */
const POLL_INTERVAL_MS = 1000;

export interface TokenFileEvents {
  /** The tokens now in force (at start-up and after each successful reload). */
  loaded(tokens: number): void;
  reloaded(result: 'ok' | 'failed'): void;
}

export class TokenFile {
  private records: readonly TokenRecord[];
  private text: string;
  private readonly onHangup = () => this.reload('SIGHUP');
  private readonly onChange = (now: Stats, before: Stats) => {
    if (now.mtimeMs !== before.mtimeMs || now.ino !== before.ino || now.size !== before.size) this.reload('file changed');
  };

  private constructor(
    private readonly path: string,
    private readonly logger: FastifyBaseLogger,
    private readonly events: TokenFileEvents,
  ) {
    try {
      this.text = readFileSync(path, 'utf8');
      this.records = parseTokensFile(this.text);
    } catch (err) {
      throw new ConfigError(`--tokens-file ${path}: ${(err as Error).message}`);
    }
    this.announce();
  }

  /** Reads the file (throws ConfigError when it is bad) and keeps it up to date until `close`. */
  static open(path: string, logger: FastifyBaseLogger, events: TokenFileEvents): TokenFile {
    const file = new TokenFile(path, logger, events);
    process.on('SIGHUP', file.onHangup);
    watchFile(path, { interval: POLL_INTERVAL_MS, persistent: false }, file.onChange);
    return file;
  }

  /** The record of the presented token, or undefined (constant time in the token: src/auth/tokens.ts). */
  find(presented: string): TokenRecord | undefined {
    return findToken(this.records, presented);
  }

  /** Re-reads the file; on any failure the tokens in force stay. */
  reload(why: string): void {
    let text: string;
    let records: TokenRecord[];
    try {
      text = readFileSync(this.path, 'utf8');
      // Polling also fires for a touch or a rewrite with the same content: nothing to do.
      if (text === this.text) return;
      records = parseTokensFile(text);
    } catch (err) {
      this.events.reloaded('failed');
      this.logger.error({ path: this.path, why, err: (err as Error).message }, 'tokens file not reloaded: keeping the tokens in force');
      return;
    }
    this.text = text;
    this.records = records;
    this.events.reloaded('ok');
    this.logger.info({ path: this.path, why }, 'tokens file reloaded');
    this.announce();
  }

  close(): void {
    process.off('SIGHUP', this.onHangup);
    unwatchFile(this.path, this.onChange);
  }

  private announce(): void {
    this.events.loaded(this.records.length);
    const names = this.records.map((r) => r.name);
    if (names.length === 0) this.logger.warn({ path: this.path }, 'tokens file holds no token: every client request except probes and metrics is refused');
    else this.logger.info({ path: this.path, tokens: names }, 'client authentication on');
  }
}
