/**
 * The connection details `ensemble up` leaves in its data directory while the cluster runs
 * (`<data>/connection.json`: NATS URLs, cluster name, TLS CA), so the CLI run from the same
 * directory needs no `--nats`, `--cluster` or `--tls-ca` (flags and the environment still win).
 * Removed when `up` stops.
 */
export const CONNECTION_FILE = 'connection.json';

export interface ConnectionDetails {
  readonly nats: readonly string[];
  readonly cluster: string;
  readonly tlsCa?: string;
}
