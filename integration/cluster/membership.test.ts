/**
 * Membership on a real cluster: a 4th node joins as a learner, is promoted, another member is
 * removed, leadership is transferred; the cluster keeps serving throughout.
 */
import test from 'ava';
import { TestCluster } from '../cluster.ts';
import { type Harness, startHarness } from '../harness.ts';
import { waitFor } from '../wait.ts';

let harness: Harness;

test.before(async () => {
  harness = await startHarness({ label: 'ensemble-members' });
});
test.after.always(async () => {
  await harness?.teardown();
});

async function eventually<T>(fn: () => Promise<T>, ok: (v: T) => boolean, ms = 20_000): Promise<T> {
  let last: T | undefined;
  await waitFor(
    async () => {
      last = await fn().catch(() => undefined);
      return last !== undefined && ok(last);
    },
    { timeoutMs: ms, intervalMs: 100 },
  );
  return last as T;
}

test.serial(
  'add a 4th node as a learner, promote it, remove another: the cluster keeps serving',
  async (t) => {
    const cluster = await TestCluster.start(harness, { cluster: 'members' });
    try {
      const c = await cluster.admin();
      for (let i = 0; i < 50; i++) await c.put(`/before/${i}`, String(i));
      cluster.ids.push('n4');
      await cluster.startNode('n4', null); // --join: empty, waits to be added
      const added = await c.memberAdd('n4');
      t.deepEqual(added.members.learners, ['n4']);
      // The learner catches up; promotion waits until it is close enough (NOT_CAUGHT_UP otherwise).
      const promoted = await eventually(
        () => c.memberPromote('n4'),
        (r) => r.members.voters.includes('n4'),
      );
      t.deepEqual([...promoted.members.voters].sort(), ['n1', 'n2', 'n3', 'n4']);
      const learnerView = await eventually(
        () => c.status('n4'),
        (s) => s.members.voters.includes('n4') && s.appliedIndex >= promoted.index,
      );
      t.is(learnerView.role, 'follower');
      // Remove a member that is not the leader, then one that is.
      const leader = await cluster.waitForLeader(30_000, ['n1', 'n2', 'n3', 'n4']);
      const victim = ['n1', 'n2', 'n3'].find((id) => id !== leader)!;
      const removed = await c.memberRemove(victim);
      t.false(removed.members.voters.includes(victim));
      await cluster.kill(victim, 'SIGTERM');
      await c.put('/after-remove', 'ok');
      const remaining = ['n1', 'n2', 'n3', 'n4'].filter((id) => id !== victim);
      const removedLeader = await c.memberRemove(leader);
      t.false(removedLeader.members.voters.includes(leader));
      const newLeader = await cluster.waitForLeader(
        30_000,
        remaining.filter((id) => id !== leader),
      );
      t.not(newLeader, leader);
      await c.put('/after-leader-removed', 'ok');
      t.is(await c.getText('/before/49'), '49');
      t.is(await c.getText('/after-leader-removed'), 'ok');
    } finally {
      await cluster.close();
    }
  },
);

test.serial('leadership transfers to the voter asked for', async (t) => {
  const cluster = await TestCluster.start(harness, { cluster: 'transfer' });
  try {
    const c = await cluster.admin();
    const leader = await cluster.waitForLeader();
    const to = cluster.ids.find((id) => id !== leader)!;
    const r = await c.transferLeader(to);
    t.is(r.leader, to);
    t.is(await cluster.waitForLeader(), to);
    await c.put('/x', 'y');
    t.is(await c.getText('/x'), 'y');
  } finally {
    await cluster.close();
  }
});

test.serial(
  'a node whose data was wiped is refused under its old identity until removed and added again',
  async (t) => {
    const cluster = await TestCluster.start(harness, { cluster: 'wiped' });
    try {
      const c = await cluster.admin();
      await c.put('/a', '1');
      const leader = await cluster.waitForLeader();
      const victim = cluster.ids.find((id) => id !== leader)!;
      await cluster.kill(victim, 'SIGKILL');
      cluster.dirs.set(victim, await harness.tempDir(`${victim}-wiped`)); // a fresh, empty data directory
      await cluster.startNode(victim, cluster.ids);
      const refused = await waitFor(
        () => cluster.metric(leader, 'ensemble_dropped_inputs_total{source="peer",reason="incarnation"'),
        { what: 'the leader refuses the new incarnation', timeoutMs: 20_000 },
      );
      t.true(refused > 0, 'the leader refuses frames from the new incarnation');
      const wiped = await c.status(victim);
      t.is(wiped.appliedIndex < (await c.status(leader)).appliedIndex, true, 'it does not catch up');
      await c.put('/b', '2'); // two nodes still make a quorum
      await c.memberRemove(victim);
      await c.memberAdd(victim);
      const promoted = await eventually(
        () => c.memberPromote(victim),
        (r) => r.members.voters.includes(victim),
      );
      t.true(promoted.members.voters.includes(victim));
      const back = await eventually(
        () => c.status(victim),
        (s) => s.appliedIndex >= promoted.index,
      );
      t.true(back.members.voters.includes(victim));
      t.is(await c.getText('/b'), '2');
    } finally {
      await cluster.close();
    }
  },
);
