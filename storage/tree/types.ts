/**
 * The key tree: the replicated state machine Raft drives. Commands (what a committed `normal`
 * entry carries), their results, the reads, and the `KeyTree` interface that `MemoryTree` and
 * `RocksTree` both implement.
 */
import type { SnapshotMeta } from '../../machines/raft/index.ts';
import type {
  EnsembleError,
  Grant,
  KeyMeta,
  KeyValue,
  OpResult,
  WatchTarget,
  WireError,
} from '../../protocol/index.ts';

/** One change, kept until compacted; `kv`/`prev` are the key after and before it. */
export interface TreeEvent {
  readonly type: 'put' | 'delete';
  readonly key: string;
  readonly revision: number;
  readonly value: Uint8Array | null;
  readonly prevValue: Uint8Array | null;
  readonly kv: KeyValue | null;
  readonly prev: KeyValue | null;
}

export type CommandResult =
  | { readonly op: 'put'; readonly kv: KeyMeta }
  | { readonly op: 'delete'; readonly deleted: number }
  | { readonly op: 'createSequential'; readonly kv: KeyMeta }
  | { readonly op: 'txn'; readonly succeeded: boolean; readonly results: readonly OpResult[] }
  | { readonly op: 'sessionOpen'; readonly id: string }
  | { readonly op: 'sessionClose' | 'sessionExpire'; readonly id: string; readonly deleted: number }
  | { readonly op: 'compact'; readonly compactRevision: number }
  | { readonly op: 'authGrant'; readonly user: string; readonly prefix: string }
  | { readonly op: 'authRevoke'; readonly user: string; readonly prefix: string; readonly revoked: boolean };

/**
 * What apply answers. `revision` is the tree's revision after the command (the same as before
 * for errors and for commands that change no key). `replayed` is true when the answer comes from
 * the exactly-once table instead of applying again.
 */
export type ApplyOutcome =
  | {
      readonly ok: true;
      readonly revision: number;
      readonly result: CommandResult;
      readonly replayed: boolean;
    }
  | {
      readonly ok: false;
      readonly revision: number;
      readonly error: EnsembleError;
      readonly replayed: boolean;
    };

/** An outcome as the exactly-once table keeps it (errors in wire form). */
export type StoredOutcome =
  | { readonly ok: true; readonly revision: number; readonly result: CommandResult }
  | { readonly ok: false; readonly revision: number; readonly error: WireError };

export interface SessionInfo {
  readonly id: string;
  readonly secret: Uint8Array;
  readonly ttlMs: number;
  /** Highest low-water mark seen: answers below it were dropped. */
  readonly lowSeq: number;
  readonly ephemeralKeys: number;
  /** The NATS user that opened it, or null (a peer's, or older than owners). */
  readonly owner: string | null;
}

export interface ReadOptions {
  /** Read at this past revision, `>= compactRevision` (default: the current revision). */
  readonly revision?: number;
  /** At most this many items (default: all). */
  readonly limit?: number;
  /** Continue after this item (the last key or name of the previous page). */
  readonly after?: string;
  /** Stop (with `more`) once the keys and values taken reach this many bytes; at least one item. */
  readonly maxBytes?: number;
}

export interface RangeResult {
  readonly kvs: KeyValue[];
  /** More items follow: ask again with `after` = the last key. */
  readonly more: boolean;
  readonly revision: number;
}

export interface ChildList {
  /** Immediate child names (keys and implied folders), in order. */
  readonly names: string[];
  readonly more: boolean;
  readonly revision: number;
}

/** Events of a watch's target (protocol's `WatchTarget`), or of every key (`{}`). */
export type EventFilter = WatchTarget | Record<string, never>;

export interface EventBatch {
  readonly events: TreeEvent[];
  /** Revision to ask from next time (every revision below it was scanned). */
  readonly next: number;
}

/**
 * A frozen dump of the tree at `appliedIndex`: byte-capped chunks of a canonical logical dump.
 * Iterable any number of times (e.g. once per follower); each pass yields the same bytes.
 */
export interface TreeSnapshot extends AsyncIterable<Uint8Array> {
  readonly appliedIndex: number;
  readonly revision: number;
  readonly raftMeta: SnapshotMeta | null;
}

export interface SnapshotOptions {
  /** Chunk size cap in bytes (default 1 MiB). */
  readonly chunkBytes?: number;
  /** The Raft snapshot meta to embed; its index must be the applied index. */
  readonly raftMeta?: SnapshotMeta | null;
}

export interface RestoreInfo {
  readonly appliedIndex: number;
  readonly revision: number;
  readonly raftMeta: SnapshotMeta | null;
}

export interface KeyTree {
  /** Index of the last log entry applied (0 for a new tree). */
  readonly appliedIndex: number;
  /** Global revision: bumped once by every command that changes a key. */
  readonly revision: number;
  /** History at and below this revision is gone. */
  readonly compactRevision: number;
  /** The Raft meta of the last snapshot restored into this tree, or `null`. */
  readonly raftMeta: SnapshotMeta | null;

  /**
   * Applies the command of log entry `index` (a `Command` object, or its CBOR bytes), after
   * every apply called before it. Returns `null` when `index <= appliedIndex` (already applied:
   * idempotent replay after a restart). Gaps are allowed (entries without a command). Errors of
   * the command (BAD_PATH, EXISTS, VERSION_MISMATCH, BAD_REQUEST, ...) are outcomes, consume no
   * revision, and still advance the applied index. Rejects with `TypeError` for a bad index,
   * `StorageFatalError` if the store failed.
   */
  apply(index: number, command: unknown): Promise<ApplyOutcome | null>;

  /** The key at the current or a past revision, or `null`. Throws `BadPathError`,
   * `TooLargeError`, `CompactedError` (below `compactRevision`), `BadRequestError`. */
  get(key: string, options?: Pick<ReadOptions, 'revision'>): KeyValue | null;
  /** Immediate children of `path` (`/` for the top). Throws like `get`. */
  listChildren(path: string, options?: ReadOptions): ChildList;
  /** Keys starting with the raw `prefix`, in path order. Throws like `get`. */
  range(prefix: string, options?: ReadOptions): RangeResult;
  /**
   * Events with revision `>= from`, in order, cut after a whole revision once `limit` is
   * reached. Throws `CompactedError` if `from <= compactRevision`.
   */
  eventsSince(from: number, filter?: EventFilter, options?: { readonly limit?: number }): EventBatch;
  session(id: string): SessionInfo | null;
  /** Open sessions by id. */
  sessions(): SessionInfo[];
  /** How many open sessions `owner` opened. */
  sessionsOf(owner: string): number;
  /** How many live keys NATS user `user` created (keys created by peers and admins count for nobody). */
  keysOf(user: string): number;
  /**
   * The bytes the tree holds: keys and values, and the history kept for watches and past reads
   * (what compaction frees). The database quota is checked against it.
   */
  readonly dataBytes: number;
  /** The grants of `user` (of every user when absent), by user, then prefix. */
  grants(user?: string): Grant[];
  /** What `user` may do, by prefix: the live table, not a copy (the per-request check reads it). */
  perms(user: string): ReadonlyMap<string, { readonly read: boolean; readonly write: boolean }>;

  /** Dumps the state at the applied index (after every apply called before). */
  snapshot(options?: SnapshotOptions): Promise<TreeSnapshot>;
  /**
   * Replaces the whole state with a dump. All or nothing: on `CorruptedError` (bad stream) or a
   * crash midway the old state stays. Rejects with `StorageFatalError` on I/O failure.
   */
  restore(chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): Promise<RestoreInfo>;
  /** Makes every apply so far durable (before the Raft log is compacted up to it). */
  sync(): Promise<void>;
  close(): Promise<void>;
}
