/**
 * The in-memory copy of a log: entries since the snapshot, hard state, snapshot meta, identity.
 * A store keeps two: `pending` (every accepted call, to validate the next one) and `durable`
 * (what is synced; the `LogReader` the Raft machine reads).
 */
import type { Configuration, Entry, HardState, LogReader, SnapshotMeta } from '../../machines/raft/index.ts';
import type { NodeIdentity } from './types.ts';

export const initialHardState: HardState = { term: 0, vote: null, commit: 0 };

/** A change to a log, validated against `pending` before it is queued. */
export type LogOp =
  | {
      readonly kind: 'write';
      readonly hardState: HardState | undefined;
      readonly entries: readonly Entry[];
      /** Indexes `[dropFrom, dropTo]` of the replaced suffix that `entries` do not overwrite. */
      readonly dropFrom: number;
      readonly dropTo: number;
    }
  | {
      readonly kind: 'compact';
      readonly meta: SnapshotMeta;
      /** Entries after `meta.index` are dropped too (the log disagrees with the snapshot). */
      readonly dropAll: boolean;
      readonly dropTo: number;
    }
  | { readonly kind: 'identity'; readonly identity: NodeIdentity };

const isInt = (n: unknown): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;

export class LogMirror implements LogReader {
  private snap: SnapshotMeta | null = null;
  private log: Entry[] = [];
  private hard: HardState = initialHardState;
  private ident: NodeIdentity | null = null;

  static from(loaded: {
    hardState: HardState;
    snapshot: SnapshotMeta | null;
    entries: readonly Entry[];
    identity: NodeIdentity | null;
  }): LogMirror {
    const m = new LogMirror();
    m.hard = loaded.hardState;
    m.snap = loaded.snapshot;
    m.log = [...loaded.entries];
    m.ident = loaded.identity;
    return m;
  }

  clone(): LogMirror {
    return LogMirror.from({
      hardState: this.hard,
      snapshot: this.snap,
      entries: this.log,
      identity: this.ident,
    });
  }

  firstIndex(): number {
    return (this.snap?.index ?? 0) + 1;
  }

  lastIndex(): number {
    return (this.snap?.index ?? 0) + this.log.length;
  }

  term(i: number): number | undefined {
    const first = this.firstIndex();
    if (i === first - 1) return this.snap?.term ?? 0;
    if (!Number.isInteger(i) || i < first || i > this.lastIndex()) return undefined;
    return this.log[i - first]?.term;
  }

  entries(lo: number, hi: number): Entry[] {
    const first = this.firstIndex();
    if (
      !Number.isInteger(lo) ||
      !Number.isInteger(hi) ||
      lo < first ||
      lo > hi ||
      hi > this.lastIndex() + 1
    ) {
      throw new RangeError(`entries(${lo}, ${hi}) outside [${first}, ${this.lastIndex() + 1}]`);
    }
    return this.log.slice(lo - first, hi - first);
  }

  hardState(): HardState {
    return this.hard;
  }

  snapshot(): SnapshotMeta | null {
    return this.snap;
  }

  identity(): NodeIdentity | null {
    return this.ident;
  }

  /** Validates a persist against this mirror and returns the op; throws `TypeError`. */
  planWrite(hardState: HardState | undefined, entries: readonly Entry[]): LogOp {
    if (hardState !== undefined) {
      checkHardState(hardState);
      if (hardState.term < this.hard.term) {
        throw new TypeError(`hard state term ${hardState.term} below ${this.hard.term}`);
      }
    }
    if (!Array.isArray(entries)) throw new TypeError('entries must be an array');
    const last = this.lastIndex();
    const head = entries[0];
    if (head === undefined) return { kind: 'write', hardState, entries, dropFrom: 1, dropTo: 0 };
    checkEntry(head);
    if (head.index < this.firstIndex() || head.index > last + 1) {
      throw new TypeError(`entries start at ${head.index}, outside [${this.firstIndex()}, ${last + 1}]`);
    }
    let prevTerm = this.term(head.index - 1) ?? 0;
    let prevIndex = head.index - 1;
    for (const e of entries) {
      checkEntry(e);
      if (e.index !== prevIndex + 1) throw new TypeError(`entry ${e.index} follows ${prevIndex}`);
      if (e.term < prevTerm) throw new TypeError(`entry ${e.index} has term ${e.term} below ${prevTerm}`);
      prevIndex = e.index;
      prevTerm = e.term;
    }
    return { kind: 'write', hardState, entries, dropFrom: prevIndex + 1, dropTo: last };
  }

  /** The op for `compact(meta)`, or `null` when `meta` is not newer than the snapshot. */
  planCompact(meta: SnapshotMeta): LogOp | null {
    checkSnapshotMeta(meta);
    if (meta.index <= (this.snap?.index ?? 0)) return null;
    const keep = meta.index <= this.lastIndex() && this.term(meta.index) === meta.term;
    return { kind: 'compact', meta, dropAll: !keep, dropTo: this.lastIndex() };
  }

  apply(op: LogOp): void {
    switch (op.kind) {
      case 'write': {
        if (op.hardState !== undefined) this.hard = op.hardState;
        const head = op.entries[0];
        if (head !== undefined) {
          this.log.length = head.index - this.firstIndex();
          for (const e of op.entries) this.log.push(e);
        }
        return;
      }
      case 'compact': {
        if (op.dropAll) this.log = [];
        else this.log = this.log.slice(op.meta.index - this.firstIndex() + 1);
        this.snap = op.meta;
        return;
      }
      case 'identity':
        this.ident = op.identity;
        return;
    }
  }
}

export function checkHardState(hs: HardState): void {
  if (typeof hs !== 'object' || hs === null) throw new TypeError('hard state must be an object');
  if (!isInt(hs.term)) throw new TypeError('hard state term must be a non-negative safe integer');
  if (!isInt(hs.commit)) throw new TypeError('hard state commit must be a non-negative safe integer');
  if (hs.vote !== null && typeof hs.vote !== 'string')
    throw new TypeError('hard state vote must be a string or null');
}

export function checkConfiguration(c: Configuration): void {
  if (typeof c !== 'object' || c === null || !Array.isArray(c.voters) || !Array.isArray(c.learners)) {
    throw new TypeError('configuration must have voters and learners arrays');
  }
  for (const id of [...c.voters, ...c.learners]) {
    if (typeof id !== 'string') throw new TypeError('node ids must be strings');
  }
}

export function checkSnapshotMeta(m: SnapshotMeta): void {
  if (typeof m !== 'object' || m === null || !isInt(m.index) || !isInt(m.term)) {
    throw new TypeError('snapshot meta needs a non-negative index and term');
  }
  checkConfiguration(m.config);
}

function checkEntry(e: Entry): void {
  if (typeof e !== 'object' || e === null) throw new TypeError('entry must be an object');
  if (!isInt(e.index) || e.index < 1) throw new TypeError('entry index must be a positive safe integer');
  if (!isInt(e.term)) throw new TypeError('entry term must be a non-negative safe integer');
  if (e.type === 'config') checkConfiguration(e.config);
  else if (e.type !== 'normal' && e.type !== 'noop') {
    throw new TypeError(`unknown entry type ${String((e as { type: unknown }).type)}`);
  }
}
