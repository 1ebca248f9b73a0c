import test from 'ava';
import { bytes, Driver, dumpOf, treeConformance } from './conformance.ts';
import { MemoryTree } from './memory.ts';

treeConformance<MemoryTree>(test, 'MemoryTree', {
  open: async () => new MemoryTree(),
  restart: async (_t, tree) => {
    await tree.sync();
    return tree.crash();
  },
});

test('MemoryTree: crash() keeps what the last sync() saw and loses the rest', async (t) => {
  const d = new Driver(new MemoryTree());
  await d.put('/a', '1');
  await d.tree.sync();
  const synced = await dumpOf(await d.tree.snapshot());
  await d.put('/b', '2');
  const after = (d.tree as MemoryTree).crash();
  t.is(after.appliedIndex, 1);
  t.is(after.get('/b'), null);
  t.true(synced.equals(await dumpOf(await after.snapshot())));
  await t.throwsAsync(d.tree.apply(9, { op: 'put', key: '/c', value: bytes('3') }), {
    code: 'STORAGE_FATAL',
  } as never);
  // Replaying the log from the applied index gives the lost apply back.
  t.truthy(await after.apply(2, { op: 'put', key: '/b', value: bytes('2') }));
  t.is(after.revision, 2);
});
