/**
 * Supervision on a real cluster started with `--chaos`: every restartable actor (transport, API
 * ingress, session keeper, watch hub, ticker), stopped through the admin subject on the leader
 * and on a follower while a writer runs and a watch follows, comes back by itself: writes go on,
 * no acknowledged write is lost or applied twice, and the watch stream has every revision once,
 * in order. Stopping a crash-only actor (the executor) stops that node with a failure; the cluster
 * serves on and the node rejoins from disk. Only peers may stop actors.
 */
import test from 'ava';
import { decodeReply, encodeEnvelope, subjects } from '../../protocol/index.ts';
import { useCluster, writeStream } from '../cluster.ts';
import { waitFor } from '../wait.ts';

const cluster = useCluster(test, { label: 'ensemble-actors', cluster: 'act', flags: ['--chaos'] });
const S = subjects({ cluster: 'act' });
const RESTARTABLE = ['transport', 'api', 'sessions', 'watches', 'ticker'] as const;

async function stopActor(node: string, actor: string, user: 'peer' | 'client' = 'peer') {
  const nc = await cluster().h.connect(user);
  try {
    const msg = await nc.request(
      S.nodeAdmin(node, 'stopActor'),
      encodeEnvelope({ actor }, { cluster: 'act' }),
      {
        timeout: 5000,
      },
    );
    return decodeReply<{ actor: string; policy: string }>(msg.data, { cluster: 'act' });
  } finally {
    await nc.close();
  }
}

test.serial(
  'restartable actors stopped under load come back; nothing acknowledged is lost; the watch goes on',
  async (t) => {
    const c = await cluster().client({ timeoutMs: 30_000 });
    const seen: number[] = [];
    const follower = (async () => {
      for await (const e of c.watch({ prefix: '/act/' })) {
        if (e.type === 'progress') continue;
        seen.push(Number(e.key.slice('/act/'.length)));
        if (seen.length >= 100_000) break;
      }
    })();
    follower.catch(() => {});
    const writes = writeStream(c, (i) => `/act/${String(i).padStart(6, '0')}`, 4);
    const leader = await cluster().waitForLeader();
    const other = cluster().ids.find((id) => id !== leader)!;
    for (const node of [leader, other]) {
      for (const actor of RESTARTABLE) {
        const before = writes.acked.length;
        const r = await stopActor(node, actor);
        t.true(r.ok && r.result.policy === 'restart', `${node}/${actor}: ${JSON.stringify(r)}`);
        await waitFor(
          async () => (await cluster().metric(node, `ensemble_actor_restarts_total{actor="${actor}"`)) >= 1,
          {
            what: `${node} restarted ${actor}`,
            timeoutMs: 15_000,
          },
        );
        await waitFor(() => writes.acked.length >= before + 50, {
          what: `writes go on after ${node}/${actor}`,
          timeoutMs: 30_000,
        });
      }
    }
    await writes.stop();
    const acked = [...writes.acked];
    t.log(`${acked.length} writes acknowledged across ${RESTARTABLE.length * 2} actor stops`);
    const all = (await c.rangeAll('/act/')).kvs;
    const byKey = new Map(all.map((kv) => [kv.key, kv]));
    for (const i of acked) {
      const kv = byKey.get(`/act/${String(i).padStart(6, '0')}`);
      if (kv === undefined || kv.version !== 1)
        return t.fail(`write ${i}: ${kv ? `version ${kv.version}` : 'lost'}`);
    }
    await waitFor(() => seen.length >= all.length, { what: 'the watch caught up', timeoutMs: 30_000 });
    t.is(new Set(seen).size, seen.length, 'no event twice');
    t.true(
      acked.every((i) => seen.includes(i)),
      'every acknowledged write was seen by the watch',
    );
    t.true(cluster().running().length === 3, 'no node stopped');
  },
);

test.serial('stopping a crash-only actor stops the node with a failure; it rejoins from disk', async (t) => {
  const c = await cluster().client({ timeoutMs: 30_000 });
  const leader = await cluster().waitForLeader();
  const victim = cluster().ids.find((id) => id !== leader)!;
  const r = await stopActor(victim, 'executor');
  t.true(r.ok && r.result.policy === 'crash');
  const exit = await cluster().procs.get(victim)!.exited;
  t.is(exit.code, 1, 'a failure exit: the process supervisor restarts it');
  await c.put('/act-crash/during', 'served by two');
  await cluster().startNode(victim, cluster().ids);
  await cluster().waitForLeader(30_000, cluster().ids);
  const v = await waitFor(() => c.status(victim).catch(() => null), { what: `${victim} answers again` });
  t.is(v.id, victim);
  await waitFor(
    async () => (await c.status(victim)).appliedIndex >= (await c.status(leader)).commitIndex - 5,
    {
      what: `${victim} caught up`,
    },
  );
});

test.serial('only peers may stop actors; unknown actors are refused', async (t) => {
  const leader = await cluster().waitForLeader();
  const restartsBefore = await cluster().metric(leader, 'ensemble_actor_restarts_total{actor="transport"');
  const bad = await stopActor(leader, 'frobnicator');
  t.false(bad.ok);
  if (!bad.ok) t.is(bad.error.code, 'BAD_REQUEST');
  // A client's publish on the admin subject is refused by the server: nobody answers it.
  const err = await stopActor(leader, 'transport', 'client').catch((e: Error) => e);
  t.true(err instanceof Error, 'no answer for a client');
  t.is(
    await cluster().metric(leader, 'ensemble_actor_restarts_total{actor="transport"'),
    restartsBefore,
    'nothing restarted by it',
  );
});
