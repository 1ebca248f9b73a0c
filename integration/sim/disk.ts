/**
 * The simulator's in-memory disk: what a node has made durable. Only completed writes reach
 * it; a crash throws away everything still in flight, as kill -9 before fsync would.
 */
import { type HardState, MemoryLog, type SnapshotMeta } from '../../machines/raft/index.ts';
import type { MemoryTree } from '../../storage/index.ts';

/** What a node's real key tree made durable (its state at a snapshot). */
export type TreeState = MemoryTree['durableState'];

/**
 * What a node's state machine holds at an applied index, small enough to copy as a snapshot: the
 * real key tree's frozen state (null before the first snapshot: empty), and the session model
 * the session simulation keeps beside it (sessions.ts; copied on write, so a shallow copy is a
 * snapshot).
 */
export interface SimState {
  readonly applied: number;
  readonly tree: TreeState | null;
}

export class SimDisk {
  hardState: HardState = { term: 0, vote: null, commit: 0 };
  snapshot: SnapshotMeta;
  snapshotData: SimState;
  readonly log: MemoryLog;

  constructor(snapshot: SnapshotMeta) {
    this.snapshot = snapshot;
    this.snapshotData = { applied: snapshot.index, tree: null };
    this.log = new MemoryLog(snapshot);
  }

  /** Whether index `i` with term `t` is durable here, in the log or covered by the snapshot. */
  holds(i: number, t: number): boolean {
    if (i <= this.snapshot.index) return true;
    return this.log.term(i) === t;
  }
}
