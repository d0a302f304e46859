/**
 * Owns TLS between replicas (and on the client listener): the options of both
 * listeners, the one set of options every outgoing connection to another
 * replica uses, and how a peer's replica id is read from its certificate.
 *
 * Peer connections are mutual TLS: the peer listener accepts only client
 * certificates the CA (--tls-ca) signed, and the replica a connection comes
 * from is the one its certificate names, by the URI SAN
 * `tern://replica/<id>`, never what a request body claims. A URI SAN rather
 * than the CN: it cannot be mistaken for a host name, and cert-manager and
 * every CA tool can set it (`uris:`).
 */
import type { ConnectionOptions, TLSSocket, TlsOptions } from 'node:tls';

/** The PEM files --tls-cert, --tls-key and --tls-ca name, read once at start-up. */
export interface TlsMaterial {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly ca: Buffer;
}

/** Options of an outgoing TLS connection (node:tls, node:https and undici's `connect` all take them). */
export type OutgoingTls = Pick<ConnectionOptions, 'ca' | 'cert' | 'key'>;

export const PEER_ID_URI_PREFIX = 'tern://replica/';

/**
 * Every connection this replica opens to another one (replication link,
 * commands, forwarded appends and commands, probes): the server is verified
 * against the CA, and this replica's certificate is its client certificate.
 */
export function outgoingTls(material: TlsMaterial): OutgoingTls {
  return { ca: material.ca, cert: material.cert, key: material.key };
}

/**
 * A listener's options. The peer listener requires a client certificate the
 * CA signed, refused in the handshake otherwise; the client listener asks for
 * none (clients are not replicas).
 */
export function listenerTls(material: TlsMaterial, listener: 'client' | 'peer'): TlsOptions {
  return { cert: material.cert, key: material.key, ca: material.ca, requestCert: listener === 'peer', rejectUnauthorized: listener === 'peer' };
}

/** The replica id a certificate's subjectAltName (as node:tls and X509Certificate print it) names, if any. */
export function replicaIdOfAltNames(subjectAltName: string | undefined): string | undefined {
  const m = /(?:^|, )URI:tern:\/\/replica\/([A-Za-z0-9_-]{1,32})(?:, |$)/.exec(subjectAltName ?? '');
  return m?.[1];
}

/** Replica id by connection: read from the certificate once, not on every replication message. */
const peerIds = new WeakMap<TLSSocket, string | null>();

/** The replica id the verified client certificate of a peer connection names; undefined without TLS or without such a name. */
export function peerIdOf(socket: TLSSocket): string | undefined {
  let id = peerIds.get(socket);
  if (id === undefined) {
    id = socket.authorized ? replicaIdOfAltNames(socket.getPeerCertificate().subjectaltname) ?? null : null;
    peerIds.set(socket, id);
  }
  return id ?? undefined;
}
