/**
 * The applier: committed entries -> key tree -> outcomes for the API, in log order, one at a
 * time. It reports progress to the Raft machine (`raft.applied`), lets reads wait for an
 * applied index, and takes snapshots when the machine asks.
 *
 * Applying writes the tree unsynced (the synced log already makes entries durable, and apply
 * is idempotent by index); `sync` happens only before the log is compacted.
 */
import type { EffectOf, Entry, RaftEvent, SnapshotMeta } from '../machines/raft/index.ts';
import type { ApplyOutcome, KeyTree, LogStore } from '../storage/index.ts';

export interface ApplierPorts {
  readonly raft: (event: RaftEvent) => void;
  readonly tree: KeyTree;
  readonly log: LogStore;
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
    if (!this.running) void this.run();
  }

  /** Resolves once every entry up to `index` is applied. */
  waitApplied(index: number): Promise<void> {
    if (index <= this.index) return Promise.resolve();
    return new Promise((resolve) => {
      this.waiters.push({ index, resolve });
    });
  }

  /** The machine asked for a snapshot: make the tree durable at the applied index, report it. */
  snapshot(): void {
    void this.whenIdle()
      .then(() => this.ports.tree.sync())
      .then(
        () => this.ports.raft({ type: 'raft.snapshotTaken', index: this.index }),
        (err) => this.ports.fatal(err),
      );
  }

  /** The log may drop what the snapshot covers (the tree is durable up to it). */
  compact(snapshot: SnapshotMeta): void {
    this.ports.log.compact(snapshot).catch((err) => this.ports.fatal(err));
  }

  /** After a snapshot was installed: the tree jumped ahead. */
  restored(index: number): void {
    if (index > this.index) this.index = index;
    this.queue = this.queue.filter((e) => e.index > this.index);
    this.wake();
  }

  stop(): void {
    this.stopped = true;
  }

  private idle: (() => void)[] = [];

  private whenIdle(): Promise<void> {
    if (!this.running) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  private async run(): Promise<void> {
    this.running = true;
    try {
      while (this.queue.length > 0 && !this.stopped) {
        const e = this.queue.shift()!;
        if (e.index <= this.index) continue;
        let outcome: ApplyOutcome | null = null;
        if (e.type === 'normal') {
          const t0 = performance.now();
          outcome = await this.ports.tree.apply(e.index, e.data);
          this.latencies.push(performance.now() - t0);
        }
        this.index = e.index;
        this.ports.applied(e, outcome);
        if (this.queue.length === 0 || this.queue.length % 256 === 0) {
          this.ports.raft({ type: 'raft.applied', index: this.index });
          this.wake();
        }
      }
    } catch (err) {
      this.ports.fatal(err);
    } finally {
      this.running = false;
      this.wake();
      for (const r of this.idle.splice(0)) r();
    }
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
