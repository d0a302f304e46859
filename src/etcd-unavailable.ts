/**
 * Owns the classification of etcd client failures that mean "etcd is out of
 * reach", not a bug: a neutral module so that the layers answering requests
 * (http/) can tell them apart without reaching into the one talking to etcd
 * (fencing/).
 */
import { GRPCGenericError } from 'etcd3';

/**
 * Whether `err` means etcd could not be reached or answered (a gRPC failure,
 * or the etcd3 client's circuit breaker open after such failures): the
 * request could not be served right now, which is not a bug.
 */
export function isEtcdUnavailable(err: unknown): boolean {
  return err instanceof GRPCGenericError || (err as { isBrokenCircuitError?: boolean } | null)?.isBrokenCircuitError === true;
}
