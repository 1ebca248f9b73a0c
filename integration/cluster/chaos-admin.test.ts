/**
 * The chaos admin ops `filter` and `hash` on a real cluster started with `--chaos`, reached as
 * the peer NATS user:
 * - `filter` on the leader cutting it from both followers, both ways: the followers elect a new
 *   leader among themselves while a client keeps writing through them; healing lets the old
 *   leader rejoin and catch up, and nothing acknowledged is lost or applied twice.
 * - `hash`: the three nodes' hashes at the same revision are equal; another revision's differs;
 *   a revision not applied yet is waited for (TIMEOUT past 5 s), a compacted one is COMPACTED.
 * - Only peers get an answer; bad bodies get BAD_REQUEST.
 */
import test from 'ava';
import { decodeReply, encodeEnvelope, type NatsUser, subjects } from '../../protocol/index.ts';
import { useCluster, writeStream } from '../cluster.ts';
import { waitFor } from '../wait.ts';

const NAME = 'chadm';
const cluster = useCluster(test, { label: 'ensemble-chaos-admin', cluster: NAME, flags: ['--chaos'] });
const S = subjects({ cluster: NAME });

interface HashAnswer {
  readonly revision: number;
  readonly hash: string;
  readonly keys: number;
}

async function admin<R>(node: string, op: string, body: unknown, user: NatsUser = 'peer') {
  const nc = await cluster().h.connect(user);
  try {
    const msg = await nc.request(S.nodeAdmin(node, op), encodeEnvelope(body, { cluster: NAME }), {
      timeout: 10_000,
    });
    return decodeReply<R>(msg.data, { cluster: NAME });
  } finally {
    await nc.close();
  }
}

async function hashOf(node: string, revision?: number): Promise<HashAnswer> {
  const r = await admin<HashAnswer>(node, 'hash', revision === undefined ? {} : { revision });
  if (!r.ok) throw new Error(`hash of ${node}: ${r.error.code} ${r.error.message}`);
  return r.result;
}

const CHAOS_DROPS = 'ensemble_dropped_inputs_total{source="peer",reason="chaos"';

test.serial(
  'a leader cut off both ways: the followers elect another and writes go on; healed, it rejoins and catches up',
  async (t) => {
    const c = await cluster().client({ timeoutMs: 60_000 });
    const old = await cluster().waitForLeader();
    const followers = cluster().ids.filter((id) => id !== old);
    const writes = writeStream(c, (i) => `/cut/${String(i).padStart(6, '0')}`, 4);
    await waitFor(() => writes.acked.length >= 20, { what: 'writes before the cut', timeoutMs: 30_000 });

    const rules = followers.map((peer) => ({ peer, direction: 'both', drop: 1 }));
    const set = await admin<{ rules: unknown[] }>(old, 'filter', { rules });
    t.deepEqual(set, { ok: true, result: { rules: rules.map((r) => ({ ...r, delayMs: 0 })) } });
    const cutAt = writes.acked.length;

    const status = (id: string) => c.status(id).catch(() => null);
    const next = await waitFor(
      async () => {
        const s = await Promise.all(followers.map(status));
        const l = s[0]?.leader ?? null;
        return l !== null && followers.includes(l) && s.every((x) => x?.leader === l) ? l : null;
      },
      { what: 'a new leader among the followers', timeoutMs: 30_000 },
    );
    t.log(`old leader ${old}, new leader ${next}`);
    await waitFor(() => writes.acked.length >= cutAt + 100, {
      what: 'writes go on through the majority',
      timeoutMs: 60_000,
    });
    // Check quorum: the old leader heard no one and stepped down; it never heard of the new one.
    const alone = await waitFor(
      async () => {
        const s = await status(old);
        return s !== null && s.role !== 'leader' ? s : null;
      },
      { what: `${old} steps down`, timeoutMs: 30_000 },
    );
    t.not(alone.leader, next);
    const behind = (await c.status(next)).commitIndex;
    t.true((await c.status(old)).appliedIndex < behind, 'the old leader fell behind while cut');
    t.true((await cluster().metric(old, CHAOS_DROPS)) > 0, 'the filter counted what it dropped');

    t.deepEqual(await admin(old, 'filter', { rules: [] }), { ok: true, result: { rules: [] } });
    await cluster().waitForLeader(30_000);
    await waitFor(async () => ((await status(old))?.appliedIndex ?? 0) >= behind, {
      what: `${old} catches up after healing`,
      timeoutMs: 30_000,
    });
    await writes.stop();
    const acked = [...writes.acked];
    t.log(`${acked.length} writes acknowledged, ${acked.length - cutAt} of them after the cut`);

    // Every node applies the same log to the end: same revision, same tree.
    const settled = await waitFor(
      async () => {
        const s = await Promise.all(cluster().ids.map(status));
        if (s.some((x) => x === null)) return null;
        const rev = s[0]!.revision;
        return s.every((x) => x!.revision === rev && x!.appliedIndex === s[0]!.appliedIndex) ? rev : null;
      },
      { what: 'every node applied the same revision', timeoutMs: 30_000 },
    );
    const hashes = await Promise.all(cluster().ids.map((id) => hashOf(id, settled)));
    t.is(new Set(hashes.map((h) => h.hash)).size, 1, JSON.stringify(hashes));

    const byKey = new Map((await c.rangeAll('/cut/')).kvs.map((kv) => [kv.key, kv]));
    for (const i of acked) {
      const kv = byKey.get(`/cut/${String(i).padStart(6, '0')}`);
      if (kv === undefined || kv.version !== 1)
        return t.fail(`write ${i}: ${kv ? `version ${kv.version}` : 'lost'}`);
    }
    t.pass();
  },
);

test.serial('hashes at the same revision are equal on every node; another revision differs', async (t) => {
  const c = await cluster().client();
  for (let i = 0; i < 30; i++) await c.put(`/h/${i}`, `v${i}`);
  await c.put('/h/eph', 'mine', { ephemeral: true });
  await c.delete('/h/3');
  const last = await c.put('/h/last', 'x');
  const rev = last.revision;
  const all = await Promise.all(cluster().ids.map((id) => hashOf(id, rev)));
  for (const h of all) t.like(h, { revision: rev, hash: all[0]!.hash, keys: all[0]!.keys });
  t.regex(all[0]!.hash, /^[0-9a-f]{64}$/);
  t.true(all[0]!.keys >= 31);
  // One revision earlier the tree differed: so does its hash (on every node alike).
  const before = await Promise.all(cluster().ids.map((id) => hashOf(id, rev - 1)));
  t.not(before[0]!.hash, all[0]!.hash);
  t.is(new Set(before.map((h) => h.hash)).size, 1);
  // The default is the node's own applied revision.
  const leader = await cluster().waitForLeader();
  const now = await hashOf(leader);
  t.true(now.revision >= rev);
  if (now.revision === rev) t.is(now.hash, all[0]!.hash);
});

test.serial(
  'hash waits for a revision not applied yet (TIMEOUT after 5 s); a compacted one is COMPACTED',
  async (t) => {
    const c = await cluster().client();
    const node = cluster().ids[1]!;
    const { revision } = await c.put('/w/0', 'a');
    await waitFor(async () => (await c.status(node)).revision >= revision, { what: `${node} applied` });
    const waiting = hashOf(node, revision + 1);
    await new Promise((r) => setTimeout(r, 200));
    const next = await c.put('/w/1', 'b');
    t.is(next.revision, revision + 1);
    t.like(await waiting, { revision: revision + 1 });

    const started = performance.now();
    const far = await admin(node, 'hash', { revision: revision + 1_000_000 });
    t.false(far.ok);
    if (!far.ok) t.is(far.error.code, 'TIMEOUT');
    t.true(performance.now() - started >= 4500, 'waited about 5 s');

    const adminClient = await cluster().admin();
    await adminClient.compact(revision);
    await waitFor(
      async () => {
        const r = await admin(node, 'hash', { revision: revision - 1 });
        return !r.ok && r.error.code === 'COMPACTED';
      },
      { what: `${node} answers COMPACTED below the compaction` },
    );
    t.like(await hashOf(node, revision), { revision });
  },
);

test.serial('only peers get an answer; bad bodies get BAD_REQUEST', async (t) => {
  const node = cluster().ids[0]!;
  for (const op of ['filter', 'hash']) {
    const err = await admin(node, op, op === 'hash' ? {} : { rules: [] }, 'client').catch((e: Error) => e);
    t.true(err instanceof Error, `no answer to a client on ${op}`);
  }
  const bad: [string, unknown][] = [
    ['filter', { rules: 'all' }],
    ['filter', {}],
    ['filter', { rules: [{ peer: 'n2', direction: 'sideways', drop: 1 }] }],
    ['filter', { rules: [{ peer: 'n2', direction: 'in', drop: 2 }] }],
    ['filter', { rules: [{ peer: 'n2', direction: 'in' }] }],
    ['filter', 'cut'],
    ['hash', { revision: -1 }],
    ['hash', { revision: 'latest' }],
    ['hash', [1]],
    ['stopActor', { actor: 'frobnicator' }],
  ];
  for (const [op, body] of bad) {
    const r = await admin(node, op, body);
    t.false(r.ok, `${op} ${JSON.stringify(body)}`);
    if (!r.ok) t.is(r.error.code, 'BAD_REQUEST', `${op} ${JSON.stringify(body)}`);
  }
  // A bad body changed nothing: no rule is in force, the node drops nothing.
  const dropsBefore = await cluster().metric(node, CHAOS_DROPS);
  const c = await cluster().client();
  const { revision } = await c.put('/bad/after', 'still served');
  await waitFor(async () => (await c.status(node)).revision >= revision, { what: `${node} applied it` });
  t.is(await cluster().metric(node, CHAOS_DROPS), dropsBefore);
});
