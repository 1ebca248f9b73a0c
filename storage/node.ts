/**
 * A node's data directory: `log/` (the Raft log, hard state and node identity, every write
 * synced) and `tree/` (the key tree, generations switched atomically by restores).
 */
import { join } from 'node:path';
import { RocksLogStore } from './log/rocks.ts';
import { RocksTree, type RocksTreeOptions } from './tree/rocks.ts';

export interface NodeStorage {
  readonly log: RocksLogStore;
  readonly tree: RocksTree;
  close(): Promise<void>;
}

/**
 * Opens both stores of `dataDir` (created if missing). After a crash the tree may lag the log
 * (its writes are not synced): replay committed entries from `tree.appliedIndex + 1`. If the
 * tree is ahead of the log's snapshot (a restore finished but the log compaction did not),
 * call `log.compact(tree.raftMeta)`. Throws `StorageFatalError` or `CorruptedError`.
 */
export async function openStorage(dataDir: string, options: RocksTreeOptions = {}): Promise<NodeStorage> {
  const log = await RocksLogStore.open(join(dataDir, 'log'));
  let tree: RocksTree;
  try {
    tree = await RocksTree.open(join(dataDir, 'tree'), options);
  } catch (err) {
    await log.close();
    throw err;
  }
  return {
    log,
    tree,
    close: async () => {
      await Promise.all([log.close(), tree.close()]);
    },
  };
}
