/**
 * The simulator's in-memory disk: what a node has made durable. Only completed writes reach
 * it; a crash throws away everything still in flight, as kill -9 before fsync would.
 */
import { type HardState, MemoryLog, type SnapshotMeta } from '../../machines/raft/index.ts';

/** The simulated state machine: a fold of applied commands, small enough to copy as a snapshot.
 * The session part (sessions.ts) is copied on write, so a shallow copy is a snapshot. */
export interface SimState {
  readonly applied: number;
  readonly count: number;
  readonly hash: number;
  /** Open sessions: id -> TTL in ms. */
  readonly sessions?: ReadonlyMap<string, number>;
  /** Ephemeral keys: key -> owning session. */
  readonly keys?: ReadonlyMap<string, string>;
  /** Sessions ended (expired or closed): never opened again. */
  readonly ended?: ReadonlySet<string>;
}

export class SimDisk {
  hardState: HardState = { term: 0, vote: null, commit: 0 };
  snapshot: SnapshotMeta;
  snapshotData: SimState;
  readonly log: MemoryLog;

  constructor(snapshot: SnapshotMeta) {
    this.snapshot = snapshot;
    this.snapshotData = { applied: snapshot.index, count: 0, hash: 0 };
    this.log = new MemoryLog(snapshot);
  }

  /** Whether index `i` with term `t` is durable here, in the log or covered by the snapshot. */
  holds(i: number, t: number): boolean {
    if (i <= this.snapshot.index) return true;
    return this.log.term(i) === t;
  }
}
