/**
 * `sorted-btree` is CommonJS with `exports.default`; Node's ESM loader hands us `module.exports`,
 * so the class is one level down. Copy-on-write `clone()` gives O(1) frozen views for readers
 * during long applies and for snapshots.
 */
import { createRequire } from 'node:module';
import type { default as BTreeModule } from 'sorted-btree';

type BTreeClass = typeof BTreeModule.default;

const require = createRequire(import.meta.url);
export const BTree: BTreeClass = (require('sorted-btree') as { default: BTreeClass }).default;
export type BTree<K, V> = BTreeModule.default<K, V>;

/** Builds a tree from keys in strictly ascending order, in O(n) (throws `Error` otherwise). */
export const bulkLoad: <K, V>(
  keys: K[],
  values: V[],
  maxNodeSize: number,
  compare: (a: K, b: K) => number,
) => BTree<K, V> = (require('sorted-btree/extended/bulkLoad') as { bulkLoad: never }).bulkLoad;
