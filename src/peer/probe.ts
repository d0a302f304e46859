/**
 * Owns the liveness probe of a replica's peer listener: the one request
 * failure detection sends (failure-detector.ts decides whom to probe and
 * what an outcome means).
 */
import http from 'node:http';
import https from 'node:https';
import type { ProbeOutcome } from '../control/failure-detector.js';
import { PEER_HEALTH_PATH } from './paths.js';
import type { OutgoingTls } from './tls.js';

/**
 * Asks a replica's peer listener who it is, on a connection of its own (a
 * pooled one may be a dead process's half-closed socket). Refused: nothing
 * listens there. Any other failure proves nothing.
 */
export type { ProbeOutcome };

export function probePeer(peerUrl: string, timeoutMs: number, tls?: OutgoingTls): Promise<ProbeOutcome> {
  return new Promise((resolve) => {
    const url = new URL(PEER_HEALTH_PATH, peerUrl);
    const req = (url.protocol === 'https:' ? https : http).get(url, { agent: false, timeout: timeoutMs, ...tls }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', () => resolve({ kind: 'failed' }));
      res.on('end', () => {
        try {
          const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { id?: unknown; incarnation?: unknown };
          if (res.statusCode !== 200 || typeof body.id !== 'string') return resolve({ kind: 'failed' });
          resolve({ kind: 'answered', id: body.id, incarnation: typeof body.incarnation === 'string' ? body.incarnation : null });
        } catch {
          resolve({ kind: 'failed' });
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer in ${timeoutMs} ms`)));
    req.on('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED' ? { kind: 'refused' } : { kind: 'failed' }));
  });
}
