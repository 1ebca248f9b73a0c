/**
 * Who may do what, on a real cluster behind nats.conf: the findings of the security review, each
 * reproduced and now refused. Admin ops need the admin user; key grants bound every client (no
 * grant, no access), through followers too; a node never delivers into another user's inbox, for
 * replies (the server maps them into the asker's account) or watches (checked against the user
 * nats-server names); status shows session ids to admins only.
 */
import test from 'ava';
import { PermissionDeniedError } from '../../client/index.ts';
import { decodeReply, encodeEnvelope } from '../../protocol/codec.ts';
import { TestCluster } from '../cluster.ts';
import { type Harness, startHarness } from '../harness.ts';
import { waitFor } from '../wait.ts';

let harness: Harness;
let cluster: TestCluster;
const NAME = 'sec';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test.before(async () => {
  harness = await startHarness({ label: 'ensemble-security' });
  cluster = await TestCluster.start(harness, { cluster: NAME });
});
test.after.always(async () => {
  await cluster?.close();
  await harness?.teardown();
});

test.serial(
  'admin ops (membership, transfer, compaction, grants) are refused to a client, done for admin',
  async (t) => {
    const c = await cluster.client({ session: false });
    const denied = [
      () => c.memberAdd('n9'),
      () => c.memberRemove('n3'),
      () => c.transferLeader(),
      () => c.compact(1),
      () => c.authGrant('client', '/'),
      () => c.authRevoke('client2', '/'),
      () => c.authList(),
    ];
    for (const call of denied) {
      const e = await t.throwsAsync(call());
      t.true(e instanceof PermissionDeniedError, `${e?.name}: ${e?.message}`);
    }
    const admin = await cluster.admin();
    const { grants } = await admin.authList();
    t.deepEqual(
      grants.map((g) => `${g.user} ${g.prefix} ${g.read} ${g.write}`),
      ['client / true true', 'client2 / true true'],
    );
    const leader = await cluster.waitForLeader();
    t.true(
      (await cluster.metric(
        leader,
        'ensemble_dropped_inputs_total{source="client",reason="permissionDenied"',
      )) >= 1,
    );
  },
);

test.serial(
  'grants bound a client: none, read only, a prefix; revoked at run time; txn branches and followers included',
  async (t) => {
    const admin = await cluster.admin();
    const c2 = await cluster.client({ session: false, user: 'client2' });
    await (await cluster.client({ session: false })).put('/pub/a', '1');
    await admin.authRevoke('client2', '/');
    const e = await t.throwsAsync(c2.get('/pub/a'));
    t.true(e instanceof PermissionDeniedError, 'no grant: nothing to read');
    await t.throwsAsync(c2.put('/pub/b', 'x'), { instanceOf: PermissionDeniedError });

    await admin.authGrant('client2', '/pub/', { read: true, write: false });
    await admin.authGrant('client2', '/own/', { read: true, write: true });
    t.is((await c2.get('/pub/a'))?.value.toString(), '1');
    await t.throwsAsync(c2.put('/pub/a', 'x'), { instanceOf: PermissionDeniedError });
    await c2.put('/own/x', 'mine');
    await t.throwsAsync(c2.range('/'), { instanceOf: PermissionDeniedError });
    t.is((await c2.range('/own/')).kvs.length, 1);
    await t.throwsAsync(
      c2.txn({
        compare: [],
        success: [{ op: 'put', key: '/own/y', value: Buffer.from('v') }],
        failure: [{ op: 'put', key: '/pub/z', value: Buffer.from('v') }],
      }),
      { instanceOf: PermissionDeniedError },
      'the failure branch writes where client2 may not',
    );

    // Raw requests on the any-node subject: whichever node takes one (a follower forwards writes
    // to the leader with the caller), the answer is the same.
    const nc = await harness.connect('client2');
    for (let i = 0; i < 6; i++) {
      const r = decodeReply(
        (
          await nc.request(
            `ensemble.${NAME}.api.put`,
            encodeEnvelope({ key: '/pub/raw', value: 'x' }, { cluster: NAME }),
            {
              timeout: 5000,
            },
          )
        ).data,
      );
      t.false(r.ok);
      if (!r.ok) t.is(r.error.code, 'PERMISSION_DENIED');
    }
    t.is(await (await cluster.client({ session: false })).get('/pub/raw'), null, 'nothing was written');

    await admin.authRevoke('client2', '/own/');
    await t.throwsAsync(c2.get('/own/x'), { instanceOf: PermissionDeniedError });
    await admin.authRevoke('client2', '/pub/');
    await admin.authGrant('client2', '/');
    t.is((await c2.get('/own/x'))?.value.toString(), 'mine', 'granted again');
  },
);

test.serial(
  "a request with another user's inbox as reply, or a watch aimed at it, delivers nothing there",
  async (t) => {
    const victim = await harness.connect('client2');
    const stolen: string[] = [];
    victim.subscribe('_INBOX.client2.victim.>', {
      callback: (_, m) => {
        stolen.push(m.subject);
      },
    });
    await victim.flush();
    const attacker = await harness.connect('client');
    attacker.publish(`ensemble.${NAME}.api.get`, encodeEnvelope({ key: '/pub/a' }, { cluster: NAME }), {
      reply: '_INBOX.client2.victim.reply',
    });
    // A watch needs a session: open one as the attacker, then aim the watch at client2's inbox.
    const open = decodeReply<{ id: string; secret: Uint8Array }>(
      (
        await attacker.request(
          `ensemble.${NAME}.api.sessionOpen`,
          encodeEnvelope({ ttlMs: 5000 }, { cluster: NAME }),
          {
            timeout: 5000,
          },
        )
      ).data,
    );
    t.true(open.ok);
    if (!open.ok) return;
    const watch = decodeReply(
      (
        await attacker.request(
          `ensemble.${NAME}.api.watch`,
          encodeEnvelope(
            {
              id: 'w1',
              prefix: '/',
              inbox: '_INBOX.client2.victim.watch.w1',
              session: open.result.id,
              secret: open.result.secret,
            },
            { cluster: NAME },
          ),
          { timeout: 5000 },
        )
      ).data,
    );
    t.false(watch.ok);
    if (!watch.ok) t.is(watch.error.code, 'PERMISSION_DENIED');
    await (await cluster.client({ session: false })).put('/pub/a', 'changed');
    await attacker.flush();
    // A non-event (nothing reaches client2): no condition to wait on, only time for it not to.
    await sleep(300);
    await victim.flush();
    t.deepEqual(stolen, [], 'client2 received nothing');
  },
);

test.serial('status lists session ids to admins only', async (t) => {
  const c = await cluster.client();
  await c.put('/pub/s', 'x');
  const admin = await cluster.admin();
  t.true((await admin.status()).sessions.length >= 1);
  t.deepEqual((await c.status()).sessions, []);
});

test.serial("a session's watches are bounded across the cluster, not per node", async (t) => {
  const nc = await harness.connect('client');
  const ask = async (subject: string, body: object) =>
    decodeReply<{ id: string; secret: Uint8Array }>(
      (await nc.request(subject, encodeEnvelope(body, { cluster: NAME }), { timeout: 5000 })).data,
    );
  const open = await ask(`ensemble.${NAME}.api.sessionOpen`, { ttlMs: 10_000 });
  t.true(open.ok);
  if (!open.ok) return;
  const s = open.result;
  const codes = new Map<string, number>();
  for (let i = 0; i < 300; i++) {
    const node = cluster.ids[i % cluster.ids.length]!;
    const r = await ask(`ensemble.${NAME}.node.${node}.api.watch`, {
      id: `flood${i}`,
      key: `/flood/${i}`,
      inbox: `_INBOX.client.flood.watch.w${i}`,
      session: s.id,
      secret: s.secret,
    });
    const c = r.ok ? 'ok' : r.error.code;
    codes.set(c, (codes.get(c) ?? 0) + 1);
  }
  // The last claim reaches the other nodes asynchronously: wait until they have let go.
  const liveWatches = async () => {
    let n = 0;
    for (const id of cluster.ids) n += await cluster.metric(id, 'ensemble_watchers');
    return n;
  };
  let live = await liveWatches();
  await waitFor(async () => (live = await liveWatches()) <= 64, { what: 'at most 64 live watches' });
  t.log(
    `300 watch requests spread over ${cluster.ids.length} nodes: ${JSON.stringify([...codes])}; ${live} live`,
  );
  t.true(live >= 1 && live <= 64, `${live} watches live across the cluster (at most 64 per session)`);
  let moved = 0;
  for (const id of cluster.ids) moved += await cluster.metric(id, 'ensemble_watches_moved_total');
  t.true(moved > 0, 'watches moved with their session');
});
