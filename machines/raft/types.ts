/**
 * Types shared by the Raft machine, its runtime and storage: log entries, configurations,
 * hard state, snapshot metadata and the read-only view of the log the machine steps against.
 */

export type NodeId = string;

/** Voters vote and count towards quorums; learners only receive the log (thesis §4.2.1). */
export interface Configuration {
  readonly voters: readonly NodeId[];
  readonly learners: readonly NodeId[];
}

/**
 * `normal` carries an application command (opaque to Raft); `noop` is the entry a new leader
 * appends to commit entries of earlier terms (§5.4.2, thesis §6.4); `config` carries the full
 * new configuration, in force from the moment it is appended (thesis §4.1).
 */
export type Entry =
  | { readonly index: number; readonly term: number; readonly type: 'normal'; readonly data: unknown }
  | { readonly index: number; readonly term: number; readonly type: 'noop' }
  | {
      readonly index: number;
      readonly term: number;
      readonly type: 'config';
      readonly config: Configuration;
    };

/** What must be durable before a vote or an append response leaves the node (§5.1, Figure 2). */
export interface HardState {
  readonly term: number;
  readonly vote: NodeId | null;
  /** Known committed index: not needed for safety, saves re-learning it after a restart. */
  readonly commit: number;
}

/** The last entry a snapshot covers, and the configuration in force at that entry. */
export interface SnapshotMeta {
  readonly index: number;
  readonly term: number;
  readonly config: Configuration;
}

/**
 * The durable log since the last snapshot, as the runtime mirrors it in memory. The machine
 * reads it synchronously and never writes it: entries it appends live in its own `unstable`
 * tail until the runtime reports them persisted (`raft.persisted`).
 *
 * Ranges: indexes held are `[firstIndex(), lastIndex()]`; an empty log has
 * `lastIndex() === firstIndex() - 1`, and `firstIndex() - 1` is the snapshot's index.
 */
export interface LogReader {
  firstIndex(): number;
  lastIndex(): number;
  /** Term of entry `i` for `i` in `[firstIndex() - 1, lastIndex()]` (the snapshot's term at
   * `firstIndex() - 1`); `undefined` outside that range (compacted or not yet written). */
  term(i: number): number | undefined;
  /** Entries `[lo, hi)`, requires `firstIndex() <= lo <= hi <= lastIndex() + 1`; throws
   * `RangeError` otherwise. */
  entries(lo: number, hi: number): Entry[];
}

export const emptyConfiguration: Configuration = { voters: [], learners: [] };
