/**
 * Auto-compaction (etcd's `--auto-compaction-mode revision`): the history of every key lives in
 * memory, so without compaction it grows with every write. The leader keeps the newest `keep`
 * revisions: once the history below them is at least a tenth of `keep` (at least 100
 * revisions), it proposes `compact` at `revision - keep`, a log entry every node applies at the
 * same point. A watch or a read further back than that gets COMPACTED, as after `ensemble
 * compact`. One proposal at a time: another only once the tree shows the previous one applied,
 * or after `retryMs`.
 */

/** Revisions of history kept by default (etcd keeps everything unless told; its history is on
 * disk, ours in memory). */
export const DEFAULT_HISTORY_RETENTION = 10_000;

export interface HistoryRetentionOptions {
  /** Revisions to keep; 0: never compact. */
  readonly keep: number;
  readonly tree: { readonly revision: number; readonly compactRevision: number };
  /** Proposes `compact` at `revision`. */
  readonly propose: (revision: number) => void;
  readonly retryMs?: number;
  readonly now?: () => number;
}

export class HistoryRetention {
  private proposed: { revision: number; at: number } | null = null;
  /** Compactions proposed (metrics, tests). */
  count = 0;

  constructor(private readonly opts: HistoryRetentionOptions) {}

  /** Called on the leader now and then (every few ticks). */
  check(): void {
    const { keep, tree } = this.opts;
    if (keep <= 0) return;
    const now = this.opts.now ? this.opts.now() : performance.now();
    const p = this.proposed;
    if (p !== null && tree.compactRevision < p.revision && now - p.at < (this.opts.retryMs ?? 10_000)) return;
    this.proposed = null;
    const target = tree.revision - keep;
    if (target - tree.compactRevision < Math.max(100, Math.floor(keep / 10))) return;
    this.proposed = { revision: target, at: now };
    this.count++;
    this.opts.propose(target);
  }
}
