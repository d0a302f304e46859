/**
 * HTTP to the replicas, through one undici Agent per client (keep-alive
 * connections, the cluster's CA for TLS), with the bearer token on every
 * request. Failures to connect become ConnectionError; error answers are
 * left to the caller (`throwIfError`).
 */
import { Agent, request, type Dispatcher } from 'undici';
import { connectionError, errorFromAnswer, TernClientError } from './errors.js';

export interface TransportOptions {
  /** Bearer token sent with every request. */
  token?: string;
  /** PEM CA certificate(s) that verify the replicas (TLS clusters). */
  caPem?: string | Buffer;
  /** Connections per replica. */
  connections: number;
}

export interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

export interface RequestOptions {
  method?: 'GET' | 'PUT' | 'POST' | 'DELETE';
  headers?: Record<string, string>;
  body?: Buffer | Buffer[] | string;
  timeoutMs: number;
  signal?: AbortSignal;
}

export interface StreamAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: AsyncIterable<Buffer> & { destroy(): void };
}

export function header(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

export class Transport {
  private readonly agent: Agent;
  private readonly auth: Record<string, string>;

  constructor(options: TransportOptions) {
    this.agent = new Agent({ connections: options.connections, ...(options.caPem ? { connect: { ca: options.caPem } } : {}) });
    this.auth = options.token ? { authorization: `Bearer ${options.token}` } : {};
  }

  /** One request, its whole answer read. */
  async request(baseUrl: string, path: string, options: RequestOptions): Promise<Answer> {
    const body = Array.isArray(options.body) ? Buffer.concat(options.body) : options.body;
    let res: Dispatcher.ResponseData;
    try {
      res = await request(baseUrl + path, {
        dispatcher: this.agent,
        method: options.method ?? 'GET',
        headers: { ...this.auth, ...options.headers },
        body,
        headersTimeout: options.timeoutMs,
        bodyTimeout: options.timeoutMs,
        signal: options.signal,
      });
    } catch (err) {
      throw this.failure(baseUrl, err, options.signal);
    }
    try {
      return { status: res.statusCode, headers: res.headers, body: Buffer.from(await res.body.arrayBuffer()) };
    } catch (err) {
      throw this.failure(baseUrl, err, options.signal);
    }
  }

  /** A request whose body is read as it arrives (the streaming tail). `idleTimeoutMs` bounds the silence between chunks. */
  async stream(baseUrl: string, path: string, options: { headers?: Record<string, string>; headersTimeoutMs: number; idleTimeoutMs: number; signal?: AbortSignal }): Promise<StreamAnswer> {
    try {
      const res = await request(baseUrl + path, {
        dispatcher: this.agent,
        method: 'GET',
        headers: { ...this.auth, ...options.headers },
        headersTimeout: options.headersTimeoutMs,
        bodyTimeout: options.idleTimeoutMs,
        signal: options.signal,
      });
      return { status: res.statusCode, headers: res.headers, body: res.body as unknown as StreamAnswer['body'] };
    } catch (err) {
      throw this.failure(baseUrl, err, options.signal);
    }
  }

  async close(): Promise<void> {
    await this.agent.close();
  }

  private failure(url: string, err: unknown, signal: AbortSignal | undefined): TernClientError {
    if (signal?.aborted) return new TernClientError('ABORTED', 'aborted', { maybeApplied: true, cause: err });
    return connectionError(url, err);
  }
}

/** Parses a JSON answer, throwing the typed error for an error status. */
export function jsonOf<T>(answer: Answer): T {
  let json: unknown;
  try {
    json = answer.body.length ? JSON.parse(answer.body.toString('utf8')) : undefined;
  } catch {
    json = undefined;
  }
  if (answer.status >= 400) throw errorFromAnswer(answer.status, json, header(answer.headers, 'retry-after'));
  if (json === undefined) throw new TernClientError('BAD_ANSWER', `expected JSON, got ${answer.body.length} bytes with status ${answer.status}`, { status: answer.status });
  return json as T;
}

/** Throws the typed error for an error answer (any body). */
export function throwIfError(answer: Answer): void {
  if (answer.status >= 400) jsonOf(answer);
}
