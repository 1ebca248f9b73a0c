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

/**
 * The environment a node process runs with: glibc's malloc arenas capped at 2 (one per thread
 * of libuv's pool otherwise, each holding freed memory). Measured with `npm run bench:ab`
 * (3 ABBA rounds, 64 puts in flight): peak RSS of the largest node 201 -> 185 MiB, puts/s and
 * CPU per put unchanged. (V8 semi-spaces of 4 MiB took another 10% of RSS but, with the arenas,
 * cost 11% more CPU per put and 15% of puts/s: not taken.) What `env` already sets wins.
 */
export function nodeEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return { MALLOC_ARENA_MAX: '2', ...env };
}
