/**
 * HTTP plumbing shared by the benchmarks: JSON calls for set-up (create a log,
 * read its status) and the cheap append used in hot loops.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { request, type Dispatcher, type Pool } from 'undici';

/** The Authorization header for a cluster that requires tokens (`tern cluster --auth`); none for an open one. */
export function authHeaders(token: string | undefined): Record<string, string> {
  return token === undefined ? {} : { authorization: `Bearer ${token}` };
}

export async function httpJson(url: string, method: 'GET' | 'PUT', token?: string): Promise<{ status: number; body: any }> {
  const res = await request(url, { method, headers: authHeaders(token), headersTimeout: 10_000, bodyTimeout: 10_000 });
  const text = await res.body.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    /* not JSON: keep the text */
  }
  return { status: res.statusCode, body };
}

/** Creates the log through replica `via` and returns its leader's id, waiting (up to 15 s) until it has one. */
export async function createLog(via: string, log: string, signal: AbortSignal, token?: string): Promise<string> {
  const put = await httpJson(`${via}/v1/logs/${log}`, 'PUT', token);
  if (put.status !== 201 && put.status !== 200) throw new Error(`PUT /v1/logs/${log}: ${put.status} ${JSON.stringify(put.body)}`);
  let leader: string | null = put.body?.leader ?? null;
  const deadline = Date.now() + 15_000;
  while (!leader) {
    if (signal.aborted) throw new Error('interrupted');
    if (Date.now() > deadline) throw new Error(`log ${log} has no leader 15 s after its creation`);
    await sleep(100);
    const get = await httpJson(`${via}/v1/logs/${log}`, 'GET', token);
    leader = get.status === 200 ? (get.body?.leader ?? null) : null;
  }
  return leader;
}

/** GET /v1/logs/{log} (the log's status) or throws. */
export async function logStatus(url: string, log: string, token?: string): Promise<{ leader: string | null; committedId: number; flushedId: number; [k: string]: unknown }> {
  const get = await httpJson(`${url}/v1/logs/${log}`, 'GET', token);
  if (get.status !== 200) throw new Error(`GET /v1/logs/${log}: ${get.status} ${JSON.stringify(get.body)}`);
  return get.body;
}

export async function committedEntries(url: string, log: string, token?: string): Promise<number> {
  return Number((await logStatus(url, log, token)).committedId) + 1;
}

export const OCTET_STREAM_HEADERS = { 'content-type': 'application/octet-stream' };

/**
 * One append through undici's low-level dispatch API: no response stream
 * or extra promise chain per request (in A/B runs on the 2-core machine it
 * used somewhat less driver CPU per append than pool.request(), though runs
 * are noisy), and the body of a 200 is discarded unread. Resolves to
 * undefined on 200, else to the error key "status CODE" (status 0: no HTTP
 * answer, with undici's error code). Never rejects.
 */
export function append(pool: Pool, path: string, payload: Buffer, headers: Record<string, string> = OCTET_STREAM_HEADERS): Promise<string | undefined> {
  return new Promise((resolve) => {
    let status = 0;
    let chunks: Buffer[] | undefined;
    const handler: Dispatcher.DispatchHandler = {
      // Its presence selects undici's (non-deprecated) controller API for this handler.
      onRequestStart() {},
      onResponseStart(_controller, statusCode) {
        status = statusCode;
        if (status !== 200) chunks = [];
      },
      onResponseData(_controller, chunk) {
        chunks?.push(chunk);
      },
      onResponseEnd() {
        if (status === 200) return resolve(undefined);
        let code = 'unknown';
        try {
          code = JSON.parse(Buffer.concat(chunks ?? []).toString('utf8'))?.error?.code ?? code;
        } catch {
          /* not a JSON error body */
        }
        resolve(`${status} ${code}`);
      },
      onResponseError(_controller, err) {
        resolve(`0 ${(err as { code?: string }).code ?? err.name}`);
      },
    };
    try {
      pool.dispatch({ path, method: 'POST', headers, body: payload }, handler);
    } catch (err) {
      resolve(`0 ${(err as { code?: string }).code ?? (err as Error).name}`);
    }
  });
}
