/**
 * What `npm run bench` asks of each system (bench/systems/<name>.ts): a 3-member cluster on
 * loopback with data on disk, started by `start` and stopped by `close`, and the operations the
 * workloads use. Keys are numbered (`put(i)`); each system maps a number to its own key name.
 */

export const SYSTEM_NAMES = ['ensemble', 'etcd', 'natskv', 'zookeeper'] as const;
export type SystemName = (typeof SYSTEM_NAMES)[number];

/** Every value written is this many bytes. */
export const VALUE_BYTES = 256;
export const VALUE = new Uint8Array(VALUE_BYTES).fill(97);

/** Keys the workloads write and read: `i % KEY_COUNT` (each system creates them first). */
export const KEY_COUNT = 1000;

/** Watchers per client connection in the watch workload (as bench/watch.ts). */
export const WATCHERS_PER_CONNECTION = 60;

/** A 256-byte value that carries `t` (performance.now() of this process, ms). */
export function stampValue(t: number): Uint8Array {
  return new TextEncoder().encode(t.toFixed(3).padEnd(VALUE_BYTES, ' '));
}

/** The time a `stampValue` carries, or NaN. */
export function readStamp(v: Uint8Array): number {
  return Number.parseFloat(new TextDecoder().decode(v.subarray(0, 32)));
}

export interface Member {
  readonly name: string;
  readonly pid: number;
}

export interface Closable {
  close(): Promise<void>;
}

export interface StartOptions {
  /** Print a progress line (stderr). */
  readonly log: (line: string) => void;
}

export interface Sessions {
  /** One session: open it with `ttlMs`, write one ephemeral key `i` in it, end it. */
  churn(i: number, ttlMs: number): Promise<void>;
  /** What the expire child (expire-child.ts) passes to the module's `holdEphemerals`. */
  readonly childConfig: unknown;
  /** Calls `onDelete(j)` when ephemeral key `j` of `run` is deleted; resolves once watching. */
  watchExpiry(run: string, n: number, onDelete: (j: number) => void): Promise<Closable>;
}

export interface SystemUnderTest extends Closable {
  readonly name: SystemName;
  /** Server version (and client library). */
  readonly version: string;
  /** One process per member: RSS and CPU are read from these. */
  members(): Member[];
  /** Processes the members need that are not members (Ensemble's nats-server). */
  infra(): Member[];
  /** How this system's operations map to the workloads, for the README and the JSON. */
  readonly notes: readonly string[];
  put(i: number): Promise<unknown>;
  /** A linearizable read of key `i`, or null when the system (or its client) has none. */
  readonly linearizableGet: ((i: number) => Promise<unknown>) | null;
  /** A read served by whichever member is asked (possibly stale), or null. */
  readonly serializableGet: ((i: number) => Promise<unknown>) | null;
  /** Writes the one key every watcher watches. */
  writeHot(value: Uint8Array): Promise<unknown>;
  /**
   * `n` watchers of the hot key, `WATCHERS_PER_CONNECTION` per client connection; each value a
   * watcher learns goes to `onValue` (as soon as it is known: with the event, or for ZooKeeper
   * after the read that re-arms the watch). Resolves once every watcher is in place.
   */
  watchHot(n: number, onValue: (value: Uint8Array, watcher: number) => void): Promise<Closable>;
  /** Sessions with ephemeral keys (Ensemble sessions, etcd leases, ZooKeeper sessions), or null. */
  readonly sessions: Sessions | null;
}

/** What each bench/systems/<name>.ts exports. */
export interface SystemModule {
  /** Installs what is missing (apt, as root on Debian); null when ready, else why it is not. */
  available(log: (line: string) => void): Promise<string | null>;
  start(dir: string, options: StartOptions): Promise<SystemUnderTest>;
  /**
   * In the expire child: opens `n` sessions of `ttlMs` with one ephemeral key each under `run`,
   * resolves once all are written (then the child is killed, and the sessions must expire).
   */
  holdEphemerals?(config: unknown, run: string, n: number, ttlMs: number): Promise<void>;
}
