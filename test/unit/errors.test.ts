import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ErrorCodes, TernError } from '../../src/errors.js';
import { GRPCUnavailableError } from 'etcd3';
import { toTernError } from '../../src/http/error-handler.js';
import { flagOf, replicaOptions } from '../../src/replica/config.js';

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

describe('error registry', () => {
  it.each(Object.entries(ErrorCodes))('documents %s with its status in the README', (code, { status }) => {
    expect(readme).toMatch(new RegExp(`\\| *${status} *\\| *\`${code}\``));
  });

  it('gives each TernError its registry status and a JSON body', () => {
    const err = new TernError('ACK_TIMEOUT', 'late', { maybeApplied: true });
    expect(err.status).toBe(503);
    expect(err.toBody()).toEqual({ error: { code: 'ACK_TIMEOUT', message: 'late', maybeApplied: true } });
  });

  it('maps fastify errors onto the registry and hides unknown ones as INTERNAL', () => {
    expect(toTernError(Object.assign(new Error('big'), { statusCode: 413 })).code).toBe('TOO_LARGE');
    expect(toTernError(Object.assign(new Error('type'), { statusCode: 415 })).code).toBe('UNSUPPORTED_MEDIA_TYPE');
    expect(toTernError(Object.assign(new Error('schema'), { statusCode: 400 })).code).toBe('BAD_REQUEST');
    expect(toTernError(new GRPCUnavailableError('14 UNAVAILABLE: Connection dropped')).code).toBe('NOT_READY');
    expect(toTernError(Object.assign(new Error('Execution prevented because the circuit breaker is open'), { isBrokenCircuitError: true })).code).toBe('NOT_READY');
    const internal = toTernError(new Error('secret detail'));
    expect(internal.code).toBe('INTERNAL');
    expect(internal.message).not.toContain('secret');
  });
});

describe('configuration docs', () => {
  it.each(Object.keys(replicaOptions))('documents %s in the README', (name) => {
    expect(readme).toContain(flagOf(name));
  });
});
