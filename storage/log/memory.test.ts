import test from 'ava';
import { StorageFatalError } from '../errors.ts';
import { logConformance, run } from './conformance.ts';
import { MemoryLogStore } from './memory.ts';

logConformance<MemoryLogStore>(test, 'MemoryLogStore', {
  open: async () => new MemoryLogStore(),
  restart: async (_t, s) => {
    await s.close();
    return s.crash();
  },
  breakMedium: async (s) => s.failNextSync(),
});

test('MemoryLogStore: crash() loses what was not synced and keeps what was', async (t) => {
  const s = new MemoryLogStore({ autoSync: false });
  const first = s.write({ hardState: { term: 1, vote: 'a', commit: 0 }, entries: run(1, 3, 1) });
  t.true(s.syncing);
  const second = s.write({ hardState: { term: 2, vote: 'b', commit: 0 }, entries: run(3, 5, 2) });
  t.true(s.syncNow(), 'first batch synced');
  await first;
  t.is(s.lastIndex(), 2);
  t.true(s.syncing, 'the piled-up call went out as the next batch');
  let settled = false;
  second.then(
    () => (settled = true),
    () => (settled = true),
  );
  const after = s.crash();
  await new Promise((r) => setImmediate(r));
  t.false(settled, 'an unsynced write never settles: the process that made it is gone');
  t.is(after.lastIndex(), 2);
  t.deepEqual(after.hardState(), { term: 1, vote: 'a', commit: 0 });
  await t.throwsAsync(s.write({ entries: run(3, 4, 1) }), { instanceOf: StorageFatalError });
  const again = after.write({ entries: run(3, 4, 3) });
  t.true(after.syncNow());
  await again;
  t.is(after.term(3), 3);
});

test('MemoryLogStore: a compaction not yet synced is lost by a crash', async (t) => {
  const s = new MemoryLogStore({ autoSync: false });
  const w = s.write({ entries: run(1, 6, 1) });
  s.syncNow();
  await w;
  void s.compact({ index: 3, term: 1, config: { voters: ['a'], learners: [] } });
  const after = s.crash();
  t.is(after.firstIndex(), 1);
  t.is(after.lastIndex(), 5);
});
