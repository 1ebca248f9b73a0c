/**
 * The narrow interfaces the Raft runtime drives: `LogStore` (entries, hard state, snapshot meta,
 * with group commit) and `StableStore` (hard state and node identity). Two implementations pass
 * one conformance suite: `RocksLogStore` (real files) and `MemoryLogStore` (tests, simulator).
 */
import type { Entry, HardState, LogReader, SnapshotMeta } from '../../machines/raft/index.ts';

/**
 * A persist effect of the Raft machine. A non-empty `entries` replaces the log's suffix from
 * `entries[0].index` on: entries at and after that index are dropped, then `entries` appended.
 */
export interface Persist {
  readonly hardState?: HardState;
  readonly entries: readonly Entry[];
}

/** What a store holds durably; `entries` are `[snapshot.index + 1, lastIndex]`. */
export interface LoadedLog {
  readonly hardState: HardState;
  readonly snapshot: SnapshotMeta | null;
  readonly entries: readonly Entry[];
}

/** Who this data directory belongs to; `incarnation` is chosen at random on the first start. */
export interface NodeIdentity {
  readonly clusterId: string;
  readonly nodeId: string;
  readonly incarnation: string;
}

export interface StoreStats {
  /** Synced batches written so far (each one fsync). */
  readonly batches: number;
  /** Calls (write, compact, identity) those batches carried. */
  readonly writes: number;
}

/** Term, vote and identity: what must survive a restart besides the log (§5.1, Figure 2). */
export interface StableStore {
  /** The durable hard state; `{ term: 0, vote: null, commit: 0 }` on a new store. */
  hardState(): HardState;
  /** The identity recorded in this store, or `null` before `initIdentity`. */
  identity(): NodeIdentity | null;
  /**
   * Records `{ clusterId, nodeId }` and a fresh random incarnation on the first call for a store
   * (durably), and returns the recorded identity on later calls and after restarts.
   * Rejects with `IdentityMismatchError` if the store belongs to another cluster or node,
   * `StorageFatalError` on I/O failure, `TypeError` for empty ids.
   */
  initIdentity(ids: { clusterId: string; nodeId: string }): Promise<NodeIdentity>;
}

/**
 * The durable Raft log since the last snapshot, with hard state and snapshot meta.
 *
 * The `LogReader` methods read the in-memory mirror of what is durable: a write shows there only
 * once its promise resolves. Writes, compactions and identity records are applied in call order;
 * whatever is called while a synced batch is in flight goes out as the next single synced batch
 * (group commit; nothing waits for a timer), and promises resolve in call order.
 *
 * After a `StorageFatalError` every later call rejects with that same error: the node must stop
 * and restart from disk. Never retried.
 */
export interface LogStore extends LogReader, StableStore {
  /** The durable snapshot meta (the last `compact`), or `null`. */
  snapshot(): SnapshotMeta | null;
  /** What the store holds durably (on open: what a previous run left on disk). */
  load(): Promise<LoadedLog>;
  /**
   * Persists `p`, resolving once it is durable (synced). Rejects with `TypeError` if
   * `entries[0].index` is outside `[firstIndex, lastIndex + 1]` (counting writes not yet
   * resolved), entries are not consecutive, terms decrease along the log, or the hard state is
   * malformed or its term lower than the last one written; `StorageFatalError` on I/O failure
   * or after `close`.
   */
  write(p: Persist): Promise<void>;
  /**
   * Records `snapshot` durably and drops entries `<= snapshot.index`. If the log holds
   * `snapshot.index` with `snapshot.term`, the entries after it stay; otherwise the whole log is
   * dropped (Raft §7). A snapshot not newer than the current one is a no-op. The caller must
   * make the state machine at `snapshot.index` durable first (`KeyTree.sync()`). Rejects with
   * `StorageFatalError` on I/O failure or after `close`.
   */
  compact(snapshot: SnapshotMeta): Promise<void>;
  /** Counters of synced batches, for tests and metrics. */
  stats(): StoreStats;
  /** Waits for queued writes, then closes. Idempotent. */
  close(): Promise<void>;
}
