/**
 * The in-memory key tree, for unit tests and the simulator. Its durable copy is what the last
 * `sync()` or `restore()` left; `crash()` returns a tree holding only that, as a power cut would
 * leave a node whose unsynced tree writes were lost (the Raft log then replays the rest).
 */

import type { ApiLimits } from '../../protocol/index.ts';
import { StorageFatalError } from '../errors.ts';
import type { Change } from './base.ts';
import { BaseTree } from './base.ts';
import { emptyData, type FrozenTree, freeze, type TreeData, thaw } from './data.ts';

export interface MemoryTreeOptions {
  readonly limits?: Partial<ApiLimits>;
}

export class MemoryTree extends BaseTree {
  private durable: FrozenTree;

  constructor(
    private readonly options: MemoryTreeOptions = {},
    data: TreeData = emptyData(),
  ) {
    super(data, options.limits);
    this.durable = freeze(data, data.raftMeta);
  }

  /** This tree stops (later calls reject); the returned one holds the last synced state. */
  crash(): MemoryTree {
    this.fail(new StorageFatalError('crashed'));
    return new MemoryTree(this.options, thaw(this.durable));
  }

  /** What the last sync or restore made durable (all a crash keeps), frozen: a snapshot's data. */
  get durableState(): FrozenTree {
    return this.durable;
  }

  /** `sync`, at once (the simulator's applier; a memory tree has nothing to wait for). */
  syncNow(): void {
    if (this.failure) throw this.failure;
    this.durable = freeze(this.data, this.data.raftMeta);
  }

  /** Replaces the state with a frozen one (a snapshot received in the simulator), durable at once. */
  restoreNow(state: FrozenTree): { readonly appliedIndex: number } {
    if (this.failure) throw this.failure;
    this.durable = state;
    this.replaceState(thaw(state));
    return { appliedIndex: this.appliedIndex };
  }

  protected record(_change: Change): void {}

  protected persistRestored(data: TreeData): Promise<void> {
    this.durable = freeze(data, data.raftMeta);
    return Promise.resolve();
  }

  protected syncMedium(): Promise<void> {
    this.durable = freeze(this.data, this.data.raftMeta);
    return Promise.resolve();
  }

  protected closeMedium(): Promise<void> {
    return Promise.resolve();
  }
}
