/**
 * Sessions and ephemeral keys on a real cluster: a killed client's keys vanish (bounded with
 * generous slack here; the exact bound is checked in the simulator), a live client's keys
 * survive three leader kills in a row and a NATS server restart.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { natsCredentials } from '../../cluster/nats-server.ts';
import { decodeReply, encodeEnvelope } from '../../protocol/codec.ts';
import { TestCluster } from '../cluster.ts';
import { type Harness, startHarness } from '../harness.ts';
import { waitFor } from '../wait.ts';

let harness: Harness;
let cluster: TestCluster;
const CLIENT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'ephemeral-client.fixture.ts');

test.before(async () => {
  harness = await startHarness({ label: 'ensemble-sessions' });
  cluster = await TestCluster.start(harness, { cluster: 'sess' });
});
test.after.always(async () => {
  await cluster?.close();
  await harness?.teardown();
});

test.serial('the ephemeral keys of a killed client process disappear', async (t) => {
  const p = harness.spawn(
    process.execPath,
    ['--import', 'tsx', CLIENT, harness.natsUrls.join(','), 'sess', '/eph/killed', '2000'],
    {
      env: { ...process.env, ENSEMBLE_CLIENT_PASSWORD: natsCredentials('client').pass },
    },
  );
  await p.waitForOutput(/ready/, 30_000);
  const c = await cluster.client({ session: false });
  t.truthy(await c.get('/eph/killed'), 'the key exists while its client lives');
  const admin = await cluster.admin();
  const sessionsBefore = (await admin.status()).sessions.length;
  t.true(sessionsBefore >= 1, 'an admin sees the open sessions');
  t.deepEqual((await c.status()).sessions, [], 'a client sees no session ids');
  await p.kill('SIGKILL');
  const t0 = performance.now();
  await waitFor(async () => (await c.get('/eph/killed')) === null, {
    timeoutMs: 20_000,
    intervalMs: 100,
    what: "the killed client's ephemeral key disappears",
  });
  const took = performance.now() - t0;
  t.log(`gone ${took.toFixed(0)} ms after SIGKILL (TTL 2000 ms)`);
  // Status may come from a follower a few milliseconds behind the read above: wait for it too.
  await waitFor(async () => (await admin.status()).sessions.length < sessionsBefore, {
    timeoutMs: 5_000,
    intervalMs: 50,
    what: "the killed client's session leaves the status",
  });
  t.pass();
});

test.serial(
  'a live client keeps its ephemeral keys through three leader kills and a NATS restart',
  async (t) => {
    // TTL 5 s: the 1 s outage plus NATS's and the nodes' reconnection must fit in it with room
    // to spare on a loaded CI machine (with 3 s, the suite's CPU-bound tests running alongside
    // once starved a keepalive round past the TTL).
    const c = await cluster.client({ sessionTtlMs: 5000, timeoutMs: 30_000 });
    await c.put('/eph/live', 'here', { ephemeral: true });
    for (let i = 0; i < 3; i++) {
      const leader = await cluster.waitForLeader();
      await cluster.kill(leader, 'SIGKILL');
      await cluster.waitForLeader(
        30_000,
        cluster.ids.filter((id) => id !== leader),
      );
      await cluster.startNode(leader, cluster.ids);
      t.truthy(await c.get('/eph/live'), `still there after leader kill ${i + 1}`);
    }
    const server = harness.natsServers[0]!;
    await server.kill('SIGKILL');
    // A deliberate outage: NATS stays down for a third of the TTL, nobody hears any keepalive.
    await new Promise((r) => setTimeout(r, 1000));
    await server.restart();
    await cluster.waitForLeader(30_000, cluster.ids);
    // The point of the test: nothing may happen for longer than the TTL (an expiry would
    // delete the key), so this is a fixed wait for a non-event, not for a condition.
    await new Promise((r) => setTimeout(r, 6000));
    const kv = await c.get('/eph/live');
    t.truthy(kv, 'the live session kept its key through the NATS restart');
    t.is(kv?.session, c.sessionInfo?.id);
    await c.put('/eph/after', 'still writing in the same session');
  },
);

test.serial(
  'closing a session deletes its ephemeral keys at once; an ephemeral key cannot have children',
  async (t) => {
    const c = await cluster.client();
    await c.put('/eph/closing', 'x', { ephemeral: true });
    const seq = await c.createSequential('/eph/queue/item-', 'y', { ephemeral: true });
    t.regex(seq.key, /^\/eph\/queue\/item-\d{10}$/);
    const err = await t.throwsAsync(c.put('/eph/closing/child', 'z'));
    t.is((err as { code?: string }).code, 'BAD_PATH');
    await c.close();
    const other = await cluster.client({ session: false });
    t.is(await other.get('/eph/closing'), null);
    t.is(await other.get(seq.key), null);
  },
);

test.serial(
  'a keepalive with a forged secret is refused and keeps nothing alive; a real one is acknowledged',
  async (t) => {
    const c = await cluster.client();
    const s = c.defaultSession!.runner.current!;
    const nc = await harness.connect('client');
    const ask = async (secret: Uint8Array) =>
      decodeReply(
        (
          await nc.request(
            'ensemble.sess.session.keepalive',
            encodeEnvelope({ id: s.id, secret }, { cluster: 'sess' }),
            { timeout: 3000 },
          )
        ).data,
      );
    const real = await ask(s.secret);
    t.true(real.ok, 'the real secret is acknowledged');
    const forged = await ask(new Uint8Array([9, 9, 9]));
    t.false(forged.ok);
    if (!forged.ok) t.is(forged.error.code, 'SESSION_EXPIRED');
    const leader = await cluster.waitForLeader();
    t.true(
      (await cluster.metric(
        leader,
        'ensemble_dropped_inputs_total{source="client",reason="forgedKeepalive"',
      )) >= 1,
    );
  },
);
