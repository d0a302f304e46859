/**
 * The "ceiling" of the side-by-side benchmark (bench/compare.ts): one fastify
 * process that answers every append `POST /v1/logs/:log/entries` with
 * `{"id": n, "epoch": 1}` at once, without storing or replicating anything:
 * what the HTTP round trip alone costs a client and a Node server on this
 * machine. It parses bodies as Tern's client API does (raw buffers for
 * application/octet-stream and application/vnd.tern.frames, same body limit,
 * same router limits, a response schema), and logs nothing per request.
 *
 *   node dist/bench/ceiling-server.js --port N [--host 127.0.0.1]
 *
 * Prints "listening on http://HOST:PORT" once it serves; GET /healthz answers
 * 200. Stops on SIGTERM/SIGINT.
 */
import { parseArgs } from 'node:util';
import Fastify from 'fastify';

const { values } = parseArgs({ options: { port: { type: 'string' }, host: { type: 'string' } }, strict: true });
const port = Number(values.port ?? 0);
const host = values.host ?? '127.0.0.1';
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`ceiling-server: --port must be a port number, got "${values.port}"`);
  process.exit(2);
}

/** Tern's default --max-request-bytes. */
const BODY_LIMIT = 16 * 1024 * 1024;

const app = Fastify({ logger: false, bodyLimit: BODY_LIMIT, routerOptions: { maxParamLength: 256 } });
app.removeAllContentTypeParsers();
for (const type of ['application/octet-stream', 'application/vnd.tern.frames', 'application/json']) {
  app.addContentTypeParser(type, { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
}

let next = 0;
app.get('/healthz', async () => ({ status: 'ok', id: 'ceiling' }));
app.post<{ Params: { log: string }; Body: Buffer | undefined }>(
  '/v1/logs/:log/entries',
  {
    schema: {
      params: { type: 'object', properties: { log: { type: 'string', pattern: '^[A-Za-z0-9._-]{1,128}$' } }, required: ['log'] },
      response: { 200: { type: 'object', properties: { id: { type: 'integer' }, epoch: { type: 'integer' } } } },
    },
  },
  async () => ({ id: next++, epoch: 1 }),
);

const stop = () => {
  app.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

const address = await app.listen({ port, host });
console.log(`listening on ${address}`);
