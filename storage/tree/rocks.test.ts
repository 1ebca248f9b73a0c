import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import { encode, FORMAT_VERSION } from '../codec.ts';
import { RocksDb } from '../rocks/db.ts';
import { tempDir } from '../test-util.ts';
import { bytes, Driver, dumpOf, treeConformance } from './conformance.ts';
import { RocksTree } from './rocks.ts';

const opened = async (t: import('ava').ExecutionContext, dir: string) => {
  const tree = await RocksTree.open(dir);
  t.teardown(() => tree.close());
  return tree;
};

treeConformance<RocksTree>(test, 'RocksTree', {
  open: async (t) => opened(t, await tempDir(t)),
  restart: async (t, tree) => {
    await tree.close();
    return opened(t, tree.dir);
  },
});

// The node's way: eager applies (an outcome at once when nothing is queued and the change is
// small) and writes gathered for a few ms; every conformance case must hold the same.
const eager = async (t: import('ava').ExecutionContext, dir: string) => {
  const tree = await RocksTree.open(dir, { writeDelayMs: 5 });
  t.teardown(() => tree.close());
  tree.apply = (index, command) => Promise.resolve(tree.applyEager(index, command));
  return tree;
};
treeConformance<RocksTree>(test, 'RocksTree (eager applies, gathered writes)', {
  open: async (t) => eager(t, await tempDir(t)),
  restart: async (t, tree) => {
    await tree.close();
    return eager(t, tree.dir);
  },
});

test('RocksTree: applyEager answers at once when nothing is queued; later operations wait for a slow one', async (t) => {
  const dir = await tempDir(t);
  const tree = await RocksTree.open(dir, { writeDelayMs: 50 });
  const put = (i: number) => ({ op: 'put', key: `/e/${i}`, value: bytes(`${i}`) });
  const first = tree.applyEager(1, put(1));
  t.false(first instanceof Promise, 'a small put comes back at once');
  t.like(first, { ok: true, revision: 1 });
  t.is(tree.applyEager(1, put(1)), null, 'an index applied before');
  // A queued operation first: the eager apply waits its turn.
  const queued = tree.apply(2, put(2));
  const after = tree.applyEager(3, put(3));
  t.true(after instanceof Promise);
  t.like(await queued, { ok: true, revision: 2 });
  t.like(await after, { ok: true, revision: 3 });
  // A long command (a subtree delete) goes through a promise, and what follows waits for it.
  for (let i = 4; i < 40; i++) t.false(tree.applyEager(i, put(i)) instanceof Promise);
  const long = tree.applyEager(40, { op: 'delete', key: '/e', subtree: true });
  const next = tree.apply(41, put(41));
  t.true(long instanceof Promise);
  t.like(await long, { ok: true });
  t.like(await next, { ok: true });
  t.is(Buffer.from(tree.get('/e/41')?.value ?? []).toString(), '41');
  t.is(tree.get('/e/5'), null);
  // Gathered writes reach the files at close.
  await tree.close();
  const again = await opened(t, dir);
  t.is(again.appliedIndex, 41);
  t.is(Buffer.from(again.get('/e/41')?.value ?? []).toString(), '41');
});

test('RocksTree: applies survive a close without sync (unsynced writes reach the files)', async (t) => {
  const dir = await tempDir(t);
  const d = new Driver(await RocksTree.open(dir));
  for (let i = 0; i < 100; i++) await d.put(`/k/${i}`, `${i}`);
  const before = await dumpOf(await d.tree.snapshot());
  await d.tree.close();
  const again = await opened(t, dir);
  t.is(again.appliedIndex, 100);
  t.true(before.equals(await dumpOf(await again.snapshot())));
});

test('RocksTree: keys whose byte order is not path order load in path order (3006 keys: several batches of the scan)', async (t) => {
  const dir = await tempDir(t);
  const d = new Driver(await RocksTree.open(dir));
  // '-' and '.' sort below '/' as bytes, above it as paths; 'é' is two bytes.
  const names = ['a', 'a-b', 'a.c', 'a0', 'é', 'z'];
  const keys: string[] = [];
  for (let i = 0; i < 500; i++) for (const n of names) keys.push(`/${n}/${i}`);
  for (const n of names) keys.push(`/${n}`);
  for (let i = 0; i < keys.length; i += 100)
    await d.tree.apply(++d.index, {
      op: 'txn',
      compare: [],
      success: keys.slice(i, i + 100).map((key) => ({ op: 'put', key, value: bytes(key) })),
      failure: [],
    });
  const before = d.tree.range('/', { limit: 10_000 }).kvs.map((kv) => kv.key);
  await d.tree.close();
  const again = await opened(t, dir);
  const after = again.range('/', { limit: 10_000 }).kvs.map((kv) => kv.key);
  t.is(after.length, keys.length);
  t.deepEqual(after, before, 'the same keys in the same (path) order');
  t.is(after.indexOf('/a/0') < after.indexOf('/a-b'), true, "'/' first");
  for (const key of ['/a-b/499', '/é/7', '/a']) t.is(new TextDecoder().decode(again.get(key)?.value), key);
});

test('RocksDb.scan: entries in key order across batches, stops early on false, rethrows what the callback throws', async (t) => {
  const db = await RocksDb.open(await tempDir(t));
  t.teardown(() => db.close());
  const ops = Array.from({ length: 2500 }, (_, i) => ({
    type: 'put' as const,
    key: Buffer.from(`x${String(i).padStart(5, '0')}`),
    value: Buffer.from([i % 256]),
  }));
  await db.batch(ops, true);
  const seen: string[] = [];
  await db.scan({ gte: Buffer.from('x'), lt: Buffer.from('y') }, (k, v) => {
    t.is(v[0], Number(k.toString().slice(1)) % 256);
    seen.push(k.toString());
    return undefined;
  });
  t.deepEqual(
    seen,
    ops.map((o) => o.key.toString()),
  );
  const strings: string[] = [];
  await db.scan(
    { gte: Buffer.from('x'), lt: Buffer.from('y') },
    (k: string) => {
      strings.push(k);
      return strings.length < 1500 ? undefined : false;
    },
    'string',
  );
  t.deepEqual(strings, seen.slice(0, 1500));
  await t.throwsAsync(
    db.scan({ gte: Buffer.from('x') }, () => {
      throw new RangeError('stop here');
    }),
    { instanceOf: RangeError },
  );
  // The database is still usable after each way of ending a scan.
  t.is((await db.get(Buffer.from('x00007')))?.[0], 7);
});

test('RocksTree: a corrupted record is CORRUPTED on open', async (t) => {
  const dir = await tempDir(t);
  const d = new Driver(await RocksTree.open(dir));
  await d.put('/a', 'x');
  await d.tree.close();
  const db = await RocksDb.open(join(dir, 'gen-1'));
  await db.batch(
    [{ type: 'put', key: Buffer.from('k/a'), value: encode([FORMAT_VERSION, ['not', 'a', 'kv']]) }],
    true,
  );
  await db.close();
  await t.throwsAsync(RocksTree.open(dir), { code: 'CORRUPTED' } as never);
});

test('RocksTree: an ephemeral key of an unknown session is CORRUPTED', async (t) => {
  const dir = await tempDir(t);
  const d = new Driver(await RocksTree.open(dir));
  await d.ok({ op: 'sessionOpen', id: 's', secret: bytes('x'), ttlMs: 9 });
  await d.ok({
    op: 'put',
    key: '/e',
    value: bytes('e'),
    ephemeral: true,
    client: { session: 's', seq: 1, lowSeq: 1 },
  });
  await d.tree.close();
  const db = await RocksDb.open(join(dir, 'gen-1'));
  await db.batch([{ type: 'del', key: Buffer.from('ss') }], true);
  await db.close();
  await t.throwsAsync(RocksTree.open(dir), { code: 'CORRUPTED', message: /unknown session/ } as never);
});

test('RocksTree: a write failure is STORAGE_FATAL and stops the tree', async (t) => {
  const dir = await tempDir(t);
  const tree = await RocksTree.open(dir);
  const d = new Driver(tree);
  await d.put('/a', '1');
  await tree.sync();
  await (tree as unknown as { db: RocksDb }).db.close();
  await t.throwsAsync(d.put('/b', '2'), { code: 'STORAGE_FATAL' } as never);
  await t.throwsAsync(d.put('/c', '3'), { code: 'STORAGE_FATAL' } as never);
  await t.throwsAsync(tree.sync(), { code: 'STORAGE_FATAL' } as never);
});

test('RocksTree: an interrupted restore leaves the old state; stale generations are removed', async (t) => {
  const dir = await tempDir(t);
  const source = new Driver(await opened(t, await tempDir(t)));
  for (let i = 0; i < 2000; i++) await source.put(`/new/${i}`, 'n');
  const dump = await dumpOf(await source.tree.snapshot({ chunkBytes: 4096 }));

  const tree = await RocksTree.open(dir);
  await new Driver(tree).put('/old', 'o');
  const old = await dumpOf(await tree.snapshot());
  async function* failing() {
    yield dump.subarray(0, dump.length / 2);
    throw new Error('connection lost');
  }
  await t.throwsAsync(tree.restore(failing()), { message: 'connection lost' });
  t.true(old.equals(await dumpOf(await tree.snapshot())));
  await tree.close();
  const reopened = await opened(t, dir);
  t.true(old.equals(await dumpOf(await reopened.snapshot())));
  t.deepEqual((await readdir(dir)).sort(), ['CURRENT', 'gen-1']);
  await reopened.restore([dump]);
  t.deepEqual((await readdir(dir)).sort(), ['CURRENT', 'gen-2']);
});
