import test from 'ava';
import { openStorage } from './node.ts';
import { tempDir } from './test-util.ts';
import { bytes } from './tree/conformance.ts';

test('openStorage: a data directory holds the log, the identity and the tree', async (t) => {
  const dir = await tempDir(t);
  const s = await openStorage(dir);
  const id = await s.log.initIdentity({ clusterId: 'c', nodeId: 'n1' });
  const cmd = { op: 'put', key: '/a', value: bytes('1') };
  await s.log.write({
    hardState: { term: 1, vote: 'n1', commit: 1 },
    entries: [{ index: 1, term: 1, type: 'normal', data: cmd }],
  });
  const [entry] = s.log.entries(1, 2);
  t.like(await s.tree.apply(1, entry?.type === 'normal' ? entry.data : null), { ok: true, revision: 1 });
  await s.close();
  const again = await openStorage(dir);
  t.teardown(() => again.close());
  t.deepEqual(again.log.identity(), id);
  t.is(again.log.lastIndex(), 1);
  t.is(again.tree.appliedIndex, 1);
  t.is(again.tree.get('/a')?.version, 1);
});
