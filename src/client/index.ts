/**
 * `tern/client`: the typed client of a Tern cluster. Its only dependency is
 * undici (and Node's built-ins).
 *
 *     import { TernClient } from 'tern/client';
 *     const client = await TernClient.connect({ cluster: '.tern/cluster.json' });
 *     const id = await client.producer('orders').append('hello');
 */
export { TernClient, createClient, DEFAULT_CLUSTER_FILE, type ClientOptions, type ResolvedClientOptions } from './client.js';
export { Producer, PRODUCER_ID_PATTERN, type AppendOptions, type ProducerOptions, type ProducerStats } from './producer.js';
export type { TailOptions } from './tail.js';
export type { AppendAnswer, Appended, Entry, EntryData, LogStatus, ReadPage, ReaderInfo, ReaderStatus, ReadStart, RecoverAnswer, RetentionPolicy, SegmentStatus, TimeOffset } from './types.js';
export type { BackoffOptions, RetryMode } from './retry.js';
export type { BatchLimits } from './batch.js';
export { parseClusterFile, parseUrlList, type ClusterDescription, type ReplicaAddress } from './cluster-file.js';
export {
  AuthError,
  ClientErrorCodes,
  ClosedError,
  ConnectionError,
  LogNotFoundError,
  ReaderNotFoundError,
  SequenceError,
  TernClientError,
  TernServerError,
  TimeBehindError,
  UnavailableError,
  type ClientErrorCode,
} from './errors.js';
