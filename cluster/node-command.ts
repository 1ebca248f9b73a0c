/**
 * The command line of one node process (`bin/ensemble.mjs node`, flags in cluster/cli.ts), for
 * everything that spawns nodes: `ensemble up`, the integration tests, the benchmarks.
 */
import { fileURLToPath } from 'node:url';

const BIN = fileURLToPath(new URL('../bin/ensemble.mjs', import.meta.url));

export interface NodeCommand {
  readonly id: string;
  /** The node's data directory. */
  readonly data: string;
  /** NATS server URLs. */
  readonly nats: readonly string[];
  readonly cluster: string;
  /** Members of a new cluster, or `null` to start empty and wait to be added (`--join`). */
  readonly initialCluster: readonly string[] | null;
  /** More flags, after the others (e.g. `['--http-port', '8080']`). */
  readonly flags?: readonly string[];
}

/** The arguments that run node `c.id` with `spawn(process.execPath, nodeArgs(c))`. */
export function nodeArgs(c: NodeCommand): string[] {
  return [
    BIN,
    'node',
    '--id',
    c.id,
    '--data',
    c.data,
    '--nats',
    c.nats.join(','),
    ...(c.initialCluster === null ? ['--join'] : ['--initial-cluster', c.initialCluster.join(',')]),
    '--cluster',
    c.cluster,
    ...(c.flags ?? []),
  ];
}
