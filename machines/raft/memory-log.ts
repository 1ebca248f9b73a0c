/**
 * An in-memory double of the durable log (the runtime keeps the same tail in memory in front
 * of RocksDB): for the simulator and unit tests. It holds only what the caller reports as
 * written; it knows nothing of durability, which the simulator models around it.
 */
import type { Entry, LogReader, SnapshotMeta } from './types.ts';

export class MemoryLog implements LogReader {
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
    if (k > this.lastIndex() + 1) throw new Error(`memory log: gap writing ${k} after ${this.lastIndex()}`);
    if (k <= this.snapIndex) throw new Error(`memory log: write at ${k} below snapshot ${this.snapIndex}`);
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
