/**
 * Authentication and authorization of the client API: every route declares
 * the access it needs (`config.access`: a scope, or `public` for probes and
 * metrics), and an onRequest hook checks the request's bearer token against
 * it before fastify reads the body, so an unknown client cannot make the
 * replica take in a large one. Without a tokens file nothing is installed:
 * the API is open, as it always was.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify';
import { TernError } from '../errors.js';
import { bearerToken, coversLog, hasScope, type Scope, type TokenRecord } from '../auth/tokens.js';

/** What a route needs: a token with this scope (covering the route's log, when it names one), or nothing. */
export type Access = Scope | 'public';

declare module 'fastify' {
  interface FastifyContextConfig {
    access?: Access;
  }
  interface FastifyRequest {
    /** The token's record once authenticated; undefined on an open cluster and on public routes. */
    principal: TokenRecord | undefined;
  }
}

export interface TokenLookup {
  find(presented: string): TokenRecord | undefined;
}

/**
 * Every route must declare its access (a route without fails at start-up, so
 * none is left open by omission). With `tokens`, a token is required on every
 * route not marked public; unknown paths (404) need a known token, so they
 * tell a stranger nothing. Without, requests pass unchecked (an open cluster).
 */
export function installAuth(app: FastifyInstance, tokens: TokenLookup | undefined, refused: (code: 'UNAUTHENTICATED' | 'FORBIDDEN') => void): void {
  app.decorateRequest('principal', undefined);
  app.addHook('onRoute', (route) => {
    if (route.config?.access === undefined) throw new Error(`route ${route.method} ${route.url} declares no config.access`);
  });
  if (!tokens) return;
  // A callback hook, not an async one: it runs on every append.
  app.addHook('onRequest', (req: FastifyRequest, _reply: FastifyReply, done: HookHandlerDoneFunction) => {
    const access = req.routeOptions.config.access;
    if (access === 'public') return done();
    try {
      req.principal = authorize(tokens, req.headers.authorization, access, (req.params as { log?: string }).log);
      done();
    } catch (err) {
      refused((err as TernError).code as 'UNAUTHENTICATED' | 'FORBIDDEN');
      done(err as TernError);
    }
  });
}

/**
 * The record of the token in `authorization` if it may use `scope` on `log`;
 * throws UNAUTHENTICATED or FORBIDDEN. With no scope (an unknown route) any
 * known token passes.
 */
export function authorize(tokens: TokenLookup, authorization: string | undefined, scope: Scope | undefined, log: string | undefined): TokenRecord {
  const presented = bearerToken(authorization);
  if (presented === undefined) throw new TernError('UNAUTHENTICATED', 'this cluster requires Authorization: Bearer <token>');
  const record = tokens.find(presented);
  if (!record) throw new TernError('UNAUTHENTICATED', 'unknown token');
  if (scope !== undefined && !hasScope(record, scope)) throw new TernError('FORBIDDEN', `token "${record.name}" lacks the ${scope} scope`);
  if (log !== undefined && !coversLog(record, log)) throw new TernError('FORBIDDEN', `token "${record.name}" does not cover log "${log}"`);
  return record;
}

/** Whether `authorization` may use `scope` on `log`; the reason for a refusal is the onRequest hook's to give. */
export function allows(tokens: TokenLookup, authorization: string | undefined, scope: Scope, log: string): boolean {
  try {
    authorize(tokens, authorization, scope, log);
    return true;
  } catch {
    return false;
  }
}

/** The logs a request may see listed: those its token's prefixes cover (all on an open cluster). */
export function visibleLogs(req: FastifyRequest, logs: readonly string[]): readonly string[] {
  const principal = req.principal;
  return principal === undefined ? logs : logs.filter((log) => coversLog(principal, log));
}
