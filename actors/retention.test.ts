/** Auto-compaction on the leader, with a stand-in tree and clock (unit test doubles). */
import test from 'ava';
import { HistoryRetention } from './retention.ts';

function rig(keep: number) {
  const tree = { revision: 0, compactRevision: 0 };
  const proposed: number[] = [];
  let now = 0;
  const r = new HistoryRetention({
    keep,
    tree,
    propose: (rev) => proposed.push(rev),
    retryMs: 1000,
    now: () => now,
  });
  return { r, tree, proposed, advance: (ms: number) => (now += ms) };
}

test('proposes a compaction below the newest `keep` revisions once a tenth of them is due', (t) => {
  const { r, tree, proposed } = rig(1000);
  tree.revision = 1099;
  r.check();
  t.deepEqual(proposed, [], '99 revisions below the window: not yet');
  tree.revision = 1100;
  r.check();
  t.deepEqual(proposed, [100]);
  // Waits for it to be applied, even as writes go on.
  tree.revision = 5000;
  r.check();
  t.deepEqual(proposed, [100]);
  tree.compactRevision = 100;
  r.check();
  t.deepEqual(proposed, [100, 4000]);
});

test('a proposal that never applied (a leader change) is made again after the retry time', (t) => {
  const { r, tree, proposed, advance } = rig(1000);
  tree.revision = 3000;
  r.check();
  advance(999);
  r.check();
  t.deepEqual(proposed, [2000]);
  advance(1);
  r.check();
  t.deepEqual(proposed, [2000, 2000]);
});

test('keep 0 never compacts; small windows wait for 100 revisions', (t) => {
  const off = rig(0);
  off.tree.revision = 10 ** 6;
  off.r.check();
  t.deepEqual(off.proposed, []);
  const small = rig(10);
  small.tree.revision = 109;
  small.r.check();
  t.deepEqual(small.proposed, []);
  small.tree.revision = 110;
  small.r.check();
  t.deepEqual(small.proposed, [100]);
});
