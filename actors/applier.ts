/**
 * The applier: committed entries -> state machine (the key tree) -> outcomes, in log order, one at
 * a time. It reports progress to the Raft machine (`raft.applied`), lets reads wait for an applied
 * index, takes snapshots when the machine asks, and installs received ones.
 *
 * The state machine may answer an entry at once or later (a promise): the node's RocksDB tree
 * answers later; the simulator's in-memory tree at once, so a simulated step runs to the end
 * without waiting for the event loop. Either way entries are applied strictly in order.
 *
 * Applying writes the tree unsynced (the synced log already makes entries durable, and apply is
 * idempotent by index); the tree is synced only before the log is compacted.
 */
import type { EffectOf, Entry, RaftEvent, SnapshotMeta } from '../machines/raft/index.ts';
import type { ApplyOutcome } from '../storage/index.ts';

/** The replicated state machine, as the applier drives it. */
export interface StateMachine {
  /** Applies the command of entry `index` (idempotent by index: null for one applied before). */
  apply(index: number, data: unknown): ApplyOutcome | null | Promise<ApplyOutcome | null>;
  /** Makes the state durable at its applied index. */
  sync(done: (err: unknown) => void): void;
  /** Replaces the state with a snapshot's, all or nothing; `done(null, appliedIndex)`. */
  restore(data: unknown, done: (err: unknown, appliedIndex?: number) => void): void;
}

export interface ApplierPorts {
  readonly raft: (event: RaftEvent) => void;
  readonly tree: StateMachine;
  /** Drops the log prefix a snapshot covers. */
  readonly compact: (snapshot: SnapshotMeta, done: (err: unknown) => void) => void;
  /** Every applied entry with its outcome (null for no-op and configuration entries, and for
   * entries the tree had applied before a restart). */
  readonly applied: (entry: Entry, outcome: ApplyOutcome | null) => void;
  readonly fatal: (error: unknown) => void;
}

export class Applier {
  /** Last log index handed to the tree (or skipped as a no-op / configuration entry). */
  index: number;
  private queue: Entry[] = [];
  private running = false;
  private waiters: { index: number; resolve: () => void }[] = [];
  private idle: (() => void)[] = [];
  private stopped = false;
  /** Applied-entry latencies in ms, for metrics (drained by the reader). */
  readonly latencies: number[] = [];

  constructor(
    private readonly ports: ApplierPorts,
    startIndex: number,
  ) {
    this.index = startIndex;
  }

  apply(effect: EffectOf<'apply'>): void {
    for (const e of effect.entries) this.queue.push(e);
    if (!this.running) this.run();
  }

  /** Calls `fn` once every entry up to `index` is applied: at once if they already are (no
   * extra turn of the event loop, and the simulator needs none). */
  whenApplied(index: number, fn: () => void): void {
    if (index <= this.index) fn();
    else this.waiters.push({ index, resolve: fn });
  }

  /** Resolves once every entry up to `index` is applied. */
  waitApplied(index: number): Promise<void> {
    return new Promise((resolve) => this.whenApplied(index, resolve));
  }

  /** The machine asked for a snapshot: make the tree durable at the applied index, report it. */
  snapshot(): void {
    this.whenIdle(() =>
      this.ports.tree.sync((err) => {
        if (err) return this.ports.fatal(err);
        this.ports.raft({ type: 'raft.snapshotTaken', index: this.index });
      }),
    );
  }

  /** The log may drop what the snapshot covers (the tree is durable up to it). */
  compact(snapshot: SnapshotMeta): void {
    this.ports.compact(snapshot, (err) => {
      if (err) this.ports.fatal(err);
    });
  }

  /**
   * Installs a received snapshot (of log index `index`) once the entries in progress are
   * applied; the tree jumps ahead. A tree already past `index` keeps its state: it applied only
   * committed entries, so it holds that snapshot's state and more. That happens after a crash
   * between a restore and the log's reset (the tree restored, the log not): the node boots with
   * its tree ahead of its log, and the leader sends an older snapshot for the log's sake.
   * Restoring it would take the tree back while the applier skips the entries it already
   * counted (the simulator found it).
   */
  restore(data: unknown, index: number, done: (err: unknown) => void): void {
    this.whenIdle(() => {
      if (index <= this.index) {
        this.queue = this.queue.filter((e) => e.index > this.index);
        return done(null);
      }
      this.ports.tree.restore(data, (err, applied) => {
        if (err) return done(err);
        if (applied !== undefined && applied > this.index) this.index = applied;
        this.queue = this.queue.filter((e) => e.index > this.index);
        this.wake();
        done(null);
      });
    });
  }

  stop(): void {
    this.stopped = true;
  }

  private whenIdle(run: () => void): void {
    if (!this.running) run();
    else this.idle.push(run);
  }

  /** Applies what is queued: synchronously while the tree answers at once, resuming after a promise. */
  private run(): void {
    this.running = true;
    try {
      while (this.queue.length > 0 && !this.stopped) {
        const e = this.queue.shift()!;
        if (e.index <= this.index) continue;
        if (e.type !== 'normal') {
          this.done(e, null, 0);
          continue;
        }
        const t0 = performance.now();
        const out = this.ports.tree.apply(e.index, e.data);
        if (out instanceof Promise) {
          out.then(
            (outcome) => {
              this.done(e, outcome, t0);
              this.run();
            },
            (err) => this.crash(err),
          );
          return;
        }
        this.done(e, out, t0);
      }
    } catch (err) {
      return this.crash(err);
    }
    this.running = false;
    this.wake();
    for (const r of this.idle.splice(0)) r();
  }

  private done(e: Entry, outcome: ApplyOutcome | null, t0: number): void {
    if (t0 > 0) this.latencies.push(performance.now() - t0);
    this.index = e.index;
    this.ports.applied(e, outcome);
    if (this.queue.length === 0 || this.queue.length % 256 === 0) {
      this.ports.raft({ type: 'raft.applied', index: this.index });
      this.wake();
    }
  }

  private crash(err: unknown): void {
    this.running = false;
    this.ports.fatal(err);
  }

  private wake(): void {
    if (this.waiters.length === 0) return;
    const keep: typeof this.waiters = [];
    for (const w of this.waiters) {
      if (w.index <= this.index) w.resolve();
      else keep.push(w);
    }
    this.waiters = keep;
  }
}
