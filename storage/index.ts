/**
 * storage/: the durable state of a node. The Raft log with hard state and identity (`LogStore`,
 * on RocksDB or in memory), the key tree that Raft drives (`KeyTree`, on RocksDB or in memory),
 * and the tree's snapshots. Storage errors (errors.ts) stop the node; requests fail with the
 * classes of `protocol/errors.ts`.
 */

export * from './errors.ts';
export { MemoryLogStore, type MemoryLogStoreOptions } from './log/memory.ts';
export { RocksLogStore } from './log/rocks.ts';
export type { LoadedLog, LogStore, NodeIdentity, Persist, StableStore, StoreStats } from './log/types.ts';
export { type NodeStorage, openStorage } from './node.ts';
export { BaseTree, filterOf } from './tree/base.ts';
export { MemoryTree, type MemoryTreeOptions } from './tree/memory.ts';
export { comparePaths } from './tree/path.ts';
export { RocksTree, type RocksTreeOptions } from './tree/rocks.ts';
export { DEFAULT_CHUNK_BYTES, DUMP_VERSION } from './tree/snapshot.ts';
export * from './tree/types.ts';
