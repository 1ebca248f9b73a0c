/**
 * NATS faults: the server restarts under load (nodes and clients reconnect, nothing
 * acknowledged is lost, no live session expires because of the outage), and with a 3-server
 * NATS cluster one server dies while the cluster keeps serving.
 */
import test from 'ava';
import { TestCluster, writeStream } from '../cluster.ts';
import { startHarness } from '../harness.ts';
import { waitFor } from '../wait.ts';

test.serial(
  'a nats-server restart under load loses nothing acknowledged and expires no live session',
  async (t) => {
    const h = await startHarness({ label: 'ensemble-natsrestart' });
    const cluster = await TestCluster.start(h, { cluster: 'outage' });
    try {
      // TTL 6 s: the 1.5 s outage and everyone's reconnection fit with room to spare on a loaded
      // 2-core CI machine (with 4 s, a run with CPU-heavy tests alongside once saw it expire).
      const c = await cluster.client({ sessionTtlMs: 6000, timeoutMs: 30_000 });
      await c.put('/live/eph', 'mine', { ephemeral: true });
      const writes = writeStream(c, (i) => `/o/${i}`);
      const { acked } = writes;
      await waitFor(() => acked.length >= 200, { timeoutMs: 30_000, what: '200 writes acknowledged' });
      const server = h.natsServers[0]!;
      await server.kill('SIGKILL');
      // A deliberate outage of a fixed length (the test is about surviving it): nothing to wait for.
      await new Promise((r) => setTimeout(r, 1500));
      await server.restart();
      const resumed = acked.length;
      await waitFor(() => acked.length >= resumed + 200, {
        timeoutMs: 30_000,
        what: '200 more writes acknowledged after the restart',
      });
      await writes.stop();
      t.true(acked.length >= resumed + 200, 'writes resumed after the restart');
      const all = await c.rangeAll('/o/');
      const keys = new Set(all.kvs.map((kv) => kv.key));
      t.true(
        acked.every((i) => keys.has(`/o/${i}`)),
        'every acknowledged write survived',
      );
      // Outage (1.5 s) plus reconnect stayed well within what the session tolerates only because
      // the nodes counted their own reconnect as contact: the ephemeral key is still there.
      // Waiting longer than the TTL (6 s) is the point: an expiry, were one due, would happen in
      // that time; a non-event has no condition to wait on.
      await new Promise((r) => setTimeout(r, 7000));
      const eph = await c.get('/live/eph');
      t.truthy(eph, 'the live session kept its ephemeral key');
    } finally {
      await cluster.close();
      await h.teardown();
    }
  },
);

test.serial('with three NATS servers, losing one leaves the cluster serving', async (t) => {
  const h = await startHarness({ label: 'ensemble-natscluster', natsCluster: 3 });
  const cluster = await TestCluster.start(h, { cluster: 'meshed' });
  try {
    const c = await cluster.client({ timeoutMs: 30_000 });
    await c.put('/a', '1');
    await h.natsServers[0]!.kill('SIGKILL');
    for (let i = 0; i < 50; i++) await c.put(`/b/${i}`, String(i));
    t.is((await c.range('/b/')).kvs.length, 50);
    t.is(await c.getText('/a'), '1');
    await cluster.waitForLeader();
  } finally {
    await cluster.close();
    await h.teardown();
  }
});
