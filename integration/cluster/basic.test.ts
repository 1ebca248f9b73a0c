/**
 * A real 3-node cluster (node processes, RocksDB in temp dirs, nats-server with nats.conf):
 * the API end to end, JSON from a raw NATS client, and bad input on client and peer subjects.
 */
import { Svcm } from '@nats-io/services';
import { headers } from '@nats-io/transport-node';
import test from 'ava';
import { natsCredentials } from '../../cluster/nats-server.ts';
import { decodeReply, encodeEnvelope, encodePeer } from '../../protocol/codec.ts';
import { TestCluster } from '../cluster.ts';
import { type Harness, startHarness } from '../harness.ts';
import { waitFor } from '../wait.ts';

let harness: Harness;
let cluster: TestCluster;
const h = () => harness;

test.before(async () => {
  harness = await startHarness({ label: 'ensemble-basic' });
  cluster = await TestCluster.start(harness, { cluster: 'basic' });
});
test.after.always(async () => {
  await cluster?.close();
  await harness?.teardown();
});

const text = (v: Uint8Array | undefined) => (v === undefined ? undefined : new TextDecoder().decode(v));

test.serial(
  'a leader is elected; writes through any node are read linearizably from every node',
  async (t) => {
    const c = await cluster.client();
    const leader = await cluster.waitForLeader();
    t.true(cluster.ids.includes(leader));
    await c.put('/greeting', 'hello');
    for (const id of cluster.ids) {
      // Straight to each node's own subject: a follower serves it through ReadIndex.
      const r = await c.status(id);
      t.is(r.leader, leader);
    }
    const nc = await h().connect('client');
    for (const id of cluster.ids) {
      await c.put(`/via/${id}`, id);
      const reply = await nc.request(
        `ensemble.basic.node.${id}.api.get`,
        encodeEnvelope({ key: '/greeting' }, { cluster: 'basic' }),
      );
      const r = decodeReply<{ kv: { value: Uint8Array } }>(reply.data);
      t.true(r.ok);
      if (r.ok) t.is(text(r.result.kv.value), 'hello');
    }
    const all = await c.rangeAll('/via/');
    t.deepEqual(
      all.kvs.map((kv) => text(kv.value)),
      cluster.ids,
    );
    const kids = await c.list('/');
    t.deepEqual(kids.names, ['greeting', 'via']);
  },
);

test.serial(
  'writes sent to a follower node answer NOT_LEADER with the leader; the any-node subject forwards',
  async (t) => {
    const leader = await cluster.waitForLeader();
    const follower = cluster.ids.find((id) => id !== leader)!;
    const nc = await h().connect('client');
    const body = encodeEnvelope({ key: '/f', value: new TextEncoder().encode('x') }, { cluster: 'basic' });
    const direct = decodeReply((await nc.request(`ensemble.basic.node.${follower}.api.put`, body)).data);
    t.false(direct.ok);
    if (!direct.ok) {
      t.is(direct.error.code, 'NOT_LEADER');
      t.is((direct.error as unknown as { leader: string }).leader, leader);
    }
    const any = decodeReply((await nc.request('ensemble.basic.api.put', body)).data);
    t.true(any.ok);
  },
);

test.serial('a raw NATS client does put and get with JSON bodies', async (t) => {
  const nc = await h().connect('client');
  const hdrs = headers();
  hdrs.set('Content-Type', 'application/json');
  const put = await nc.request(
    'ensemble.basic.api.put',
    new TextEncoder().encode(
      JSON.stringify({ v: 1, cluster: 'basic', body: { key: '/json', value: 'from a shell' } }),
    ),
    { headers: hdrs, timeout: 5000 },
  );
  const putReply = JSON.parse(new TextDecoder().decode(put.data));
  t.is(putReply.result.kv.version, 1);
  // Without a header: a body starting with `{` is JSON too (what `nats req` sends).
  const get = await nc.request(
    'ensemble.basic.api.get',
    new TextEncoder().encode(JSON.stringify({ v: 1, cluster: 'basic', body: { key: '/json' } })),
    { timeout: 5000 },
  );
  const getReply = JSON.parse(new TextDecoder().decode(get.data));
  t.is(getReply.result.kv.value, 'from a shell');
  const bin = await nc.request(
    'ensemble.basic.api.put',
    new TextEncoder().encode(
      JSON.stringify({ v: 1, cluster: 'basic', body: { key: '/bin', value: 'AAH/', encoding: 'base64' } }),
    ),
    { timeout: 5000 },
  );
  t.truthy(JSON.parse(new TextDecoder().decode(bin.data)).result);
  const c = await cluster.client({ session: false });
  t.deepEqual([...((await c.get('/bin'))?.value ?? [])], [0, 1, 255]);
});

test.serial('bad input on client subjects gets a typed error and every node stays up', async (t) => {
  const nc = await h().connect('client');
  const ask = async (subject: string, data: Uint8Array) =>
    decodeReply((await nc.request(subject, data, { timeout: 5000 })).data);
  const codes: string[] = [];
  const expectError = async (subject: string, data: Uint8Array) => {
    const r = await ask(subject, data);
    t.false(r.ok, `${subject} should fail`);
    if (!r.ok) codes.push(r.error.code);
  };
  await expectError('ensemble.basic.api.get', new Uint8Array([0xff, 0x00, 0x13, 0x37]));
  await expectError('ensemble.basic.api.get', encodeEnvelope({ key: 42 }, { cluster: 'basic' }));
  await expectError('ensemble.basic.api.frobnicate', encodeEnvelope({}, { cluster: 'basic' }));
  await expectError('ensemble.basic.api.get', encodeEnvelope({ key: 'no-slash' }, { cluster: 'basic' }));
  await expectError(
    'ensemble.basic.api.put',
    encodeEnvelope({ key: '/big', value: new Uint8Array(2 * 1024 * 1024) }, { cluster: 'basic' }),
  );
  await expectError('ensemble.basic.api.get', encodeEnvelope({ key: '/a' }, { cluster: 'other' }));
  await expectError(
    'ensemble.basic.api.get',
    new TextEncoder().encode(JSON.stringify({ v: 99, cluster: 'basic', body: {} })),
  );
  await expectError(
    'ensemble.basic.api.put',
    encodeEnvelope({ key: '/e', value: new Uint8Array(1), ephemeral: true }, { cluster: 'basic' }),
  );
  t.deepEqual(codes, [
    'BAD_REQUEST',
    'BAD_REQUEST',
    'UNKNOWN_OP',
    'BAD_PATH',
    'TOO_LARGE',
    'WRONG_CLUSTER',
    'UNSUPPORTED_VERSION',
    'BAD_REQUEST',
  ]);
  const c = await cluster.client({ session: false });
  for (const id of cluster.ids) t.is((await c.status(id)).id, id);
  t.true((await cluster.metric(cluster.ids[0]!, 'ensemble_dropped_inputs_total{')) >= 0);
});

test.serial(
  'hostile peer frames are dropped and counted; a forged term from a non-member changes nothing',
  async (t) => {
    const leader = await cluster.waitForLeader();
    const c = await cluster.client({ session: false });
    const before = await c.status(leader);
    const peer = await h().connect('peer');
    const target = cluster.ids.find((id) => id !== leader)!;
    const PEER_DROPS = 'ensemble_dropped_inputs_total{source="peer"';
    const dropsBefore = await cluster.metric(target, PEER_DROPS);
    peer.publish(`ensemble.basic.peer.${target}`, new Uint8Array([1, 2, 3]));
    peer.publish(
      `ensemble.basic.peer.${target}`,
      encodePeer({ from: 'n1', to: target, msgs: 'nope' }, 'basic'),
    );
    peer.publish(
      `ensemble.basic.peer.${target}`,
      encodePeer(
        {
          from: 'evil',
          to: target,
          msgs: [
            {
              type: 'raft.requestVote',
              term: 1e9,
              from: 'evil',
              lastIndex: 1e9,
              lastTerm: 1e9,
              preVote: false,
              transfer: true,
            },
          ],
        },
        'basic',
      ),
    );
    peer.publish(
      `ensemble.basic.peer.${target}`,
      encodePeer(
        {
          from: leader,
          to: target,
          msgs: [{ type: 'raft.heartbeat', term: -5, from: leader, commit: 'x', seq: 0 }],
        },
        'basic',
      ),
    );
    await peer.flush();
    // The target reads its subject in order: once all four frames are counted as dropped, it has
    // handled each of them (and had its chance to take the forged term).
    const drops = await waitFor(
      async () => {
        const n = (await cluster.metric(target, PEER_DROPS)) - dropsBefore;
        return n >= 4 ? n : null;
      },
      { what: `${target} counts the four hostile frames as dropped` },
    );
    const after = await c.status(target);
    t.is(after.term, before.term, 'no forged term got through');
    t.is(after.leader, leader);
    t.true(drops >= 4, `drops counted: ${drops}`);
    await c.put('/still', 'serving');
    t.is(await c.getText('/still'), 'serving');
  },
);

test.serial('a client credential cannot publish on peer subjects', async (t) => {
  const nc = await h().connect('client');
  const errors: string[] = [];
  (async () => {
    for await (const s of nc.status())
      if (s.type === 'error') errors.push(String((s as { error?: unknown }).error ?? s.type));
  })().catch(() => {});
  nc.publish('ensemble.basic.peer.n1', encodePeer({ from: 'n2', to: 'n1', msgs: [] }, 'basic'));
  await nc.flush();
  await waitFor(() => errors.some((e) => /permission/i.test(e)), {
    what: 'the server reports a permissions violation',
  });
  t.true(
    errors.some((e) => /permission/i.test(e)),
    `errors seen: ${errors.join('; ')}`,
  );
  t.is(natsCredentials('client').user ?? 'client', 'client');
});

test.serial('the API is announced as a NATS service: discovery lists every node', async (t) => {
  const nc = await h().connect('client');
  const infos: { name: string; metadata?: Record<string, string>; endpoints: { subject: string }[] }[] = [];
  // Done as soon as every node answered (instead of collecting answers for a fixed time);
  // the deadline only bounds a failing run.
  const it = await new Svcm(nc)
    .client({ strategy: 'count', maxMessages: cluster.ids.length, maxWait: 10_000 } as never)
    .info('ensemble');
  for await (const info of it) infos.push(info as (typeof infos)[number]);
  const mine = infos.filter((i) => i.metadata?.cluster === 'basic');
  t.deepEqual(mine.map((i) => i.metadata?.node).sort(), cluster.ids);
  t.true(mine.every((i) => i.endpoints.some((e) => e.subject === 'ensemble.basic.api.*')));
});
