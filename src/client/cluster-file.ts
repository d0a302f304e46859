/**
 * Where the replicas are: a list of URLs, or the cluster.json that
 * `tern cluster` writes (src/cli/local-cluster.ts, ClusterFile). Pure parsing
 * here; reading the file is the caller's.
 */
import { TernClientError } from './errors.js';

export interface ReplicaAddress {
  /** The replica's id (r1, ...) when known: status answers name leaders by it. */
  id?: string;
  /** Its client URL, without a trailing slash. */
  url: string;
}

export interface ClusterDescription {
  replicas: ReplicaAddress[];
  /** Path of the CA certificate a TLS cluster's clients trust (cluster.json `tls.ca`). */
  caFile?: string;
}

function badArgument(message: string): TernClientError {
  return new TernClientError('BAD_ARGUMENT', message);
}

/** A client URL: http(s), no path; the trailing slash dropped. */
export function normalizeUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw.trim());
  } catch {
    throw badArgument(`not a URL: "${raw}"`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw badArgument(`not an http(s) URL: "${raw}"`);
  return url.origin;
}

/** Comma-separated URLs ("http://a:7001,http://b:7002"), as `--cluster` takes them. */
export function parseUrlList(list: string): ReplicaAddress[] {
  const urls = list.split(',').filter((s) => s.trim() !== '');
  if (urls.length === 0) throw badArgument('no replica URLs given');
  return urls.map((u) => ({ url: normalizeUrl(u) }));
}

/** Whether a `--cluster` value is URLs rather than a file path. */
export function looksLikeUrls(value: string): boolean {
  return /^https?:\/\//i.test(value.trim());
}

/** The replicas and CA of a cluster.json's text. */
export function parseClusterFile(text: string, source = 'cluster.json'): ClusterDescription {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw badArgument(`${source}: not JSON (${(err as Error).message})`);
  }
  const file = json as { replicas?: unknown; tls?: { ca?: unknown } | null };
  if (!Array.isArray(file.replicas) || file.replicas.length === 0) throw badArgument(`${source}: no "replicas" list`);
  const replicas = file.replicas.map((r: { id?: unknown; clientUrl?: unknown }, i) => {
    if (typeof r?.clientUrl !== 'string') throw badArgument(`${source}: replicas[${i}] has no "clientUrl"`);
    return { ...(typeof r.id === 'string' ? { id: r.id } : {}), url: normalizeUrl(r.clientUrl) };
  });
  const ca = file.tls?.ca;
  return { replicas, ...(typeof ca === 'string' ? { caFile: ca } : {}) };
}
