/**
 * SIGKILL leaves the page cache intact, so a crash test cannot catch a missing fsync. This test
 * spies on every write the log store hands to the RocksDB binding and fails on any without
 * `sync: true`.
 */
import test from 'ava';
import { tempDir } from '../test-util.ts';
import { run } from './conformance.ts';
import { RocksLogStore } from './rocks.ts';

interface Spied {
  readonly method: string;
  readonly sync: boolean;
}

/** Wraps the native write paths of one database instance; `_clear` is recorded apart. */
function spy(raw: object): { writes: Spied[]; clears: number } {
  const seen = { writes: [] as Spied[], clears: 0 };
  const target = raw as Record<string, (...args: unknown[]) => unknown>;
  const syncOf = (options: unknown) => (options as { sync?: unknown } | null)?.sync === true;
  for (const [method, optionsAt] of [
    ['_batch', 1],
    ['_put', 2],
    ['_del', 1],
  ] as const) {
    const original = target[method]!;
    target[method] = function (this: unknown, ...args: unknown[]) {
      seen.writes.push({ method, sync: syncOf(args[optionsAt]) });
      return original.apply(this, args);
    };
  }
  const chained = target._chainedBatch!;
  target._chainedBatch = function (this: unknown, ...args: unknown[]) {
    const batch = chained.apply(this, args) as Record<string, (...a: unknown[]) => unknown>;
    const write = batch._write!;
    batch._write = function (this: unknown, ...a: unknown[]) {
      seen.writes.push({ method: 'chained', sync: syncOf(a[0]) });
      return write.apply(this, a);
    };
    return batch;
  };
  const clear = target._clear!;
  target._clear = function (this: unknown, ...args: unknown[]) {
    seen.clears++;
    return clear.apply(this, args);
  };
  return seen;
}

test('every log and hard-state write goes to RocksDB with sync: true', async (t) => {
  const dir = await tempDir(t);
  const store = await RocksLogStore.open(dir);
  t.teardown(() => store.close());
  const seen = spy(store.db.raw);
  const config = { voters: ['a'], learners: [] };

  await store.initIdentity({ clusterId: 'c', nodeId: 'a' });
  await store.write({ hardState: { term: 1, vote: 'a', commit: 0 }, entries: [] });
  await store.write({ entries: run(1, 20, 1) });
  await Promise.all([
    store.write({ entries: run(20, 25, 1) }),
    store.write({ hardState: { term: 2, vote: null, commit: 3 }, entries: run(22, 30, 2) }),
  ]);
  await store.compact({ index: 10, term: 1, config });
  await store.compact({ index: 15, term: 7, config });
  await store.write({ hardState: { term: 3, vote: 'a', commit: 15 }, entries: [] });
  await store.close();

  t.true(seen.writes.length >= 6, `spy saw ${seen.writes.length} writes`);
  t.deepEqual(
    seen.writes.filter((w) => !w.sync),
    [],
    'a write without sync: true',
  );
});

test('the spy catches a write without sync: true', async (t) => {
  const dir = await tempDir(t);
  const store = await RocksLogStore.open(dir);
  t.teardown(() => store.close());
  const seen = spy(store.db.raw);
  await store.db.batch([{ type: 'put', key: Buffer.from('x'), value: Buffer.from('y') }], false);
  t.deepEqual(seen.writes, [{ method: '_batch', sync: false }]);
});
