/**
 * Faults on a real cluster: kill -9 of the leader under a stream of acknowledged writes, and a
 * follower that comes back after the log was compacted and catches up through InstallSnapshot.
 */
import test from 'ava';
import { decodeEnvelope } from '../../protocol/index.ts';
import { TestCluster, writeStream } from '../cluster.ts';
import { type Harness, startHarness } from '../harness.ts';
import { waitFor } from '../wait.ts';

let harness: Harness;

test.before(async () => {
  harness = await startHarness({ label: 'ensemble-failover' });
});
test.after.always(async () => {
  await harness?.teardown();
});

test.serial(
  'kill -9 of the leader during acknowledged writes: a new leader, nothing lost, nothing applied twice',
  async (t) => {
    const cluster = await TestCluster.start(harness, { cluster: 'kill' });
    try {
      const c = await cluster.client({ timeoutMs: 30_000 });
      const writes = writeStream(c, (i) => `/w/${String(i).padStart(6, '0')}`);
      const { acked } = writes;
      await waitFor(() => acked.length >= 300, { what: '300 acknowledged writes', timeoutMs: 60_000 });
      const old = await cluster.waitForLeader();
      // Clients hear a new leader announce itself (and move their requests in flight to it).
      const announced: { leader: string; term: number }[] = [];
      const nc = await harness.connect('client');
      nc.subscribe('ensemble.kill.leader', {
        callback: (_e, m) => {
          const d = decodeEnvelope(m.data, { cluster: 'kill' });
          if (d.ok) announced.push(d.envelope.body as { leader: string; term: number });
        },
      });
      await nc.flush();
      const termBefore = (await c.status(old)).term;
      const atKill = acked.length;
      await cluster.kill(old, 'SIGKILL');
      t.log(`killed leader ${old} after ${atKill} acknowledged writes`);
      const survivors = cluster.ids.filter((id) => id !== old);
      const leader = await cluster.waitForLeader(30_000, survivors);
      t.not(leader, old);
      await waitFor(() => announced.some((a) => a.leader === leader), {
        what: 'the new leader announced itself',
      });
      t.true(announced.find((a) => a.leader === leader)!.term > termBefore);
      await waitFor(() => acked.length >= atKill + 300, {
        what: '300 more after the kill',
        timeoutMs: 60_000,
      });
      await writes.stop();
      // Every acknowledged write is there, exactly once (a second apply would make version 2).
      const all = await c.rangeAll('/w/');
      const byKey = new Map(all.kvs.map((kv) => [kv.key, kv]));
      for (const i of acked) {
        const kv = byKey.get(`/w/${String(i).padStart(6, '0')}`);
        t.truthy(kv, `write ${i} lost`);
        if (kv) t.is(kv.version, 1, `write ${i} applied ${kv.version} times`);
      }
      t.log(`${acked.length} acknowledged writes all present, each applied once`);
      // The old leader comes back from RocksDB and catches up.
      await cluster.startNode(old, cluster.ids);
      await cluster.waitForLeader(30_000, cluster.ids);
      const s = await c.status(old);
      t.true(s.appliedIndex > 0);
    } finally {
      await cluster.close();
    }
  },
);

test.serial('a follower that missed a compacted log catches up through InstallSnapshot', async (t) => {
  const cluster = await TestCluster.start(harness, {
    cluster: 'snap',
    flags: ['--snapshot-threshold', '1000'],
  });
  try {
    const c = await cluster.client({ timeoutMs: 30_000 });
    const leader = await cluster.waitForLeader();
    const lagger = cluster.ids.find((id) => id !== leader)!;
    await cluster.kill(lagger, 'SIGTERM');
    let n = 0;
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        while (n < 10_000) {
          const i = n++;
          await c.put(`/k/${i}`, String(i));
        }
      }),
    );
    await cluster.startNode(lagger, cluster.ids);
    const target = (await c.status(leader)).commitIndex;
    const applied = await waitFor(
      async () => {
        const a = (await c.status(lagger)).appliedIndex;
        return a >= target ? a : null;
      },
      { what: `the lagger applies up to ${target}`, timeoutMs: 60_000, intervalMs: 200 },
    );
    t.true(applied >= target, `lagger applied ${applied} of ${target}`);
    t.true(
      (await cluster.metric(lagger, 'ensemble_snapshots_installed_total')) >= 1,
      'a snapshot was installed',
    );
    await c.put('/after', 'x');
    const kv = await c.get('/k/9999', { serializable: false });
    t.is(kv?.version, 1);
    // Its own copy answers a local read with the full state.
    const nc = await harness.connect('client');
    t.truthy(nc);
    const local = await c.status(lagger);
    t.true(local.revision >= 10_000);
  } finally {
    await cluster.close();
  }
});
