/**
 * The in-memory log store, for unit tests and the simulator. It keeps what is synced apart from
 * what is only queued: `crash()` loses everything not yet synced, as a power cut would.
 */
import { StorageFatalError } from '../errors.ts';
import { type Batch, GroupCommitLog } from './base.ts';
import { LogMirror } from './mirror.ts';

export interface MemoryLogStoreOptions {
  /**
   * `true` (default): a synced batch completes on a microtask. `false`: it stays in flight until
   * `syncNow()`, so a test or the simulator decides when the disk answers.
   */
  readonly autoSync?: boolean;
}

export class MemoryLogStore extends GroupCommitLog {
  private inFlight: { resolve: () => void; reject: (err: unknown) => void } | null = null;
  private failNext: Error | null = null;
  private dead = false;

  constructor(
    private readonly options: MemoryLogStoreOptions = {},
    synced: LogMirror = new LogMirror(),
  ) {
    super(synced);
  }

  /** Whether a synced batch is in flight (only ever true for long with `autoSync: false`). */
  get syncing(): boolean {
    return this.inFlight !== null;
  }

  /** Completes the synced batch in flight; returns `false` when there is none. */
  syncNow(): boolean {
    const inFlight = this.inFlight;
    if (inFlight === null) return false;
    this.inFlight = null;
    inFlight.resolve();
    return true;
  }

  /** Makes the next synced batch fail, as a failed fsync would (the store then fails for good). */
  failNextSync(err: Error = new Error('EIO: simulated fsync failure')): void {
    this.failNext = err;
  }

  /**
   * Simulated crash: this store is dead (its unsettled promises never settle, later calls reject
   * with `StorageFatalError`), and the returned store holds only what had been synced.
   */
  crash(): MemoryLogStore {
    this.inFlight = null;
    this.dead = true;
    this.dropUnsynced();
    void this.close();
    return new MemoryLogStore(this.options, this.durable.clone());
  }

  protected persist(_batch: Batch): Promise<void> {
    if (this.dead) return new Promise(() => {});
    const err = this.failNext;
    if (err !== null) {
      this.failNext = null;
      return Promise.reject(new StorageFatalError(`sync failed: ${err.message}`, { cause: err }));
    }
    return new Promise<void>((resolve, reject) => {
      this.inFlight = { resolve, reject };
      if (this.options.autoSync !== false) queueMicrotask(() => this.syncNow());
    });
  }

  protected closeMedium(): Promise<void> {
    return Promise.resolve();
  }
}
