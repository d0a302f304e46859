/**
 * Who sent a peer request. With TLS, the peer listener has already refused
 * any connection without a client certificate its CA signed (src/peer/tls.ts);
 * here each request learns the replica that certificate names, as
 * `request.peerId`, and a request whose certificate names no replica is
 * refused. Handlers compare what a body claims (the sending leader of a
 * replication or fence message) with it. Without TLS nothing proves the
 * sender, `peerId` is undefined, and the body is taken at its word, as
 * behind a proxy that terminates TLS.
 */
import type { Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';
import type { TLSSocket } from 'node:tls';
import { TernError } from '../errors.js';
import { PEER_ID_URI_PREFIX, peerIdOf } from '../peer/tls.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The replica a peer request comes from, as its verified client certificate names it; undefined without TLS. */
    peerId: string | undefined;
  }
}

export function installPeerIdentity(app: FastifyInstance, tls: boolean): void {
  app.decorateRequest('peerId', undefined);
  if (!tls) return;
  // A callback hook: it runs for every replication message.
  app.addHook('onRequest', (req, _reply, done) => {
    const sender = connectionSender(req.raw.socket, true);
    if (sender === undefined) return done(new TernError('PEER_REFUSED', `the client certificate names no replica (a URI SAN ${PEER_ID_URI_PREFIX}<id>)`));
    req.peerId = sender.peerId;
    done();
  });
}

/**
 * The sender as a request's connection proves it, for the direct routes
 * (direct-routes.ts): `{peerId}` (undefined without TLS), or undefined when
 * the certificate names no replica, for the hook above to refuse.
 */
export function connectionSender(socket: Socket, tls: boolean): { peerId: string | undefined } | undefined {
  if (!tls) return { peerId: undefined };
  const peerId = peerIdOf(socket as TLSSocket);
  return peerId === undefined ? undefined : { peerId };
}

/** Refuses a message whose body names another sender than the connection's certificate (`peerId`) does. */
export function checkSender(peerId: string | undefined, claimed: string): void {
  if (peerId !== undefined && peerId !== claimed) {
    throw new TernError('PEER_REFUSED', `the message says it comes from ${claimed}, the connection's certificate says ${peerId}`);
  }
}
