/** Helpers for the tests of tern/client on a real cluster. */
import { expect } from 'vitest';
import type { TernClient } from '../../src/client/index.js';
import { eventually } from './cluster.js';

/** Creates the log and waits until a replica leads it; returns the leader's id. */
export async function createLogWithLeader(client: TernClient, log: string): Promise<string> {
  await client.createLog(log);
  return eventually(async () => {
    const s = await client.status(log);
    expect(s.leader).not.toBeNull();
    return s.leader!;
  });
}
