/**
 * Small helpers for starting and stopping the local processes of a cluster
 * (etcd, replicas): free ports, waiting for an HTTP endpoint, killing a child
 * and waiting for it to be gone.
 */
import { type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { request, type Dispatcher } from 'undici';

/** One poll of `waitForHttp` gives up after this: a local process that is up answers in milliseconds. */
const POLL_REQUEST_TIMEOUT_MS = 1000;
/** `waitForHttp` polls this often: quick enough not to slow a test's start-up, slow enough to leave the starting process the CPU. */
const POLL_EVERY_MS = 50;
/** Characters of the last answer quoted when `waitForHttp` gives up. */
const LAST_ANSWER_CHARS = 200;
/** Default time `stopChild` allows a process to exit on its signal before SIGKILL: etcd and s3rver stop in well under a second. */
const DEFAULT_STOP_GRACE_MS = 5000;

/** A port that was free a moment ago on 127.0.0.1 (the OS picks it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

/** Polls `url` until it answers 200 (and `accept` approves the body), or throws after `timeoutMs`; `dispatcher` to trust a local CA. */
export async function waitForHttp(url: string, timeoutMs: number, child?: ChildProcess, accept: (body: string) => boolean = () => true, dispatcher?: Dispatcher): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer';
  while (Date.now() < deadline) {
    if (child && (child.exitCode !== null || child.signalCode !== null)) {
      throw new Error(`process exited (${child.signalCode ?? child.exitCode}) while waiting for ${url}`);
    }
    try {
      const res = await request(url, { headersTimeout: POLL_REQUEST_TIMEOUT_MS, bodyTimeout: POLL_REQUEST_TIMEOUT_MS, dispatcher });
      const body = await res.body.text();
      if (res.statusCode === 200 && accept(body)) return;
      last = `${res.statusCode} ${body.slice(0, LAST_ANSWER_CHARS)}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await sleep(POLL_EVERY_MS);
  }
  throw new Error(`${url} not ready after ${timeoutMs} ms (last: ${last})`);
}

/** Sends `signal`, then SIGKILL after `graceMs`; resolves once the process is gone. */
export async function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM', graceMs = DEFAULT_STOP_GRACE_MS): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}
