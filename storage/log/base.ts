/**
 * Group commit shared by both log stores: calls are validated against the `pending` mirror and
 * queued; when no synced batch is in flight the queue goes out at once, and whatever piles up
 * meanwhile goes out as the next single batch. The `durable` mirror and the callers' promises
 * advance only after a batch is synced, in call order.
 */
import { randomBytes } from 'node:crypto';
import type { Entry, HardState, SnapshotMeta } from '../../machines/raft/index.ts';
import { IdentityMismatchError, StorageFatalError, storageFatal } from '../errors.ts';
import type { LogMirror, LogOp } from './mirror.ts';
import { encodeEntry } from './records.ts';
import type { LoadedLog, LogStore, NodeIdentity, Persist, StoreStats } from './types.ts';

interface Queued {
  /** `null` for a barrier: resolves when everything before it is durable. */
  readonly op: LogOp | null;
  /** Encoded entries of a write op, made when the call is validated (so bad data fails the call). */
  readonly encoded: readonly Buffer[];
  readonly resolve: () => void;
  readonly reject: (err: unknown) => void;
}

export interface Batch {
  readonly ops: readonly LogOp[];
  readonly encoded: readonly (readonly Buffer[])[];
}

export abstract class GroupCommitLog implements LogStore {
  protected durable: LogMirror;
  protected pending: LogMirror;
  private queue: Queued[] = [];
  private flushing = false;
  /** Bumped by `dropUnsynced`: a flush of an older epoch finishing late is ignored. */
  private epoch = 0;
  private failure: StorageFatalError | null = null;
  private closed = false;
  private idle: (() => void)[] = [];
  private counters = { batches: 0, writes: 0 };

  protected constructor(durable: LogMirror) {
    this.durable = durable;
    this.pending = durable.clone();
  }

  /** Writes one batch durably (synced). Rejection fails the store. */
  protected abstract persist(batch: Batch): Promise<void>;
  /** Called after a batch is durable and mirrored (e.g. to drop compacted entries lazily). */
  protected afterDurable(_batch: Batch): void {}
  /** Releases the medium after the queue drained. */
  protected abstract closeMedium(): Promise<void>;

  firstIndex(): number {
    return this.durable.firstIndex();
  }
  lastIndex(): number {
    return this.durable.lastIndex();
  }
  term(i: number): number | undefined {
    return this.durable.term(i);
  }
  entries(lo: number, hi: number): Entry[] {
    return this.durable.entries(lo, hi);
  }
  hardState(): HardState {
    return this.durable.hardState();
  }
  snapshot(): SnapshotMeta | null {
    return this.durable.snapshot();
  }
  identity(): NodeIdentity | null {
    return this.durable.identity();
  }
  stats(): StoreStats {
    return { ...this.counters };
  }

  load(): Promise<LoadedLog> {
    const m = this.durable;
    return Promise.resolve({
      hardState: m.hardState(),
      snapshot: m.snapshot(),
      entries: m.entries(m.firstIndex(), m.lastIndex() + 1),
    });
  }

  write(p: Persist): Promise<void> {
    const unusable = this.unusable();
    if (unusable) return Promise.reject(unusable);
    let op: LogOp;
    let encoded: Buffer[];
    try {
      if (typeof p !== 'object' || p === null) throw new TypeError('persist must be an object');
      op = this.pending.planWrite(p.hardState, p.entries);
      encoded = p.entries.map(encodeEntry);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.enqueue(op, encoded);
  }

  compact(snapshot: SnapshotMeta): Promise<void> {
    const unusable = this.unusable();
    if (unusable) return Promise.reject(unusable);
    let op: LogOp | null;
    try {
      op = this.pending.planCompact(snapshot);
    } catch (err) {
      return Promise.reject(err);
    }
    return op === null ? this.whenQueued() : this.enqueue(op, []);
  }

  async initIdentity(ids: { clusterId: string; nodeId: string }): Promise<NodeIdentity> {
    const unusable = this.unusable();
    if (unusable) throw unusable;
    const { clusterId, nodeId } = ids;
    if (typeof clusterId !== 'string' || clusterId === '' || typeof nodeId !== 'string' || nodeId === '') {
      throw new TypeError('clusterId and nodeId must be non-empty strings');
    }
    const known = this.pending.identity();
    if (known !== null) {
      if (known.clusterId !== clusterId || known.nodeId !== nodeId) {
        throw new IdentityMismatchError(
          `data directory belongs to node ${known.nodeId} of cluster ${known.clusterId}, not ${nodeId} of ${clusterId}`,
        );
      }
      await this.whenQueued();
      return known;
    }
    const identity: NodeIdentity = { clusterId, nodeId, incarnation: randomBytes(8).toString('hex') };
    await this.enqueue({ kind: 'identity', identity }, []);
    return identity;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.flushing) await new Promise<void>((resolve) => this.idle.push(resolve));
    await this.closeMedium();
  }

  /** Forgets every queued and in-flight call, as a crash would; their promises never settle. */
  protected dropUnsynced(): void {
    this.epoch++;
    this.queue = [];
    this.flushing = false;
    this.pending = this.durable.clone();
    for (const wake of this.idle.splice(0)) wake();
  }

  /** Marks the store failed: every queued and later call rejects with `err`. */
  protected fail(err: unknown): StorageFatalError {
    this.failure ??= storageFatal('log store', err);
    for (const q of this.queue.splice(0)) q.reject(this.failure);
    return this.failure;
  }

  private unusable(): StorageFatalError | null {
    if (this.failure) return this.failure;
    if (this.closed) return new StorageFatalError('log store is closed');
    return null;
  }

  /** Resolves after everything queued so far is durable (an empty call in the FIFO). */
  private whenQueued(): Promise<void> {
    if (!this.flushing && this.queue.length === 0) return Promise.resolve();
    return this.enqueue(null, []);
  }

  private enqueue(op: LogOp | null, encoded: Buffer[]): Promise<void> {
    if (op !== null) this.pending.apply(op);
    const promise = new Promise<void>((resolve, reject) => {
      this.queue.push({ op, encoded, resolve, reject });
    });
    if (!this.flushing) void this.flush();
    return promise;
  }

  private async flush(): Promise<void> {
    const epoch = this.epoch;
    this.flushing = true;
    while (this.queue.length > 0 && this.failure === null) {
      const calls = this.queue.splice(0);
      const real = calls.filter((c): c is Queued & { op: LogOp } => c.op !== null);
      const batch: Batch = { ops: real.map((c) => c.op), encoded: real.map((c) => c.encoded) };
      try {
        if (real.length > 0) await this.persist(batch);
      } catch (err) {
        if (epoch !== this.epoch) return;
        const failure = this.fail(err);
        for (const c of calls) c.reject(failure);
        break;
      }
      if (epoch !== this.epoch) return;
      if (real.length > 0) {
        for (const op of batch.ops) this.durable.apply(op);
        this.counters.batches++;
        this.counters.writes += real.length;
        this.afterDurable(batch);
      }
      for (const c of calls) c.resolve();
    }
    this.flushing = false;
    for (const wake of this.idle.splice(0)) wake();
  }
}
