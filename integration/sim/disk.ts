/**
 * The simulator's in-memory disk: what a node has made durable. Only completed writes reach
 * it; a crash throws away everything still in flight, as kill -9 before fsync would.
 */
import type { Entry, HardState, LogReader, SnapshotMeta } from '../../machines/raft/index.ts';

/** The durable log since the snapshot, read by the machine through `LogReader`. */
export class SimLog implements LogReader {
  private entriesHeld: Entry[] = [];
  private snapIndex: number;
  private snapTerm: number;

  constructor(snapshot: SnapshotMeta) {
    this.snapIndex = snapshot.index;
    this.snapTerm = snapshot.term;
  }

  firstIndex(): number {
    return this.snapIndex + 1;
  }

  lastIndex(): number {
    return this.snapIndex + this.entriesHeld.length;
  }

  term(i: number): number | undefined {
    if (i === this.snapIndex) return this.snapTerm;
    return this.entriesHeld[i - this.snapIndex - 1]?.term;
  }

  entries(lo: number, hi: number): Entry[] {
    if (lo < this.firstIndex() || hi > this.lastIndex() + 1 || lo > hi) {
      throw new RangeError(`entries [${lo}, ${hi}) outside [${this.firstIndex()}, ${this.lastIndex() + 1})`);
    }
    return this.entriesHeld.slice(lo - this.snapIndex - 1, hi - this.snapIndex - 1);
  }

  /** Writes `entries`, replacing the suffix from `entries[0].index`. */
  write(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    const k = entries[0]!.index;
    if (k > this.lastIndex() + 1) throw new Error(`sim disk: gap writing ${k} after ${this.lastIndex()}`);
    if (k <= this.snapIndex) throw new Error(`sim disk: write at ${k} below snapshot ${this.snapIndex}`);
    this.entriesHeld.length = k - this.snapIndex - 1;
    for (const e of entries) this.entriesHeld.push(e);
  }

  /** Drops entries <= `snapshot.index`. */
  compact(snapshot: SnapshotMeta): void {
    if (snapshot.index <= this.snapIndex) return;
    this.entriesHeld = this.entriesHeld.slice(snapshot.index - this.snapIndex);
    this.snapIndex = snapshot.index;
    this.snapTerm = snapshot.term;
  }

  /** Empties the log at `snapshot` (an installed snapshot replaces everything). */
  reset(snapshot: SnapshotMeta): void {
    this.entriesHeld = [];
    this.snapIndex = snapshot.index;
    this.snapTerm = snapshot.term;
  }
}

/** The simulated state machine: a fold of applied commands, small enough to copy as a snapshot. */
export interface SimState {
  readonly applied: number;
  readonly count: number;
  readonly hash: number;
}

export class SimDisk {
  hardState: HardState = { term: 0, vote: null, commit: 0 };
  snapshot: SnapshotMeta;
  snapshotData: SimState;
  log: SimLog;

  constructor(snapshot: SnapshotMeta) {
    this.snapshot = snapshot;
    this.snapshotData = { applied: snapshot.index, count: 0, hash: 0 };
    this.log = new SimLog(snapshot);
  }

  /** Whether index `i` with term `t` is durable here, in the log or covered by the snapshot. */
  holds(i: number, t: number): boolean {
    if (i <= this.snapshot.index) return true;
    return this.log.term(i) === t;
  }
}
