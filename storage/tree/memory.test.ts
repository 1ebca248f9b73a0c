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

test('MemoryTree: applyNow gives what apply gives, at once, long commands and rollbacks included', async (t) => {
  const commands: unknown[] = [
    { op: 'sessionOpen', id: 's', secret: bytes('x'), ttlMs: 1000 },
    ...Array.from({ length: 40 }, (_, i) => ({ op: 'put', key: `/d/${i}`, value: bytes(String(i)) })),
    {
      op: 'put',
      key: '/e/1',
      value: bytes('eph'),
      ephemeral: true,
      client: { session: 's', seq: 1, lowSeq: 1 },
    },
    // A txn whose subtree delete runs and then a failing put: rolled back whole.
    {
      op: 'txn',
      compare: [],
      success: [
        { op: 'delete', key: '/d', subtree: true },
        { op: 'put', key: '/d/0', value: bytes('x'), ifVersion: 7 },
      ],
      failure: [],
    },
    { op: 'delete', key: '/d', subtree: true },
    {
      op: 'put',
      key: '/e/1',
      value: bytes('again'),
      ephemeral: true,
      client: { session: 's', seq: 1, lowSeq: 1 },
    },
    { op: 'sessionExpire', id: 's' },
    { op: 'frobnicate' },
  ];
  const a = new MemoryTree();
  const b = new MemoryTree();
  for (let i = 0; i < commands.length; i++) {
    const slow = await a.apply(i + 1, commands[i]);
    const now = b.applyNow(i + 1, commands[i]);
    t.deepEqual(
      now && { ok: now.ok, revision: now.revision, replayed: now.replayed },
      slow && { ok: slow.ok, revision: slow.revision, replayed: slow.replayed },
      `command ${i + 1}`,
    );
  }
  t.true((await dumpOf(await a.snapshot())).equals(await dumpOf(await b.snapshot())), 'the same state');
  t.is(b.range('/d/').kvs.length, 0);
  t.is(b.get('/e/1'), null, 'the ephemeral key went with its session');
  t.is(b.applyNow(3, commands[2]), null, 'an index applied before');
});

test('MemoryTree: syncNow and restoreNow move whole states at once (the simulator’s snapshots)', (t) => {
  const a = new MemoryTree();
  a.applyNow(1, { op: 'put', key: '/a', value: bytes('1') });
  a.syncNow();
  a.applyNow(2, { op: 'put', key: '/b', value: bytes('2') });
  const b = new MemoryTree();
  t.is(b.restoreNow(a.durableState).appliedIndex, 1);
  t.is(b.get('/b'), null, 'only what was synced');
  t.is(b.crash().get('/a')?.version, 1, 'a restore is durable at once');
});
