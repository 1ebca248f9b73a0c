/**
 * The client of a fixture process (a client the tests start as its own process, to kill it):
 * connects as `client` with the password the test passed in ENSEMBLE_CLIENT_PASSWORD.
 */
import { type Client, connect } from '../client/index.ts';

export function fixtureClient(
  servers: string,
  cluster: string,
  sessionTtlMs: number,
  timeoutMs?: number,
): Promise<Client> {
  return connect({
    servers: servers.split(','),
    cluster,
    user: 'client',
    pass: process.env.ENSEMBLE_CLIENT_PASSWORD ?? 'ensemble-client-dev',
    sessionTtlMs,
    ...(timeoutMs === undefined ? {} : { timeoutMs }),
  });
}
